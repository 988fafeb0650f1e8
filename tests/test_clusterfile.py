"""The cluster file: loading, validation errors with lines, order, waves, drift."""
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import svcctl
from framing import main, stub_nodes
from svcctl import NodeSet, UsageError

A = svcctl.ACTIONS


def load(tmp_path, text):
    path = tmp_path / "cluster.yaml"
    path.write_text(textwrap.dedent(text))
    return svcctl.load_cluster_file(str(path))


CHAIN = """\
groups:
  back: n[1-4]
  front: "@back!n4"
services:
  db:
    unit: demo@db
    nodes: "@back"
    enabled: true
  app:
    nodes: "@back"
    requires: db
  web:
    nodes: ["m[1-2]", "@front"]
    requires: [app]
  cron:
    nodes: n[1-4]
    state: stopped
    after: web
"""


def test_load_the_example(tmp_path):
    cluster = load(tmp_path, CHAIN)
    assert [s.name for s in cluster.services] == ["db", "app", "web", "cron"]
    db, app, web, cron = cluster.services
    assert db.unit == "demo@db.service" and db.enabled is True and db.state == "running"
    assert str(app.nodes) == "n[1-4]" and app.requires == ("db",)
    assert str(web.nodes) == "m[1-2],n[1-3]"
    assert cron.state == "stopped" and cron.after == ("web",) and cron.enabled is None
    assert str(cluster.groups["front"]) == "n[1-3]"


def test_dependency_order_is_not_file_order(tmp_path):
    cluster = load(tmp_path, """\
        services:
          c: {nodes: n1, requires: b}
          b: {nodes: n1, after: [a]}
          a: {nodes: n1}
        """)
    assert [s.name for s in cluster.services] == ["a", "b", "c"]


@pytest.mark.parametrize("text,error", [
    ("services:\n  a: {nodes: n1, colour: red}\n",
     "cluster.yaml:2: services.a: unknown key colour"),
    ("services:\n  a: {unit: 'x;reboot', nodes: n1}\n",
     "cluster.yaml:2: services.a.unit: invalid unit name: x;reboot"),
    ("services:\n  a:\n    nodes: 'n[1-'\n", "cluster.yaml:3: services.a.nodes: invalid NodeSet"),
    ("services:\n  a: {nodes: n1}\n  b:\n    nodes: n1\n    requires: zz\n",
     "cluster.yaml:3: services.b: unknown service zz"),
    ("services:\n  a: {nodes: n1, requires: b}\n  b: {nodes: n1, after: a}\n",
     "cluster.yaml:2: services.a: dependency cycle: a -> b -> a"),
    ("services:\n  a: {nodes: n1, requires: a}\n", "services.a: depends on itself"),
    ("services:\n  a: {nodes: 'n[1-2]'}\n  b: {unit: a, nodes: n2}\n",
     "cluster.yaml:3: services.b: unit a.service is already declared by service a on n2"),
    ("services:\n  a: {nodes: n1, state: up}\n",
     "cluster.yaml:2: services.a.state: must be running or stopped, not up"),
    ("services:\n  a: {nodes: n1, enabled: 'yes please'}\n",
     "cluster.yaml:2: services.a.enabled: must be true or false"),
    ("services:\n  a: {nodes: 3}\n", "cluster.yaml:2: services.a.nodes: must be a NodeSet"),
    ("services:\n  a: {unit: demo}\n", "cluster.yaml:2: services.a: nodes is required"),
    ("services:\n  a: {nodes: n1}\n  a: {nodes: n2}\n", "cluster.yaml:3: services: duplicate key a"),
    ("groups: {g: n1}\n", "cluster.yaml:1: top level: no services"),
    ("service:\n  a: {nodes: n1}\n", "cluster.yaml:1: top level: unknown key service"),
    ("services: [a, b]\n", "cluster.yaml:1: services: must be a mapping"),
    ("services:\n  a: {nodes: n1\n", "cluster.yaml:3: YAML: "),
    ("", "cluster.yaml: empty file"),
    ("services:\n  'a b': {nodes: n1}\n", "cluster.yaml:2: services: invalid name 'a b'"),
    ("services:\n  a: {nodes: '@nosuchsource:g'}\n", "services.a.nodes: invalid NodeSet"),
    ("services:\n  a: {nodes: 'x!x'}\n", "services.a.nodes: no node to run on"),
])
def test_validation_errors_name_file_line_and_key(tmp_path, text, error):
    with pytest.raises(UsageError) as err:
        load(tmp_path, text)
    assert error in str(err.value)
    assert str(err.value).startswith(str(tmp_path))


