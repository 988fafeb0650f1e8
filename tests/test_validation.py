"""Input validation: unit names, NodeSets, options, clush.conf."""
import io
import os
import shlex
import string
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

import svcctl
from svcctl import UsageError


@pytest.mark.parametrize("name,expected", [
    ("demo", "demo.service"),
    ("demo.service", "demo.service"),
    ("getty@tty1", "getty@tty1.service"),
    ("sshd.socket", "sshd.socket"),
    ("-.mount", "-.mount"),
    ("foo.bar", "foo.bar.service"),
    ("systemd-fsck@dev-disk-by\\x2duuid.service", "systemd-fsck@dev-disk-by\\x2duuid.service"),
])
def test_valid_unit_names(name, expected):
    assert svcctl.normalise_unit(name) == expected


@pytest.mark.parametrize("name", [
    "", "demo;reboot", "$(reboot)", "`id`", "a b", "demo\n", "de\x00mo",
    "dеmo",  # Cyrillic e
    "x" * 250, "@foo.service", "demo.service/../x", "a'b", "*",
])
def test_invalid_unit_names(name):
    with pytest.raises(UsageError):
        svcctl.normalise_unit(name)


def test_parse_units_splits_and_dedups():
    assert svcctl.parse_units("demo,web@1,demo.service") == \
        ["demo.service", "web@1.service"]
    with pytest.raises(UsageError):
        svcctl.parse_units("demo,,web")


SAFE = set(string.ascii_letters + string.digits + ":_.\\-@")


@settings(max_examples=500)
@given(st.text(min_size=0, max_size=300))
def test_any_unit_text_is_refused_or_safe(text):
    """Whatever is typed: refused, or a systemd-valid ASCII name."""
    try:
        unit = svcctl.normalise_unit(text)
    except UsageError:
        return
    assert set(unit) <= SAFE and len(unit) <= 255
    assert shlex.split(shlex.quote(unit)) == [unit]


@pytest.mark.parametrize("pattern,expected", [
    (["node[1-3]"], "node[1-3]"),
    (["node[1-3]", "node5"], "node[1-3,5]"),
    (["node[1-8]!node[2-7]"], "node[1,8]"),
    (["node[1-4]&node[3-9]"], "node[3-4]"),
])
def test_parse_nodes(pattern, expected):
    assert str(svcctl.parse_nodes(pattern)) == expected


def test_parse_nodes_exclude():
    assert str(svcctl.parse_nodes(["node[1-8]"], ["node[2-7]"])) == "node[1,8]"


@pytest.mark.parametrize("pattern", [
    "node[1-", "node[3-1]", "", "node1!node1", "-oProxyCommand=id",
    "node1;reboot", "@nosuchsource:group", "no de",
])
def test_bad_nodesets_are_usage_errors(pattern):
    with pytest.raises(UsageError):
        svcctl.parse_nodes([pattern])


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_any_nodeset_text_is_refused_or_hostnames(text):
    try:
        nodes = svcctl.parse_nodes([text])
    except UsageError:
        return
    for node in nodes:
        assert not node.startswith("-")
        assert set(node) <= set(string.ascii_letters + string.digits + "._:-")


def test_user_and_ssh_options():
    assert svcctl.check_user("ops") == "ops"
    for bad in ("-oProxyCommand=x", "a b", "root;id", ""):
        with pytest.raises(UsageError):
            svcctl.check_user(bad)
    assert svcctl.check_ssh_options("-F '/tmp/a b'") == "-F '/tmp/a b'"
    with pytest.raises(UsageError):
        svcctl.check_ssh_options("-F 'unclosed")


@pytest.mark.parametrize("text,total,expected", [
    ("3", 10, 3), ("50%", 10, 5), ("25%", 8, 2), ("0", 8, 0), ("100%", 7, 7),
])
def test_parse_count(text, total, expected):
    assert svcctl.parse_count(text, total, "--batch") == expected


