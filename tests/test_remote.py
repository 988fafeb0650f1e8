"""The remote command: one POSIX sh line, quoted arguments, framed output."""
import shlex
import shutil
import subprocess

import pytest

import svcctl
from framing import MARKER, entry


def command(action, units=("demo.service",), **kw):
    """The POSIX sh script a node runs (remote_command wraps it in exec sh -c)."""
    protocol = svcctl.Protocol(svcctl.ACTIONS[action], MARKER, **kw)
    return svcctl.remote_script(protocol, [svcctl.Step(u) for u in units])


def test_units_are_quoted_after_double_dash():
    cmd = command("start", ["demo.service", "getty@tty1.service"])
    assert "a demo.service systemctl start -- demo.service;" in cmd
    assert "a getty@tty1.service systemctl start -- getty@tty1.service;" in cmd
    assert cmd.endswith("k end")
    assert "\n" not in cmd


def test_backslash_names_stay_one_quoted_word():
    cmd = command("start", ["a\\x2db.service"])
    assert "-- 'a\\x2db.service'" in cmd
    assert "$(l 'a\\x2db.service')" in cmd


def test_sudo_wraps_the_action_not_the_reads():
    cmd = command("restart", sudo=True)
    assert "sudo -n systemctl restart -- demo.service" in cmd
    assert "sudo -n systemctl show" not in cmd
    # queries need no privileges
    assert "sudo" not in command("is-active", sudo=True)


def test_now_flag():
    assert "systemctl enable --now -- demo.service" in command("enable", now=True)


def test_queries_read_the_state_once_and_run_nothing_else():
    cmd = command("is-active", ["a.service", "b.service"])
    assert cmd.endswith("t=$(l a.service b.service); k state after $t; k end")
    assert "systemctl is-active" not in cmd and "state before" not in cmd
    assert "systemctl status" not in command("status")
    assert "a demo.service systemctl status --no-pager --full -- demo.service; s0=$r; " in \
        command("status", verbose=True)


def test_change_reads_all_states_before_and_after():
    cmd = command("stop", ["a.service", "b.service"])
    assert cmd.count("(l a.service b.service)") == 2
    assert cmd.index("state before") < cmd.index("a a.service systemctl stop") < \
        cmd.index("a b.service systemctl stop") < cmd.index("state after")


def test_node_actions_take_no_unit():
    cmd = command("daemon-reload", units=())
    assert cmd.endswith("a daemon-reload systemctl daemon-reload; k end")
    assert "systemctl is-system-running" in command("ping", units=())


FAKE_SYSTEMCTL = (
    '#!/bin/sh\nif [ "$1" = show ]; then shift 4; for u; do '
    'echo Result=success; echo NRestarts=0; echo LoadState=loaded; '
    'echo ActiveState=active; echo SubState=running; echo UnitFileState=enabled; '
    'echo; done; else echo "did $*"; exit 3; fi\n')


def fake_systemctl(tmp_path):
    fake = tmp_path / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    return {"PATH": "%s:/usr/bin:/bin" % tmp_path}


def test_script_runs_in_posix_sh_and_frames_output(tmp_path):
    """Run the real script with a fake systemctl: the framing parses back."""
    proc = subprocess.run(["sh", "-c", command("start", ["a.service", "b.service"])],
                          capture_output=True, env=fake_systemctl(tmp_path))
    framed = svcctl.parse_output(proc.stdout.splitlines(), MARKER)
    assert framed.complete
    assert list(framed.sections) == ["a.service", "b.service"]
    assert framed.sections["a.service"]["rc"] == 3
    assert framed.sections["a.service"]["output"] == [b"did start -- a.service"]
    states, other = svcctl.state_blocks(framed.states[b"after"])
    assert other == "" and len(states) == 2
    assert states[1] == svcctl.UnitState("loaded", "active", "running", "enabled",
                                         "success", restarts="0")


@pytest.mark.parametrize("shell", ["sh", "dash", "bash", "zsh"])
def test_any_login_shell_runs_the_same_script(tmp_path, shell):
    """ssh hands the command to the node user's login shell: whatever it is,
    `exec /bin/sh -c` runs the script, and unit names with backslashes are
    printed as they are (dash's and zsh's echo would read \\x2d as escapes)."""
    if not shutil.which(shell):
        pytest.skip("%s is not installed" % shell)
    unit = "systemd-fsck@dev-disk-by\\x2duuid-1234.service"
    protocol = svcctl.Protocol(svcctl.ACTIONS["start"], MARKER)
    cmd = svcctl.remote_command(protocol, [svcctl.Step(unit)])
    proc = subprocess.run([shell, "-c", cmd], capture_output=True,
                          env=fake_systemctl(tmp_path))
    framed = svcctl.parse_output(proc.stdout.splitlines(), MARKER)
    assert framed.complete, proc
    assert list(framed.sections) == [unit]
    assert framed.sections[unit]["output"] == [b"did start -- " + unit.encode()]


