"""fold() is NodeSet.fromlist(names, resolver=RESOLVER_NOGROUP), only faster:
the same string, the same nodes in the same order, on ClusterShell's own test
vectors (tests/nodeset_vectors.py) and on random names of cluster shapes."""
import random

import pytest
from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet, NodeSetParseError
from ClusterShell.RangeSet import RangeSet
from hypothesis import given, settings, strategies as st

import svcctl
from nodeset_vectors import ODD_PATTERNS, PATTERNS, RANGESETS, VECTORS_ND

MAX_PAIR = 300              # names in a vector made of two patterns
MAX_NODES = 600             # names in a vector made of RangeSets
TEMPLATES_1D = ("node[%s]", "n[%s]-ib0", "r1n[%s]", "cn[%s].example.org",
                "x0[%s]")
TEMPLATES_2D = ("r[%s]n[%s]", "r[%s]n[%s]-ib0", "x[%s]y[%s]z7", "[%s]-[%s]",
                "c[%s].n[%s].example.org")
PAIR_STEPS = range(1, 21)


def expand(pattern):
    return list(NodeSet(pattern, resolver=RESOLVER_NOGROUP))


def expand_if(pattern):
    """The names of a pattern made from a template, or [] if ClusterShell
    refuses it (mixed padding before a range: x0[8,010])."""
    try:
        return expand(pattern)
    except NodeSetParseError:
        return []


def fromlist(names):
    return NodeSet.fromlist(names, resolver=RESOLVER_NOGROUP)


def same(names):
    """None if fold(names) is fromlist(names), else what differs."""
    expected, got = fromlist(names), svcctl.fold(names)
    if str(got) != str(expected):
        return "%s\n  fromlist: %s\n  fold:     %s" % (
            sorted(set(names))[:50], str(expected)[:500], str(got)[:500])
    if list(got) != list(expected):
        return "%s: same string, other order" % str(expected)[:500]
    return None


def check_all(vectors, both=False):
    """fold against fromlist on each vector of names shuffled with some names
    twice, and (with both) as given too."""
    problems, count = [], 0
    for index, names in enumerate(vectors):
        if not names:
            continue
        count += 1
        mixed = names + names[::4]
        random.Random(index).shuffle(mixed)
        for variant in ([names, mixed] if both else [mixed]):
            problem = same(variant)
            if problem:
                problems.append(problem)
    assert count, "no vector"
    assert not problems, "%d of %d vectors differ, first ones:\n%s" % (
        len(problems), count, "\n".join(problems[:5]))
    return count


def pattern_pairs():
    """Two of ClusterShell's patterns at a time (neighbours in sorted order
    share prefixes, so their names fold together), up to MAX_PAIR names."""
    expanded = [expand(pattern) for pattern in PATTERNS]
    for index, names in enumerate(expanded):
        for step in PAIR_STEPS:
            other = expanded[(index + step) % len(expanded)]
            if len(names) + len(other) <= MAX_PAIR:
                yield names + other


def rangesets_1d():
    for rangeset in RANGESETS:
        for template in TEMPLATES_1D:
            yield expand_if(template % rangeset)


def rangesets_2d():
    """Two RangeSets crossed (several varying indexes), alone and as the
    union of two blocks."""
    sizes = [len(RangeSet(r)) for r in RANGESETS]
    count = len(RANGESETS)
    for index, rangeset in enumerate(RANGESETS):
        for step in (1, 7, 31, 101):
            other = (index + step) % count
            if sizes[index] * sizes[other] > MAX_NODES:
                continue
            template = TEMPLATES_2D[(index + step) % len(TEMPLATES_2D)]
            block = template % (rangeset, RANGESETS[other])
            yield expand_if(block)
            third = (index + 3 * step) % count
            if sizes[third] * sizes[index] <= MAX_NODES:
                yield expand_if(block) + expand_if(
                    template % (RANGESETS[third], rangeset))


def vectors_nd():
    """RangeSetND test vectors as node names of three shapes."""
    for vectors in VECTORS_ND:
        dims = len(vectors[0])
        for shape in ("".join("abcde"[k] + "%s" for k in range(dims)),
                      "x%s" + ".y%s" * (dims - 1),
                      "r%s" + "n%s" * (dims - 1) + "-ib0"):
            yield [name for vector in vectors for name in expand_if(
                shape % tuple("[%s]" % r for r in vector))]