@pytest.mark.parametrize("text", ["-1", "x", "150%", "1.5", "%"])
def test_parse_count_refuses(text):
    with pytest.raises(UsageError):
        svcctl.parse_count(text, 10, "--batch")


def write(path, text):
    path.write_text(text)
    return str(path)


def test_clush_conf_main_keys(tmp_path):
    conf = write(tmp_path / "clush.conf",
                 "[Main]\nfanout: 7\nconnect_timeout: 3\ncommand_timeout: 42\n"
                 "ssh_user: ops\nssh_path: /usr/bin/ssh\nssh_options: -F %%h/cfg\n")
    settings = svcctl.read_clush_conf([conf])
    assert (settings.fanout, settings.connect_timeout, settings.command_timeout,
            settings.ssh_user, settings.ssh_path, settings.ssh_options) == \
        (7, 3.0, 42.0, "ops", "/usr/bin/ssh", "-F %h/cfg")


def test_clush_conf_zero_command_timeout_keeps_our_bound(tmp_path):
    conf = write(tmp_path / "clush.conf", "[Main]\ncommand_timeout: 0\n")
    assert svcctl.read_clush_conf([conf]).command_timeout == \
        svcctl.Settings().command_timeout


def test_clush_conf_confdir(tmp_path):
    (tmp_path / "clush.conf.d").mkdir()
    write(tmp_path / "clush.conf.d" / "site.conf", "[Main]\nfanout: 5\n")
    conf = write(tmp_path / "clush.conf",
                 "[Main]\nfanout: 9\nconfdir: $CFGDIR/clush.conf.d\n")
    assert svcctl.read_clush_conf([conf]).fanout == 5


@pytest.mark.parametrize("body", [
    "[Main]\nfanout: many\n", "[Main]\nfanout: 0\n", "[Main]\nssh_user: root;id\n",
    "[Main]\nssh_options: -F 'x\n", "no section\n", "[Main]\nconnect_timeout: -1\n",
])
def test_clush_conf_errors(tmp_path, body):
    conf = write(tmp_path / "clush.conf", body)
    with pytest.raises(UsageError) as err:
        svcctl.read_clush_conf([conf])
    assert str(err.value).startswith("clush.conf: ")


def test_clush_conf_missing_file_gives_defaults(tmp_path):
    assert svcctl.read_clush_conf([str(tmp_path / "none.conf")]) == svcctl.Settings()


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["fanout", "connect_timeout", "command_timeout", "ssh_user",
                            "ssh_path", "ssh_options"]),
       value=st.text(max_size=40).filter(lambda v: "\n" not in v and "\r" not in v))
def test_any_clush_conf_value_is_refused_or_checked(tmp_path_factory, key, value):
    path = tmp_path_factory.mktemp("c") / "clush.conf"
    path.write_text("[Main]\n%s: %s\n" % (key, value), encoding="utf-8")
    try:
        settings = svcctl.read_clush_conf([str(path)])
    except UsageError as exc:
        assert str(exc).startswith("clush.conf: ") and "\n" not in str(exc)
        return
    assert settings.fanout >= 1 and settings.connect_timeout >= 0
    if settings.ssh_user is not None:
        assert svcctl.check_user(settings.ssh_user) == settings.ssh_user
    if settings.ssh_options is not None:
        shlex.split(settings.ssh_options)


def test_errors_about_typed_text_stay_on_one_line():
    for text in ("demo\n", "a\tb", "x\u2028y", "\x1b[2J"):
        with pytest.raises(UsageError) as err:
            svcctl.normalise_unit(text)
        assert "\n" not in str(err.value) and "\x1b" not in str(err.value)
        assert "\u2028" not in str(err.value) and "\t" not in str(err.value)


# --- systemd's own vectors ---------------------------------------------------

from systemd_vectors import UNIT_NAME_VALID  # noqa: E402


@pytest.mark.parametrize("name,expected", [(n, e) for n, flags, e in UNIT_NAME_VALID
                                           if flags == "any"])