def test_settle_watches_started_units_only():
    assert "w demo.service; t=$(l demo.service); k state after" in command("start", settle=2)
    assert "-lt 4 ]" in command("start", settle=2)          # 4 polls of 0.5 s
    assert "w()" not in command("stop", settle=2)
    assert "w()" not in command("start")
    assert "w demo.service" in command("try-restart", settle=1)


TYPED_SYSTEMCTL = (
    '#!/bin/sh\necho "$1" >> "$CALLS"\nif [ "$1" = show ]; then shift 4; for u; do '
    'echo Type=$(cat "$TYPES/$u"); echo LoadState=loaded; '
    'echo ActiveState=$(cat "$ACTIVE/$u" 2>/dev/null || echo inactive); '
    'echo SubState=dead; echo UnitFileState=static; '
    'echo InvocationID=$(cat "$RUNS/$u" 2>/dev/null); done; fi\n')


def on_fake_node(tmp_path, script, programs, **data):
    """Run a script with fake programs first in PATH, each data folder
    (NAME={file: text}) named by an environment variable; return the calls
    the programs logged, in order, and the framed reply."""
    proc = subprocess.run(["sh", "-c", script], capture_output=True,
                          env=fake_node(tmp_path, programs, **data))
    framed = svcctl.parse_output(proc.stdout.splitlines(), MARKER)
    assert framed.complete, proc
    return (tmp_path / "calls").read_text().split("\n")[:-1], framed