def test_unreadable_file(tmp_path):
    with pytest.raises(UsageError) as err:
        svcctl.load_cluster_file(str(tmp_path / "none.yaml"))
    assert "cannot read" in str(err.value)


def test_yaml_tags_are_not_executed(tmp_path):
    with pytest.raises(UsageError):
        load(tmp_path, "services: !!python/object/apply:os.system ['id']\n")


def test_select_services_with_and_without_deps(tmp_path):
    cluster = load(tmp_path, CHAIN)
    names = lambda *a: [s.name for s in svcctl.select_services(cluster, *a)]
    assert names(["web"], False) == ["db", "app", "web"]
    assert names(["web"], False, False) == ["web"]
    assert names(["db"], True) == ["db", "app", "web"]      # stop db: its dependents first
    assert names([], False) == ["db", "app", "web", "cron"]
    with pytest.raises(UsageError):
        names(["nope"], False)


def waves(action, services, nodes_of=None, fail=()):
    """Drive a file plan, failing (node, unit) pairs listed in `fail`."""
    nodes_of = nodes_of or {s.name: s.nodes for s in services}
    plan = svcctl.file_plan(A[action], services, nodes_of)
    out, results = [], None
    try:
        wave = next(plan)
        while True:
            out.append(wave)
            results = {}
            for job in wave.jobs:
                for node in job.nodes:
                    results[node] = svcctl.NodeResult(node, [
                        svcctl.UnitResult(step.unit, "failed" if (node, step.unit) in fail
                                          else "changed") for step in job.steps])
            wave = plan.send((results, ""))
    except StopIteration:
        return out


def test_same_nodes_chain_is_one_wave_one_script(tmp_path):
    cluster = load(tmp_path, """\
        services:
          a: {nodes: 'n[1-32]'}
          b: {nodes: 'n[1-32]', requires: a}
          c: {nodes: 'n[1-32]', requires: b}
        """)
    plan = waves("start", cluster.services)
    assert len(plan) == 1 and len(plan[0].jobs) == 1
    job = plan[0].jobs[0]
    assert str(job.nodes) == "n[1-32]"
    assert [(s.unit, s.requires) for s in job.steps] == [
        ("a.service", ()), ("b.service", (0,)), ("c.service", (1,))]


def test_stop_runs_in_reverse(tmp_path):
    cluster = load(tmp_path, """\
        services:
          a: {nodes: 'n[1-2]'}
          b: {nodes: 'n[1-2]', requires: a}
        """)
    steps = waves("stop", cluster.services)[0].jobs[0].steps
    assert [(s.unit, s.requires) for s in steps] == [("b.service", ()), ("a.service", (0,))]


def test_cross_node_dependency_takes_another_wave_and_skips_on_failure(tmp_path):
    cluster = load(tmp_path, CHAIN)
    plan = waves("start", cluster.services, fail={("n2", "app.service")})
    assert len(plan) == 3
    assert [(str(j.nodes), [s.unit for s in j.steps]) for j in plan[0].jobs] == [
        ("n[1-4]", ["demo@db.service", "app.service"])]
    # web runs on m[1-2] which have no app: it waits for the next wave, and
    # app failed on n2, so web is skipped everywhere
    assert plan[1].jobs == []
    skipped = {r.node: r.units[0].message for r in plan[1].decided}
    assert skipped == {n: "requires app, which failed" for n in ("m1", "m2", "n1", "n2", "n3")}
    # cron only follows web (after): it still runs, in the wave after web's
    assert [(str(j.nodes), [s.unit for s in j.steps]) for j in plan[2].jobs] == [
        ("n[1-4]", ["cron.service"])]


def test_restricted_nodes(tmp_path):
    cluster = load(tmp_path, CHAIN)
    nodes_of = {s.name: s.nodes & NodeSet("n[1-2]") for s in cluster.services}
    plan = waves("start", cluster.services, nodes_of)
    assert {str(j.nodes) for w in plan for j in w.jobs} == {"n[1-2]"}