def test_unit_names_as_systemd_judges_them(name, expected):
    """svcctl accepts a full unit name exactly when systemd's
    unit_name_is_valid(name, UNIT_NAME_ANY) does (test-unit-name.c)."""
    valid = len(name) <= svcctl.UNIT_NAME_MAX and bool(svcctl._UNIT_RE.fullmatch(name))
    assert valid is expected
    if expected and "@." not in name:
        assert svcctl.normalise_unit(name) == name


@pytest.mark.parametrize("name", ["foo@.service", "getty@", ".test@.service"])
def test_templates_are_refused_with_a_hint(name):
    """systemctl show stops at a template, so no unit's state would be read."""
    with pytest.raises(UsageError) as err:
        svcctl.normalise_unit(name)
    assert "is a template: name an instance" in str(err.value)


@pytest.mark.parametrize("name", ["foo@bar@baz.service", "mbsync@me@example.com",
                                  "foo@@.service", "user@1000.slice"])
def test_at_signs_inside_an_instance(name):
    assert svcctl.normalise_unit(name).startswith(name)


def test_longest_unit_name():
    assert svcctl.normalise_unit("a" * 247 + ".service")
    with pytest.raises(UsageError):
        svcctl.normalise_unit("a" * 248 + ".service")


# --- hostile input -----------------------------------------------------------

from hostile import hostile_resolver  # noqa: E402

INJECTIONS = ["';touch %s;'", "$(touch %s)", "`touch %s`", "x;touch %s", "x|touch %s",
              "x\ntouch %s", "x&&touch %s", "x' '$(touch %s)"]


@pytest.mark.parametrize("template", INJECTIONS)
@pytest.mark.parametrize("form", ["@%s", "@site:%s", "node1,@%s", "node[1-2]!@%s",
                                  "@web&@%s", "@%s[1-2]"])
def test_group_names_never_reach_a_shell(tmp_path, template, form):
    canary = tmp_path / "canary"
    resolver = hostile_resolver(tmp_path)
    pattern = form % (template % canary)
    with pytest.raises(UsageError) as err:
        svcctl.parse_nodes([pattern], resolver=resolver)
    assert "\n" not in str(err.value)
    assert not canary.exists()


def test_plain_groups_still_resolve(tmp_path):
    resolver = hostile_resolver(tmp_path)
    assert str(svcctl.parse_nodes(["@web", "@site:all!node8"], resolver=resolver)) == \
        "node[1-7]"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + "@:*[]-,!&^ ;$()`'\"|\\\n",
               max_size=40))
def test_any_pattern_runs_no_command(tmp_path_factory, text):
    tmp_path = tmp_path_factory.mktemp("g")
    resolver = hostile_resolver(tmp_path)
    canary = tmp_path / "canary"
    pattern = text.replace(";", ";touch %s;" % canary)
    try:
        nodes = svcctl.parse_nodes([pattern], resolver=resolver)
    except UsageError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(svcctl._NODE_RE.fullmatch(node) for node in nodes)
    assert not canary.exists()


@pytest.mark.parametrize("pattern", ["n[1-3000000]", "a[1-2000]b[1-2000]",
                                     "x,n[1-60000],m[1-60000]"])
def test_huge_nodesets_are_refused_before_expanding(pattern):
    import time
    start = time.monotonic()
    with pytest.raises(UsageError) as err:
        svcctl.parse_nodes([pattern])
    assert "more than 100000 nodes" in str(err.value)
    assert time.monotonic() - start < 0.1


def test_node_limit_can_be_raised():
    assert len(svcctl.parse_nodes(["n[1-150000]"], limit=200000)) == 150000