def fake_node(tmp_path, programs, **data):
    """The environment of a node with these fake programs and data."""
    tmp_path.mkdir(exist_ok=True)
    env = {"PATH": "%s:/usr/bin:/bin" % tmp_path, "CALLS": str(tmp_path / "calls")}
    for var, files in data.items():
        folder = tmp_path / var.lower()
        folder.mkdir(exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        env[var] = str(folder)
    for name, text in programs.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    (tmp_path / "calls").write_text("")
    return env


def run_typed(tmp_path, script, types, active=None, runs=None, links=None):
    """The systemctl verbs a script runs on a node whose units have the given
    Types (and ActiveStates: inactive unless said; InvocationIDs, and the
    links systemd exports them as), in order, with each `sleep` among them."""
    return run_typed_node(tmp_path, script, types, active, runs, links)[0]


def run_typed_node(tmp_path, script, types, active=None, runs=None, links=None,
                   systemctl=TYPED_SYSTEMCTL):
    """run_typed's calls and the framed reply."""
    tmp_path.mkdir(exist_ok=True)
    exported = tmp_path / "units"       # the node's /run/systemd/units
    exported.mkdir()
    for unit, run in (links or {}).items():
        (exported / ("invocation:" + unit)).symlink_to(run)
    return on_fake_node(tmp_path, script.replace("/run/systemd/units", str(exported)),
                        {"systemctl": systemctl, "sleep":
                         '#!/bin/sh\necho "sleep $1" >> "$CALLS"\n'},
                        TYPES=types, ACTIVE=active or {}, RUNS=runs or {})


@pytest.mark.parametrize("action,kw,calls", [
    ("start", {}, ["show", "start", "sleep 0.25", "show"]),
    ("restart", {}, ["restart", "show", "sleep 0.25", "show"]),
    ("reload-or-restart", {}, ["reload-or-restart", "show", "sleep 0.25", "show"]),
    ("try-restart", {}, ["show", "try-restart", "show"]),     # it was not running
    ("enable", {"now": True}, ["show", "enable", "sleep 0.25", "show"]),
    ("enable", {}, ["enable", "show"]), ("stop", {}, ["show", "stop", "show"]),
    ("disable", {"now": True}, ["show", "disable", "show"]), ("status", {}, ["show"]),
])
@pytest.mark.parametrize("kind", ["simple", "exec", "idle"])
def test_started_units_of_types_that_return_at_once_are_read_a_moment_later(
        tmp_path, action, kw, calls, kind):
    """Under load a unit that dies at once may not be dead yet when systemctl
    returns (simple: once forked): its state is read START_GRACE later."""
    assert run_typed(tmp_path, command(action, **kw), {"demo.service": kind}) == calls


@pytest.mark.parametrize("action,kw,calls", [
    ("start", {}, ["show", "start", "show"]), ("restart", {}, ["restart", "show"]),
    ("enable", {"now": True}, ["show", "enable", "show"]),
])
@pytest.mark.parametrize("kind", ["notify", "forking", "oneshot", "dbus", ""])
def test_units_that_said_they_are_up_cost_no_wait(tmp_path, action, kw, calls, kind):
    """notify, forking, oneshot, dbus: start returns once the service is up or
    failed; a socket or timer has no Type: no grace, as many systemctl
    processes as before."""
    assert run_typed(tmp_path, command(action, **kw), {"demo.service": kind}) == calls


@pytest.mark.parametrize("action,kw,calls", [
    ("start", {}, ["show", "start", "show"]),
    ("enable", {"now": True}, ["show", "enable", "show"]),
    ("try-restart", {}, ["show", "try-restart", "sleep 0.25", "show"]),
    ("restart", {}, ["restart", "show", "sleep 0.25", "show"]),
])
def test_only_a_unit_given_a_new_process_is_waited_for(tmp_path, action, kw, calls):
    """A start of a simple unit already running starts nothing (cron's
    `svcctl start` of units that are up paid a quarter second each time); a
    try-restart restarts only a running one; a restart always restarts."""
    assert run_typed(tmp_path, command(action, **kw), {"demo.service": "simple"},
                     {"demo.service": "active"}) == calls


def test_the_grace_is_decided_per_unit_from_its_own_block(tmp_path):
    """A running simple unit beside a stopped notify one: no wait; a stopped
    simple one beside a running one: a wait."""
    script = command("start", ["a.service", "b.service"])
    assert run_typed(tmp_path, script, {"a.service": "simple", "b.service": "notify"},
                     {"a.service": "active"}) == ["show", "start", "start", "show"]
    assert run_typed(tmp_path / "2", script, {"a.service": "simple", "b.service": "simple"},
                     {"a.service": "active"}) == ["show", "start", "start", "sleep 0.25",
                                                  "show"]


RUN1, RUN2 = "1" * 32, "2" * 32


@pytest.mark.parametrize("kind", ["simple", "notify"])
def test_a_start_reads_the_units_runs_first_not_their_states(tmp_path, kind):
    """A unit still in the run it was in before the start started nothing: ok,
    and no wait; a new run is a change (and a simple one is read again after
    the grace). One readlink where a systemctl show was."""
    steps = [svcctl.Step("a.service"), svcctl.Step("b.service")]
    protocol = svcctl.Protocol(svcctl.ACTIONS["start"], MARKER)
    script = svcctl.remote_script(protocol, steps)
    types = {"a.service": kind, "b.service": "notify"}
    links = {"a.service": RUN1, "b.service": RUN1}
    active = {"a.service": "active", "b.service": "active"}
    calls, framed = run_typed_node(tmp_path, script, types, active,
                                   {"a.service": RUN1, "b.service": RUN1}, links)
    assert calls == ["start", "start", "show"]
    judged = svcctl.judge_units(protocol, steps, framed)
    assert [judged[s.unit].outcome for s in steps] == ["ok", "ok"]
    assert judged["a.service"].before is None
    calls, framed = run_typed_node(tmp_path / "2", script, types, active,
                                   {"a.service": RUN2, "b.service": RUN1}, links)
    assert calls == ["start", "start", "show"] + (
        ["sleep 0.25", "show"] if kind == "simple" else [])
    judged = svcctl.judge_units(protocol, steps, framed)
    assert [judged[s.unit].outcome for s in steps] == ["changed", "ok"]
    assert svcctl.unit_head(protocol.action, judged["a.service"], svcctl.OUTCOMES["changed"]) \
        == "changed, active (dead), static"


def test_a_try_restart_reads_the_units_runs_first(tmp_path):
    """A run read first: the unit was up. A new run: it was restarted
    (changed, must run); the same run, up: not restarted (ok); the same run,
    not up (a Condition now false stops it, and keeps its run), or no run
    (restarted, then stopped and unloaded): changed, never ok."""
    steps = [svcctl.Step("a.service"), svcctl.Step("b.service")]
    protocol = svcctl.Protocol(svcctl.ACTIONS["try-restart"], MARKER)
    script = svcctl.remote_script(protocol, steps)
    types = {"a.service": "simple", "b.service": "simple"}
    links = {"a.service": RUN1, "b.service": RUN1}
    up = {"a.service": "active", "b.service": "active"}
    calls, framed = run_typed_node(tmp_path, script, types, up,
                                   {"a.service": RUN2, "b.service": RUN1}, links)
    assert calls == ["try-restart", "try-restart", "show", "sleep 0.25", "show"]
    judged = svcctl.judge_units(protocol, steps, framed)
    assert [judged[s.unit].outcome for s in steps] == ["changed", "ok"]
    calls, framed = run_typed_node(tmp_path / "2", script, types,
                                   {"a.service": "failed"}, {"a.service": RUN2}, links)
    judged = svcctl.judge_units(protocol, steps, framed)
    assert judged["a.service"].outcome == "failed"      # restarted, and died
    assert judged["b.service"].outcome == "changed"     # restarted, and gone
    calls, framed = run_typed_node(tmp_path / "3", script, types, {"a.service": "active"},
                                   {"a.service": RUN1, "b.service": RUN1}, links)
    judged = svcctl.judge_units(protocol, steps, framed)
    assert [judged[s.unit].outcome for s in steps] == ["ok", "changed"]
    calls, framed = run_typed_node(tmp_path / "4", script, types, {"b.service": "failed"},
                                   {"a.service": RUN1, "b.service": RUN1}, links)
    judged = svcctl.judge_units(protocol, steps, framed)
    # a was up and is stopped in the same run (a Condition); b was up, and
    # reads failed: it must have been running
    assert [judged[s.unit].outcome for s in steps] == ["changed", "failed"]


def test_a_try_restart_restarts_a_unit_waiting_to_restart(tmp_path):
    """systemd's try-restart restarts an activating unit too (a crashed one
    waiting for its restart): a simple one is read again after the grace,
    and found failed again, it failed (not "changed", not "ok")."""
    steps = [svcctl.Step("a.service")]
    protocol = svcctl.Protocol(svcctl.ACTIONS["try-restart"], MARKER)
    script = svcctl.remote_script(protocol, steps)
    calls, framed = run_typed_node(tmp_path, script, {"a.service": "simple"},
                                   {"a.service": "activating"})
    assert calls == ["show", "try-restart", "sleep 0.25", "show"]
    before = svcctl.UnitState("loaded", "activating", "auto-restart", "enabled")
    after = svcctl.UnitState("loaded", "failed", "failed", "enabled", "exit-code")
    judged = svcctl.judge_unit(protocol, steps[0], before, after, 0, "")
    assert judged.outcome == "failed"
    stopped = svcctl.UnitState("loaded", "inactive", "dead", "enabled")
    assert svcctl.judge_unit(protocol, steps[0], stopped, stopped, 0, "").outcome == "ok"


@pytest.mark.parametrize("run", ["1" * 31, "A" * 32, "-n", "1" * 33, "*", "é" * 16])
def test_a_link_that_is_not_a_run_reads_the_states(tmp_path, run):
    """Only what read_runs believes is sent as a run; any other link target
    (no API promises their shape) reads the states first, as a missing link."""
    steps = [svcctl.Step("a.service"), svcctl.Step("b.service")]
    protocol = svcctl.Protocol(svcctl.ACTIONS["start"], MARKER)
    script = svcctl.remote_script(protocol, steps)
    calls, framed = run_typed_node(tmp_path, script, {"a.service": "notify",
                                                      "b.service": "notify"},
                                   {"a.service": "active", "b.service": "active"}, {},
                                   {"a.service": RUN1, "b.service": run})
    assert calls == ["show", "start", "start", "show"]
    judged = svcctl.judge_units(protocol, steps, framed)
    assert [judged[s.unit].outcome for s in steps] == ["ok", "ok"]


def test_a_start_reads_the_states_where_a_run_cannot_be_read(tmp_path):
    """A missing link (the unit stopped and unloaded, an alias, no process):
    the states are read first, as for stop, and judged from them."""
    steps = [svcctl.Step("a.service"), svcctl.Step("b.service")]
    protocol = svcctl.Protocol(svcctl.ACTIONS["start"], MARKER)
    script = svcctl.remote_script(protocol, steps)
    calls, framed = run_typed_node(tmp_path, script, {"a.service": "simple",
                                                      "b.service": "notify"},
                                   {"b.service": "active"}, {"b.service": RUN1},
                                   {"b.service": RUN1})
    assert calls == ["show", "start", "start", "sleep 0.25", "show"]
    judged = svcctl.judge_units(protocol, steps, framed)
    assert [judged[s.unit].outcome for s in steps] == ["changed", "ok"]
    assert judged["a.service"].before.active == "inactive"
    assert judged["b.service"].after.invocation == RUN1


# systemd older than 232: no InvocationID property, no links
RUNLESS_SYSTEMCTL = TYPED_SYSTEMCTL.replace(
    '; \n    echo InvocationID=$(cat "$RUNS/$u" 2>/dev/null)', '').replace(
    'echo InvocationID=$(cat "$RUNS/$u" 2>/dev/null); ', '')


@pytest.mark.parametrize("action", ["start", "try-restart"])
def test_a_systemd_without_runs_still_pays_the_grace(tmp_path, action):
    """No run to read (systemd < 232 has neither the links nor InvocationID):
    the states are read first, and a simple unit given a new process is read
    again after the grace, as before runs were read."""
    assert "InvocationID" not in RUNLESS_SYSTEMCTL
    steps = [svcctl.Step("a.service"), svcctl.Step("b.service")]
    protocol = svcctl.Protocol(svcctl.ACTIONS[action], MARKER)
    script = svcctl.remote_script(protocol, steps)
    active = {"a.service": "active"} if action == "try-restart" else {}
    calls, framed = run_typed_node(tmp_path, script, {"a.service": "simple",
                                                      "b.service": "notify"},
                                   active, systemctl=RUNLESS_SYSTEMCTL)
    assert calls == ["show", action, action, "sleep 0.25", "show"]
    judged = svcctl.judge_units(protocol, steps, framed)
    assert judged["a.service"].outcome == "changed"
    assert judged["a.service"].before.active == ("active" if active else "inactive")


def test_a_garbled_run_is_no_run(tmp_path):
    """Runs that are not 32 hex digits, or too few, are not believed: no
    state before, said so."""
    steps = [svcctl.Step("a.service")]
    protocol = svcctl.Protocol(svcctl.ACTIONS["start"], MARKER)
    framed = svcctl.Framed({"a.service": {"output": [], "rc": 0}}, {
        b"runs": [b"x" * 32], b"after": [b"LoadState=loaded", b"ActiveState=active",
                                          b"UnitFileState=static", b"InvocationID=" + b"x" * 32]})
    judged = svcctl.judge_units(protocol, steps, framed)["a.service"]
    assert judged.outcome == "error" and "no state read" in judged.message


def test_one_simple_unit_among_several_is_waited_for_once(tmp_path):
    script = command("restart", ["a.service", "b.service"])
    assert run_typed(tmp_path, script, {"a.service": "notify", "b.service": "simple"}) \
        == ["restart", "restart", "show", "sleep 0.25", "show"]


def test_settle_watches_instead_of_the_grace():
    script = command("start", settle=1)
    assert "sleep 0.25" not in script and "w demo.service" in script


@pytest.mark.parametrize("kind,calls", [
    ("simple", ["show", "start", "sleep 0.25", "show"]),
    ("notify", ["show", "start", "show"])])
def test_apply_reads_a_started_simple_unit_a_moment_later(tmp_path, kind, calls):
    declared = svcctl.Declared("demo", "running")
    steps = [svcctl.Step("demo.service", declared=declared)]
    apply = svcctl.ACTIONS["apply"]
    plain = svcctl.remote_script(svcctl.Protocol(apply, MARKER), steps)
    assert run_typed(tmp_path, plain, {"demo.service": kind}) == calls
    watched = svcctl.remote_script(svcctl.Protocol(apply, MARKER, settle=3), steps)
    assert '[ -z "$S" ] || w $S; t=$(l demo.service)' in watched and "-lt 6 ]" in watched


@pytest.mark.parametrize("kind,wait", [("simple", ["sleep 0.25"]), ("notify", [])])
def test_apply_reads_the_states_once_before_and_once_after(tmp_path, kind, wait):
    """A 3-service chain was 3 systemctl processes a service (read, act,
    read) and a grace each: now one read before, one after, one grace."""
    steps = [svcctl.Step(unit, declared=svcctl.Declared(unit[0], "running"),
                         requires=(index - 1,) if index else ())
             for index, unit in enumerate(("a.service", "b.service", "c.service"))]
    script = svcctl.remote_script(svcctl.Protocol(svcctl.ACTIONS["apply"], MARKER), steps)
    types = {unit: kind for unit in ("a.service", "b.service", "c.service")}
    assert run_typed(tmp_path, script, types) == ["show", "start", "start", "start"] \
        + wait + ["show"]


SOCKET_AND_SERVICES_SYSTEMCTL = (
    '#!/bin/sh\necho "$1" >> "$CALLS"\nif [ "$1" = show ]; then k=$3; shift 3; '
    '[ "$1" = -- ] && shift; for u; do case $u in *.service) echo Type=simple; esac; '
    'echo Result=success; echo LoadState=loaded; echo ActiveState=$(cat "$STATES/$u"); '
    'echo SubState=x; echo UnitFileState=static; case $k in *InvocationID*) '
    'echo InvocationID=; esac; echo; done; else echo "did $1 $3"; fi\n')


@pytest.mark.parametrize("action", ["apply", "start"])
def test_a_socket_beside_a_service_keeps_its_own_state(tmp_path, action):
    """A unit's block ends with the key systemctl prints last (as state_blocks
    reads it), not where a key comes again: a socket has no Type, so it took
    the next service's, and that service, started, was not waited for."""
    states = {"a.socket": "active", "b.service": "inactive"}
    steps = [svcctl.Step(unit, declared=svcctl.Declared(unit[0], "running"))
             for unit in states]
    script = svcctl.remote_script(svcctl.Protocol(svcctl.ACTIONS[action], MARKER,
                                                  journal=0), steps)
    calls, framed = on_fake_node(tmp_path, script, {
        "systemctl": SOCKET_AND_SERVICES_SYSTEMCTL,
        "sleep": '#!/bin/sh\necho "sleep $1" >> "$CALLS"\n'}, STATES=states)
    assert calls == ["show"] + ["start"] * (1 + (action == "start")) + ["sleep 0.25", "show"]
    if action == "apply":
        assert [framed.sections[u]["output"] for u in states] == [
            [], [b"did start b.service"]]
        assert b"Type=simple" not in framed.sections["a.socket"]["before"]
        assert b"Type=simple" in framed.sections["b.service"]["before"]


def test_marker_is_random_per_run_and_needs_no_quoting():
    first, second = svcctl.new_marker(), svcctl.new_marker()
    assert first != second
    assert shlex.quote(first) == first


STATEFUL_SYSTEMCTL = (
    '#!/bin/sh\necho "$1" >> "$CALLS"\nif [ "$1" = show ]; then shift 3; '
    '[ "$1" = -- ] && shift; for u; do echo Type=notify; echo InvocationID=abc123; '
    'echo LoadState=loaded; echo ActiveState=$(cat "$STATES/$u"); echo SubState=x; '
    'echo UnitFileState=static; done; else exit $(cat "$STATES/rc"); fi\n')
FAKE_JOURNALCTL = '#!/bin/sh\necho "journalctl $*" >> "$CALLS"\necho "boom (pid 1234)"\n'


def run_failing(tmp_path, script, states, rc=0):
    """A script on a node whose units are in the given ActiveStates after the
    action (which exits `rc`): (systemctl and journalctl calls, framed)."""
    return on_fake_node(tmp_path, script, {"systemctl": STATEFUL_SYSTEMCTL,
                                           "journalctl": FAKE_JOURNALCTL},
                        STATES=dict(states, rc=str(rc)))


def test_nothing_failed_costs_no_journal_and_no_process(tmp_path):
    calls, framed = run_failing(tmp_path, command("restart", ["a.service", "b.service"]),
                                {"a.service": "active", "b.service": "active"})
    assert calls == ["restart", "restart", "show"] and framed.journals == {}


def test_a_failed_unit_brings_its_runs_journal(tmp_path):
    """Only the failed unit: one show for its InvocationID, one journalctl of
    that run (its own lines and systemd's about it)."""
    calls, framed = run_failing(tmp_path, command("restart", ["a.service", "b.service"]),
                                {"a.service": "active", "b.service": "failed"})
    assert calls == ["restart", "restart", "show", "show", "show",
                     "journalctl -o json --output-fields=MESSAGE,_PID,_SYSTEMD_INVOCATION_ID,"
                     "INVOCATION_ID -n 18 --no-pager _SYSTEMD_UNIT=b.service + "
                     "UNIT=b.service _PID=1"]
    assert framed.invocations == {"b.service": "abc123"}
    assert framed.journals == {"b.service": [b".boom (pid 1234)"]}
    assert svcctl.journal_text(framed.journals["b.service"], "abc123", 5) == "boom (pid N)"


def test_a_failed_action_brings_the_journal_even_if_the_state_reads_fine(tmp_path):
    calls, framed = run_failing(tmp_path, command("start", journal=2), {"demo.service":
                                                                        "inactive"}, rc=1)
    assert calls[-1].startswith("journalctl -o json --output-fields=MESSAGE,_PID,"
                                "_SYSTEMD_INVOCATION_ID,INVOCATION_ID -n 12 ")
    assert list(framed.journals) == ["demo.service"]


def test_journal_0_and_queries_but_status_ask_for_none(tmp_path):
    for script in (command("start", journal=0), command("is-active")):
        calls, framed = run_failing(tmp_path, script, {"demo.service": "failed"}, rc=1)
        assert framed.journals == {} and not any("journalctl" in c for c in calls)
    _, framed = run_failing(tmp_path, command("status", verbose=True),
                            {"demo.service": "failed"}, rc=3)
    assert list(framed.journals) == ["demo.service"]
    _, framed = run_failing(tmp_path, command("status", verbose=True),
                            {"demo.service": "inactive"}, rc=3)
    assert framed.journals == {}        # status's exit code 3 is an answer


def test_apply_brings_the_journal_of_a_unit_it_could_not_start(tmp_path):
    steps = [svcctl.Step("demo.service", declared=svcctl.Declared("demo", "running"))]
    script = svcctl.remote_script(svcctl.Protocol(svcctl.ACTIONS["apply"], MARKER), steps)
    calls, framed = run_failing(tmp_path, script, {"demo.service": "failed"}, rc=1)
    assert list(framed.journals) == ["demo.service"]
    assert framed.sections["demo.service"]["rc"] == 1


def test_with_sudo_the_journal_is_read_as_root(tmp_path):
    script = command("start", sudo=True)
    assert "x='sudo -n'; " in script and "$x journalctl" in script
    assert "sudo -n journalctl --no-pager" in command("journal", sudo=True, extra=(
        "-n", "3"))


RUNTIME_ENABLED_SYSTEMCTL = (
    '#!/bin/sh\necho "$1" >> "$CALLS"\nif [ "$1" = show ]; then shift 3; '
    '[ "$1" = -- ] && shift; for u; do echo Type=notify; echo LoadState=loaded; '
    'echo ActiveState=active; echo SubState=running; '
    'echo UnitFileState=$(cat "$FILES/$u"); done; fi\n')


@pytest.mark.parametrize("file,calls", [
    ("enabled-runtime", ["show", "enable", "show"]),    # a reboot would forget it
    ("enabled", ["show", "show"])])
def test_apply_enables_for_good(tmp_path, file, calls):
    """`enabled: true` is satisfied only by an enablement that lasts."""
    steps = [svcctl.Step("demo.service", declared=svcctl.Declared("demo", "running", True))]
    script = svcctl.remote_script(svcctl.Protocol(svcctl.ACTIONS["apply"], MARKER), steps)
    done, _ = on_fake_node(tmp_path, script, {"systemctl": RUNTIME_ENABLED_SYSTEMCTL},
                           FILES={"demo.service": file})
    assert done == calls


# --- journals: bounded by their last bytes, journalctl's exit code kept -----

CAT_JOURNALCTL = '#!/bin/sh\ncat "$JOURNAL/out" || exit; exit $(cat "$JOURNAL/rc")\n'  # SIGPIPE


def on_journal_node(tmp_path, action, script, out, rc=0, state="failed", path=None):
    """A script on a node whose journalctl prints `out` (whatever its options)
    and exits `rc` (None: there is none): the framed reply, and the node's
    result as svcctl reads it."""
    programs = {"systemctl": STATEFUL_SYSTEMCTL}
    if rc is not None:
        programs["journalctl"] = CAT_JOURNALCTL
    env = fake_node(tmp_path, programs, STATES={"demo.service": state, "rc": "0"},
                    JOURNAL={"out": out.decode(), "rc": str(rc)})
    if rc is None:      # only head and tail besides the fakes
        for name in ("head", "tail"):
            (tmp_path / name).symlink_to(shutil.which(name))
        env["PATH"] = str(tmp_path)
    lines = subprocess.run(["/bin/sh", "-c", script], capture_output=True,     # as
                           env=env).stdout.splitlines()                     # sent
    result = svcctl.read_reply(svcctl.Protocol(svcctl.ACTIONS[action], MARKER), "n1",
                               svcctl.RawResult(lines, rc=0), [svcctl.Step("demo.service")])
    return svcctl.parse_output(lines, MARKER), result.units[0]


def long_story(node, count, size, newest_first=False):
    """`count` entries of `size`-byte messages, as journalctl prints them."""
    entries = [entry("line %d of a long story%s" % (i, "." * size), node, i) + b"\n"
               for i in range(1, count + 1)]
    return b"".join(entries[::-1] if newest_first else entries)


@pytest.mark.parametrize("action,bound", [
    ("restart", svcctl.JOURNAL_BYTES * svcctl.journal_entries(100)),
    ("journal", svcctl.journal_read_bytes(1))])
def test_a_long_journal_keeps_its_last_lines_within_its_bytes_and_folds(tmp_path, action,
                                                                         bound):
    """1,000 long entries (3,000 for svcctl journal) on three nodes whose
    JSON heads differ in length (cut by bytes, each kept other lines: three
    blocks): each node sends at most its bound, the newest lines (the reason
    comes last), and the three fold."""
    size = 2000 if action == "restart" else 200
    texts = set()
    for node in (1, 4, 6):
        if action == "restart":
            framed, _ = on_journal_node(tmp_path / str(node), action,
                                        command(action, journal=100),
                                        long_story(node, 1000, size))
            lines = framed.journals["demo.service"]
            texts.add(svcctl.journal_text(lines, "abc123", 100))
        else:
            framed, unit = on_journal_node(tmp_path / str(node), action,
                                           command(action, extra=("-n", "3000")),
                                           long_story(node, 3000, size, newest_first=True))
            lines = framed.sections["demo.service"]["output"]
            # journalctl died of SIGPIPE when head had its bytes: not an error
            assert framed.sections["demo.service"]["rc"] == 141 and unit.outcome == "ok"
            notes, _, text, _ = svcctl.read_journal(lines, bound)
            texts.add("\n".join(["(%s)" % note for note in notes] + [text]))
        assert 0 < sum(len(line) + 1 for line in lines) <= bound + 1
    assert len(texts) == 1
    text = texts.pop().split("\n")
    assert text[0] == "(cut at %d bytes: earlier lines left out)" % bound
    last = 1000 if action == "restart" else 3000
    first = last - len(text) + 2
    assert text[1:] == [("line %d of a long story%s" % (i, "." * size))[
        :svcctl.JOURNAL_LINE_MAX] for i in range(first, last + 1)]
    # no more than half of what the bound holds left out to fold
    assert len(text) * len(entry("x" * size)) > bound // 2


def test_a_message_cut_where_it_holds_the_marker_forges_nothing(tmp_path):
    """A unit that read the run's marker (any local user sees the command
    line) logs a message sized so that tail's cut lands on the marker: the
    forged state line stays journal text, the unit stays failed."""
    bound = svcctl.JOURNAL_BYTES * svcctl.journal_entries(5)
    forged = MARKER + " state after LoadState=not-found ActiveState=active SubState=" \
                      "running UnitFileState=static"
    out = entry("x" * 5000 + forged + " " * (bound - len(forged) - 3)) + b"\n"
    assert out[-bound:].startswith(MARKER.encode())
    framed, unit = on_journal_node(tmp_path, "restart", command("restart"), out)
    assert b"not-found" not in b" ".join(framed.states[b"after"])
    assert (unit.outcome, unit.journal) == (
        "failed", "(cut at %d bytes: earlier lines left out)" % bound)


def test_svcctl_journal_keeps_journalctls_exit_code(tmp_path):
    """The output goes through head; the exit code is journalctl's."""
    script = command("journal", extra=("-n", "3"))
    said, unit = on_journal_node(tmp_path / "1", "journal", script,
                                 b"Failed to parse timestamp: x\n", rc=1, state="active")
    assert said.sections["demo.service"]["output"] == [b"Failed to parse timestamp: x"]
    assert (unit.outcome, unit.rc) == ("error", 1)
    _, unit = on_journal_node(tmp_path / "2", "journal", script, entry("hello") + b"\n",
                              state="active")
    assert (unit.outcome, unit.rc, unit.message) == ("ok", 0, "hello")
    assert "y demo.service journalctl" in script and \
        "head -c %d" % svcctl.journal_read_bytes(1) in script
    assert "head -c %d" % svcctl.journal_read_bytes(2) in command(
        "journal", ["a.service", "b.service"])
    assert svcctl.journal_read_bytes(100) * 100 <= svcctl.JOURNAL_READ_BYTES < \
        svcctl.OUTPUT_CAP


@pytest.mark.parametrize("action", ["restart", "journal"])
def test_journalctl_missing_is_said_for_that_node(tmp_path, action):
    """No journalctl on the node (dash says `/bin/sh: 1: journalctl: not
    found`, exit 127): the failed unit stays failed and says so; svcctl journal
    answers no for that node, never an error."""
    script = command(action, extra=("-n", "3")) if action == "journal" else command(action)
    framed, unit = on_journal_node(tmp_path, action, script, b"", rc=None)
    said = framed.journals["demo.service"] if action == "restart" else \
        framed.sections["demo.service"]["output"]
    assert said == [b"./bin/sh: 1: journalctl: not found"[action == "journal":]]
    if action == "restart":
        assert (unit.outcome, unit.journal) == ("failed",
                                                "(journal not read: journalctl not found)")
    else:
        assert (unit.outcome, unit.answer, unit.rc) == (
            "negative", "journal not read: journalctl not found", 127)