def test_queries_ignore_dependencies(tmp_path):
    cluster = load(tmp_path, CHAIN)
    plan = waves("status", cluster.services)
    assert len(plan) == 1
    assert all(s.requires == () for j in plan[0].jobs for s in j.steps)


def test_apply_steps_carry_the_declared_state(tmp_path):
    cluster = load(tmp_path, CHAIN)
    steps = waves("apply", cluster.services)[0].jobs[0].steps
    assert steps[0] == svcctl.Step("demo@db.service", (),
                                   svcctl.Declared("db", "running", True))
    command = svcctl.remote_script(svcctl.Protocol(A["apply"], "@@svcctl-x"), steps)
    assert "p 0 demo@db.service running yes; s0=$r" in command
    assert 'if [ "$s0" = 0 ]; then p 1 app.service running -; s1=$r; else k unit ' \
           'app.service skipped; s1=1; fi' in command


@pytest.mark.parametrize("declared,state,drift", [
    ({"state": "running"}, ("loaded", "active", "running", "disabled"), False),
    ({"state": "running"}, ("loaded", "inactive", "dead", "disabled"), True),
    ({"state": "stopped"}, ("loaded", "inactive", "dead", "enabled"), False),
    ({"state": "stopped"}, ("loaded", "failed", "failed", "disabled"), False),
    ({"state": "running", "enabled": True}, ("loaded", "active", "running", "disabled"), True),
    ({"state": "running", "enabled": False}, ("loaded", "active", "running", "disabled"), False),
    ({"state": "running"}, ("not-found", "inactive", "dead", ""), True),
])
def test_drift(declared, state, drift):
    service = svcctl.Service("s", "s.service", NodeSet("n1"), **declared)
    assert service.declared.drifted(svcctl.UnitState(*state)) is drift


def test_service_views_group_states_and_mark_drift():
    """A cluster file's status: drift is decided when each unit is judged,
    and the view by service keeps NodeSets."""
    service = svcctl.Service("db", "db.service", NodeSet("n[1-3]"), enabled=True)
    step = svcctl.Step("db.service", declared=service.declared)
    protocol = svcctl.Protocol(A["status"])
    up = svcctl.UnitState("loaded", "active", "running", "enabled")
    down = svcctl.UnitState("loaded", "inactive", "dead", "enabled")
    results = [svcctl.NodeResult(n, [svcctl.judge_unit(protocol, step, None, st, None, "")])
               for n, st in (("n1", up), ("n2", up), ("n3", down))]
    assert [r.outcome for r in results] == ["ok", "ok", "drift"]
    report = svcctl.Report("status", ["db.service"], results, 0, 0, services=["db"])
    views = svcctl.service_views(report)
    assert [v.as_dict() for v in views] == [{
        "service": "db", "unit": "db.service", "nodes": "n[1-3]",
        "declared": "running, enabled",
        "states": {"active (running), enabled": "n[1-2]",
                   "inactive (dead), enabled": "n3"},
        "drift": "n3"}]
    assert svcctl.render_services(views, svcctl.Display()) == [
        "---------------", "db: db.service on n[1-3], declared running, enabled",
        "---------------", "n[1-2] (2): active (running), enabled",
        "n3: inactive (dead), enabled  <- drift"]


VALUES = st.one_of(st.text(max_size=40), st.integers(), st.booleans(), st.none(),
                   st.lists(st.text(max_size=10), max_size=3))


@settings(max_examples=300, deadline=None)
@given(unit=VALUES, nodes=VALUES, state=VALUES, enabled=VALUES, requires=VALUES)
def test_any_file_values_are_refused_or_safe(tmp_path_factory, unit, nodes, state,
                                             enabled, requires):
    """Whatever a cluster file holds: a clean UsageError, or services whose
    unit names are systemd-valid ASCII and whose nodes are host names."""
    import yaml
    doc = {"services": {"a": {"unit": unit, "nodes": nodes, "state": state,
                              "enabled": enabled, "requires": requires},
                        "b": {"nodes": "n1"}}}
    path = tmp_path_factory.mktemp("f") / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        cluster = svcctl.load_cluster_file(str(path))
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))
        return
    for service in cluster.services:
        assert svcctl.normalise_unit(service.unit) == service.unit
        assert all(not n.startswith("-") for n in service.nodes)
        assert service.state in ("running", "stopped")
        assert service.enabled in (True, False, None)