@pytest.mark.parametrize("pattern,size", [
    ("n[1-10]", 10), ("n[1-10/2]", 5), ("a[1-3]b[1-4]", 12), ("n[1-10]!n[1-5]", 15),
    ("n[1-10]&n[1-3]", 13), ("n[1-10]^n[5-6]", 12), ("n1,n2, n3", 3), ("@web", 1),
    ("@rack[1-4]!@down", 5), ("n[01-10,20]", 11),
])
def test_pattern_size_counts_every_operand(pattern, size):
    assert svcctl.pattern_size(pattern, svcctl.MAX_NODES) == size


# --- found in the second attacker's review: every operand counts ----------

OPERATORS = st.sampled_from(",!&^")
SMALL = st.sampled_from(["n1", "n[2-4]", "m[1-3]x[1-2]", "node07", "a[1-5/2]"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(OPERATORS, SMALL), max_size=6), st.integers(0, 6), OPERATORS,
       st.sampled_from(["cli", "-x", "hostfile", "cluster file"]))
def test_a_big_operand_is_refused_whatever_its_operator(tmp_path_factory, operands,
                                                        where, operator, source):
    """`n1!n[2-999999999]` counted as one node, then ClusterShell built the
    10^9 range: any operand, behind any operator, from any source, counts
    toward --max-nodes before anything is expanded."""
    operands.insert(min(where, len(operands)), (operator, "big[1-5000]"))
    pattern = "n0" + "".join(op + operand for op, operand in operands)
    tmp = tmp_path_factory.mktemp("big")
    (tmp / "hosts").write_text("n0\n" + pattern.replace(",", "\n ") + "\n")
    (tmp / "c.yaml").write_text("services:\n  a: {nodes: '%s'}\n" % pattern)
    argv = {"cli": ["status", "demo", pattern], "-x": ["status", "demo", "n0", "-x", pattern],
            "hostfile": ["status", "demo", "--hostfile", str(tmp / "hosts")],
            "cluster file": ["-c", str(tmp / "c.yaml"), "status"]}[source]
    built = []
    real = svcctl.NodeSet

    def counted(*args, **kwargs):       # a NodeSet of a pattern: it is expanded
        built.extend(a for a in args if isinstance(a, str) and "big" in a)
        return real(*args, **kwargs)
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(svcctl, "NodeSet", counted)
        code = svcctl.main(argv + ["--max-nodes", "1000", "--dry-run"], io.StringIO(), err)
    assert (code, err.getvalue().count("\n"), built) == (2, 1, []), err.getvalue()
    assert "more than" in err.getvalue()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10 ** 12), st.integers(0, 3 * 10 ** 9), st.integers(10 ** 6, 10 ** 9),
       OPERATORS)
def test_anything_clustershell_would_assert_on_is_refused_first(first, span, step, operator):
    """Ranges spanning 10^9 or more end in ClusterShell's `AssertionError:
    range too large`: refused as one line, whatever the operator."""
    pattern = "n1%sn[%d-%d/%d]" % (operator, first, first + span, step)
    try:
        svcctl.parse_nodes([pattern], limit=10 ** 6)
    except UsageError as exc:
        assert span < 10 ** 9 - 1 or "spanning less than 10^9" in str(exc)
        assert "\n" not in str(exc)
    else:
        assert span < 10 ** 9 - 1


@pytest.mark.parametrize("pattern", ['"a," * 4000000', '"a" * 8000000',
                                     '"n[" + "1," * 4000000 + "1]"', '"n[1]" * 2000000'])
def test_a_long_pattern_is_refused_in_little_memory_and_time(pattern):
    """One regex over an 8 MiB pattern kept 1.7 GB of backtracking state."""
    # VmHWM: this process's own peak (getrusage's counts the parent's, if larger)
    code = ("import re, svcctl\npattern = %s\nhwm = lambda: int(re.search(r'VmHWM:\\s*(\\d+)', "
            "open('/proc/self/status').read()).group(1))\nbefore = hwm()\ntry:\n"
            "    svcctl.parse_nodes([pattern])\nexcept svcctl.UsageError:\n"
            "    print(hwm() - before)\n" % pattern)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=20, cwd=os.path.dirname(svcctl.__file__))
    assert proc.stdout and int(proc.stdout) < 64 * 1024, proc.stderr[-300:]