VECTOR_GROUPS = {
    "patterns": lambda: [expand(p) for p in PATTERNS],
    "odd-patterns": lambda: [expand(p) for p in ODD_PATTERNS],
    "pattern-pairs": pattern_pairs,
    "rangesets-1d": rangesets_1d,
    "rangesets-2d": rangesets_2d,
    "rangesets-nd": vectors_nd,
}


@pytest.mark.parametrize("group", list(VECTOR_GROUPS))
def test_fold_is_fromlist_on_clustershell_vectors(group):
    count = check_all(list(VECTOR_GROUPS[group]()), both=group == "patterns")
    assert count >= {"patterns": 1000, "pattern-pairs": 15000,
                     "rangesets-1d": 1000}.get(group, 10)


def test_fold_never_reads_groups_nor_wildcards():
    names = ["@all", "@rack:r1", "a*", "node?", "%s-ib", "n1", "n2"]
    assert str(svcctl.fold(names)) == str(fromlist(names))
    assert "@all" in str(svcctl.fold(names))


def test_fold_of_nothing_and_of_odd_names():
    assert str(svcctl.fold([])) == ""
    assert str(svcctl.fold(iter(["n1", "n2"]))) == "n[1-2]"
    for names in (["x" + "9" * 101], ["n" + "0" * 120 + "5", "n7"],
                  [" n1", "n2 "], ["n%1", "n%2"], ["n\u0663", "n3"]):
        try:
            expected = str(fromlist(names))
        except Exception as exc:  # noqa: BLE001 - fold must refuse alike
            with pytest.raises(type(exc)):
                svcctl.fold(names)
        else:
            assert str(svcctl.fold(names)) == expected


# ---------------------------------------------------------------------------
# Random names of the shapes svcctl meets: shuffled, duplicated, mixed
# ---------------------------------------------------------------------------

SHAPES = [("node%s", 1), ("node%05d", 1), ("r%sn%s", 2),
          ("cn%s.cluster.example.org", 1), ("node%05d-ib0", 1),
          ("r%02dn%03d-ib0", 2), ("x%sy%sz%s", 3), ("c%s-%s", 2)]


@st.composite
def shaped_names(draw):
    """Names of one shape: points drawn at random, or a block, whole (a full
    grid) or with holes."""
    template, dims = draw(st.sampled_from(SHAPES))
    high = draw(st.integers(0, 40))
    rnd = draw(st.randoms(use_true_random=False))
    if draw(st.booleans()):
        lows = [draw(st.integers(0, high)) for _ in range(dims)]
        spans = [draw(st.integers(0, 12 if dims > 1 else 200))
                 for _ in range(dims)]
        keep = 1.0 if draw(st.booleans()) else draw(st.floats(0.3, 1.0))
        points = [()]
        for low, span in zip(lows, spans):
            points = [p + (i,) for p in points for i in range(low, low + span + 1)]
        points = [p for p in points if rnd.random() < keep]
    else:
        points = draw(st.lists(st.tuples(*[st.integers(0, high)] * dims),
                               max_size=60))
    padded = "%s" in template and draw(st.booleans())
    names = []
    for point in points:
        values = tuple(("%0*d" % (rnd.choice((0, 2, 3)), v)) if padded else v
                       for v in point)
        names.append(template % values)
    return names


plain_names = st.lists(st.from_regex(r"[a-z][a-z._-]{0,8}", fullmatch=True),
                       max_size=15)


@st.composite
def name_lists(draw):
    names = []
    for _ in range(draw(st.integers(1, 4))):
        names += draw(st.one_of(shaped_names(), plain_names))
    if names:
        names += draw(st.lists(st.sampled_from(names), max_size=10))
    return draw(st.permutations(names))


@settings(max_examples=400, deadline=None)
@given(name_lists())
def test_fold_is_fromlist_on_random_names(names):
    problem = same(names)
    assert problem is None, problem


@settings(max_examples=100, deadline=None)
@given(name_lists(), name_lists())
def test_folded_nodeset_behaves_as_fromlist_afterwards(names, more):
    """The NodeSet fold returns works as fromlist's does: update, len, in."""
    expected, got = fromlist(names), svcctl.fold(names)
    assert len(got) == len(expected)
    extra = fromlist(more)
    expected.update(extra)
    got.update(extra)
    assert str(got) == str(expected)
    assert list(got) == list(expected)
    for name in (names + more)[:20]:
        assert name in got