def test_a_skipped_requirement_skips_its_dependents_in_the_same_wave(tmp_path):
    """storage (p[1-2]) <- app (p[1-4]) <- monitor (p[1-2]): storage failed,
    so app is skipped, and monitor must be skipped too, not run."""
    cluster = load(tmp_path, """\
        services:
          storage: {nodes: 'p[1-2]'}
          app: {nodes: 'p[1-4]', requires: storage}
          monitor: {nodes: 'p[1-2]', requires: app}
        """)
    plan = waves("start", cluster.services, fail={("p1", "storage.service")})
    ran = [(str(j.nodes), [s.unit for s in j.steps]) for w in plan for j in w.jobs]
    assert ran == [("p[1-2]", ["storage.service"])]
    skipped = {(r.node, u.unit) for w in plan for r in w.decided for u in r.units}
    assert ("p1", "monitor.service") in skipped and ("p3", "app.service") in skipped


@pytest.mark.parametrize("value", ["!!bool maybe", "!!int n1", "!!float x",
                                   "!!timestamp 2001-13-45", "!!timestamp 2001-02-30"])
def test_a_tag_that_does_not_fit_is_one_line(tmp_path, value):
    with pytest.raises(UsageError) as err:
        load(tmp_path, "services:\n  a: {nodes: n1, enabled: %s}\n" % value)
    assert "services.a.enabled: must be true or false" in str(err.value) or \
        "must be" in str(err.value)


def test_many_large_groups_are_refused_before_memory_runs_out(tmp_path):
    """22 KB: 1000 groups of 100,000 nodes each, every one under the limit."""
    import time
    text = "groups:\n" + "".join("  g%d: 'n[1-100000]'\n" % i for i in range(1000)) \
        + "services:\n  a: {nodes: n1}\n"
    start = time.monotonic()
    with pytest.raises(UsageError) as err:
        load(tmp_path, text)
    assert "the file names more than 2000000 nodes in all" in str(err.value)
    assert time.monotonic() - start < 30


def test_aliases_are_refused(tmp_path):
    with pytest.raises(UsageError) as err:
        load(tmp_path, "groups:\n  a: &x n1\n  b: *x\nservices:\n  s: {nodes: n1}\n")
    assert "aliases are not allowed" in str(err.value)


def test_deep_nesting_is_one_line(tmp_path):
    with pytest.raises(UsageError) as err:
        load(tmp_path, "services: " + "[" * 3000 + "]" * 3000 + "\n")
    assert "\n" not in str(err.value)