@pytest.mark.parametrize("text", ["\u202egnp.exe", "a\u200bb", "x\u2066y\u2069",
                                  "\ufeffbom", "\u061c", "\U000e0041"])
def test_invisible_and_bidi_characters_are_escaped(text):
    shown = svcctl.printable(text)
    assert all(ord(c) < 0x7f for c in shown if not c.isalnum()) and shown != text
    assert "\\u" in shown or "\\U" in shown


@pytest.mark.parametrize("argv,message", [
    (["-u", "1e300"], "-u must be a number of seconds from 0 to 604800"),
    (["-t", "nan"], "-t must be a number of seconds from 0 to 604800"),
    (["--batch", "2", "--batch-wait", "1e300"], "--batch-wait must be a number"),
    (["--settle", "inf"], "--settle must be a number"),
    (["--batch", "9" * 5000], "--batch must be N or N%"),
    (["--persist", "--persist-for", "99999999999"], "--persist-for takes"),
    (["-f", "1000000000"], "fanout must be from 1 to 100000"),
    (["-o", "json"], "invalid ssh options json: they start with an ssh flag"),
])
def test_odd_values_are_one_line_errors(argv, message):
    import io
    out, err = io.StringIO(), io.StringIO()
    code = svcctl.main(["start", "demo", "hang1"] + argv, out, err)
    assert code == 2 and out.getvalue() == ""
    assert err.getvalue().startswith("svcctl: ") and message in err.getvalue()
    assert err.getvalue().count("\n") == 1


@pytest.mark.parametrize("body,message", [
    ("[Main]\ncommand_timeout: inf\n", "clush.conf: a timeout must be"),
    ("[Main]\nconnect_timeout: nan\n", "clush.conf: a timeout must be"),
    ("[Main]\nssh_path: touch /tmp/x; ssh\n", "clush.conf: invalid ssh_path"),
    ("[Main]\nssh_options: json\n", "clush.conf: invalid ssh options"),
    ("[Main]\nfanout: 99999999999999999999999\n", "clush.conf: fanout must be"),
])
def test_odd_clush_conf_values(tmp_path, body, message):
    conf = write(tmp_path / "clush.conf", body)
    with pytest.raises(UsageError) as err:
        svcctl.read_clush_conf([conf])
    assert str(err.value).startswith(message)


def test_a_user_without_passwd_entry(monkeypatch):
    def missing(uid):
        raise KeyError(uid)
    monkeypatch.setattr(svcctl.pwd, "getpwuid", missing)
    assert svcctl.current_user() == "uid %d" % svcctl.os.getuid()


from systemd_vectors import (LOCAL_252_FROM_PATH_OBSERVATIONS,  # noqa: E402
                             UNIT_NAME_FROM_PATH)


@pytest.mark.parametrize("path,suffix,expected", [
    v for v in UNIT_NAME_FROM_PATH + LOCAL_252_FROM_PATH_OBSERVATIONS
    if v[1] in (".mount", ".device")])
def test_paths_become_units_as_systemd_mangles_them(path, suffix, expected):
    """systemctl status /home means home.mount (unit_name_from_path). svcctl
    refuses, rather than hashes, a path whose unit name would be too long."""
    if expected is None or len(expected) == svcctl.UNIT_NAME_MAX:
        with pytest.raises(UsageError):
            svcctl.unit_from_path(path, suffix)
    else:
        assert svcctl.unit_from_path(path, suffix) == expected


@pytest.mark.parametrize("typed,unit", [("/home", "home.mount"), ("/", "-.mount"),
                                        ("/dev/sda", "dev-sda.device"),
                                        ("/sys/devices/x", "sys-devices-x.device")])
def test_systemctl_paths_on_the_command_line(typed, unit):
    assert svcctl.parse_units(typed) == [unit]