PAYLOADS = st.sampled_from(["';touch CANARY;'", "$(touch CANARY)", "`touch CANARY`",
                            ";touch CANARY", "|touch CANARY", "\ntouch CANARY"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=PAYLOADS, where=st.sampled_from(["group", "nodes", "list", "source"]),
       prefix=st.sampled_from(["@", "@site:", "node1,@", "@web!@"]))
def test_hostile_cluster_files_run_no_command(tmp_path_factory, monkeypatch, payload,
                                              where, prefix):
    """A cluster file someone else wrote, whose group names carry shell code,
    read with a group source whose `map` is a shell command: never run."""
    from hostile import hostile_resolver
    tmp_path = tmp_path_factory.mktemp("h")
    canary = tmp_path / "canary"
    monkeypatch.setattr(svcctl, "std_group_resolver", lambda: hostile_resolver(tmp_path))
    pattern = prefix + payload.replace("CANARY", str(canary))
    import yaml
    doc = {"services": {"a": {"nodes": "node1"}}}
    if where == "group":
        doc["groups"] = {"g": pattern}
    elif where == "nodes":
        doc["services"]["a"]["nodes"] = pattern
    elif where == "list":
        doc["services"]["a"]["nodes"] = ["node2", pattern]
    else:
        doc["services"]["b"] = {"nodes": pattern.replace("@", "@x", 1)}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(UsageError) as err:
        svcctl.load_cluster_file(str(path))
    assert "\n" not in str(err.value)
    assert not canary.exists()


# --- a run of a cluster file, in-process: ClusterShell replaced by a stub ------

@pytest.mark.parametrize("action,said", [("ping", "running"),
                                         ("daemon-reload", ""),
                                         ("list-units", "")])
def test_node_actions_of_a_file_draw_every_node(tmp_path, monkeypatch, action, said):
    """-c FILE ping: every node of the file once, in the page's grid and the
    JSON, not as services with no unit."""
    stub_nodes(monkeypatch, lambda m, command: ["%s unit %s" % (m, action), said,
                                             "%s rc 0" % m])
    path = tmp_path / "cluster.yaml"
    path.write_text(CHAIN)
    page = tmp_path / "page.html"
    code, out, err = main("-c", str(path), action, "--json", "--html", str(page))
    assert code == 0, err
    doc = svcctl.json.loads(out)
    assert doc["services"] is None and doc["subject"] == "nodes of %s" % path
    assert [n["node"] for n in doc["nodes"]] == list(NodeSet("m[1-2],n[1-4]"))
    assert page.read_text().count('<b class="o0"') == 6


def test_a_live_page_of_a_file_shows_what_later_waves_still_do(tmp_path, monkeypatch):
    """Between waves, each service's grid holds its nodes still to do: web
    and cron on n[1-4] too, which are done with db and app only."""
    from framing import ACTIVE, INACTIVE, framed
    import re

    def started(marker, command):     # each unit of the node's script started
        units = re.findall(r"\ba (\S+) systemctl start -- ", command)
        return [line.decode() for line in framed(
            *[(unit, INACTIVE, ACTIVE, 0, []) for unit in units], marker=marker)]
    stub_nodes(monkeypatch, started)
    pages = []
    write_file = svcctl.write_file
    monkeypatch.setattr(svcctl, "write_file", lambda path, text: (
        pages.append(text), write_file(path, text)))
    path = tmp_path / "cluster.yaml"
    path.write_text(CHAIN)
    main("-c", str(path), "start", "--html", str(tmp_path / "page.html"))
    live, final = pages[0], pages[-1]
    assert 'http-equiv="refresh"' in live and 'http-equiv="refresh"' not in final

    def section(page, service):
        return page.split("<h3>%s <small>" % service)[1].split("</section>")[0]
    assert section(live, "web").startswith("5: 5 pending</small>")
    assert section(live, "cron").startswith("4: 4 pending</small>")
    assert section(live, "db").startswith("4: ")
    assert "pending" not in section(final, "web")


# --- a dry run says the plan in words ------------------------------------------

def test_dry_run_of_a_file_is_the_plan_in_words(tmp_path):
    """stop db also stops app and web: in which order, where, on what
    condition; the remote commands only with -v."""
    path = tmp_path / "cluster.yaml"
    path.write_text(CHAIN)
    code, out, err = main("-c", str(path), "--dry-run", "stop", "db")
    assert code == 0, err
    assert out.split("\n", 3)[3] == (
        "wave 1 of 2:\n"
        "  web: stop web.service on m[1-2],n[1-3] (5)\n"
        "wave 2 of 2:\n"
        "  app: stop app.service on n[1-4] (4); unless web failed on some node\n"
        "  db: stop demo@db.service on n[1-4] (4); after app on each node, not where it "
        "failed\n")
    code, verbose, _ = main("-c", str(path), "--dry-run", "stop", "db", "-v")
    assert "exec /bin/sh -c " not in out
    assert "\nwave 2, n[1-4] (4):\nexec /bin/sh -c " in verbose
    import re
    assert re.sub(r"wave \d+, .*\nexec /bin/sh -c .*\n", "", verbose) == out


@pytest.mark.parametrize("declared,state,changes", [
    (svcctl.Declared("s", "running", True), svcctl.UnitState("loaded", "inactive", "dead",
                                                              "disabled"),
     ["start", "enable"]),
    (svcctl.Declared("s", "stopped", False), svcctl.UnitState("loaded", "active", "running",
                                                               "enabled"),
     ["stop", "disable"]),
    (svcctl.Declared("s", "running"), svcctl.UnitState("loaded", "active", "running",
                                                        "disabled"), []),
    (svcctl.Declared("s", "stopped"), svcctl.UnitState("loaded", "failed", "failed",
                                                        "static"), []),
    (svcctl.Declared("s", "stopped"), svcctl.UnitState("loaded", "activating",
                                                        "auto-restart", "static"), ["stop"]),
])
def test_apply_decides_from_the_state(declared, state, changes):
    assert declared.changes(state) == changes


def test_apply_dry_run_reads_the_states_once_and_says_what_would_change(tmp_path,
                                                                        monkeypatch):
    import re
    from framing import ACTIVE, INACTIVE, state
    enabled = state(active="active", sub="running", file="enabled")
    commands = []

    def states(marker, command):
        commands.append(command)
        units = re.search(r"t=\$\(l ([^)]*)\); k state after", command).group(1).split()
        node_states = {"demo@db.service": enabled, "app.service": INACTIVE,
                       "web.service": ACTIVE, "cron.service": ACTIVE}
        return ["%s state after %s" % (marker, " ".join(
            token.decode() for unit in units for token in node_states[unit]))]
    stub_nodes(monkeypatch, states)
    path = tmp_path / "cluster.yaml"
    path.write_text(CHAIN)
    code, out, err = main("-c", str(path), "apply", "--dry-run")
    assert code == 0, err
    assert all(" systemctl start" not in c and "p demo" not in c for c in commands)
    assert re.sub(r"in \d+\.\d s", "in X s", out) == (
        "apply: dry run, the states read by one status query in X s, nothing changed\n"
        "db: demo@db.service, declared running, enabled\n"
        "  nothing to do: n[1-4] (4)\n"
        "app: app.service, declared running\n"
        "  start: n[1-4] (4)\n"
        "web: web.service, declared running\n"
        "  nothing to do: m[1-2],n[1-3] (5)\n"
        "cron: cron.service, declared stopped\n"
        "  stop: n[1-4] (4)\n"
        "== apply --dry-run on 6 nodes ==\n"
        "would change (4): n[1-4]\n"
        "nothing to do (2): m[1-2]\n")


def test_enabled_runtime_is_drift_from_enabled_true():
    """Ansible's reading: a runtime enablement is forgotten at reboot."""
    runtime = svcctl.UnitState("loaded", "active", "running", "enabled-runtime")
    lasting = svcctl.UnitState("loaded", "active", "running", "enabled")
    enabled, disabled = svcctl.Declared("d", "running", True), svcctl.Declared("d", "running",
                                                                               False)
    assert enabled.drifted(runtime) and enabled.changes(runtime) == ["enable"]
    assert not enabled.drifted(lasting) and enabled.changes(lasting) == []
    assert disabled.drifted(runtime) and disabled.changes(runtime) == ["disable"]
    assert runtime.is_enabled       # is-enabled still answers as systemctl does


def test_a_file_is_measured_per_node_as_each_node_is_sent_it(tmp_path):
    """A command's size is each node's script: 600 services each on its own
    node run (each node's script is small); a chain of 450 services on one
    node, each requiring the one before, is refused before any contact (its
    script, with each step's requirement test, is over what one argument
    may be); so is apply --dry-run's status query (-v: systemctl's text of
    each unit) when it is."""
    spread = tmp_path / "spread.yaml"
    spread.write_text("services:\n" + "".join(
        "  s%04d:\n    unit: svc%04d\n    nodes: node%d\n" % (i, i, i) for i in range(600)))
    code, out, err = main("-c", str(spread), "--dry-run", "start")
    assert code == 0 and err == "", err
    chain = tmp_path / "chain.yaml"
    chain.write_text("services:\n" + "".join(
        "  s%04d:\n    unit: systemd-fsck-svc%04d\n    nodes: node1\n%s" % (
            i, i, "    requires: s%04d\n" % (i - 1) if i else "") for i in range(450)))
    code, out, err = main("-c", str(chain), "--dry-run", "start")
    assert (code, out) == (2, "") and err.startswith(
        "svcctl: too many units for one command: its script would be "), err
    assert main("-c", str(chain), "--dry-run", "stop", "s0000")[0] == 0
    together = tmp_path / "together.yaml"
    together.write_text("services:\n" + "".join(
        "  s%04d:\n    unit: systemd-fsck-svc%04d\n    nodes: node1\n" % (i, i)
        for i in range(800)))
    assert main("-c", str(together), "--dry-run", "status")[0] == 0
    assert main("-c", str(together), "--dry-run", "status", "-v")[0] == 2
    code, out, err = main("-c", str(together), "--dry-run", "apply", "-v")   # no contact
    assert (code, out) == (2, "") and "too many units" in err
