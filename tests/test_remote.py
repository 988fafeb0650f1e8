"""The remote command: one POSIX sh line, quoted arguments, framed output."""
import shlex
import shutil
import subprocess

import pytest

import svcctl
from framing import MARKER


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
    assert "$(s 'a\\x2db.service')" in cmd


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
    assert cmd.endswith("k state after $(s a.service b.service); k end")
    assert "systemctl is-active" not in cmd and "state before" not in cmd
    assert "systemctl status" not in command("status")
    assert "a demo.service systemctl status --no-pager --full -- demo.service; s0=$r; " in \
        command("status", verbose=True)


def test_change_reads_all_states_before_and_after():
    cmd = command("stop", ["a.service", "b.service"])
    assert cmd.count("$(s a.service b.service)") == 2
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
    assert "w demo.service; k state after" in command("start", settle=2)
    assert "-lt 4 ]" in command("start", settle=2)          # 4 polls of 0.5 s
    assert "w()" not in command("stop", settle=2)
    assert "w()" not in command("start")
    assert "w demo.service" in command("try-restart", settle=1)


@pytest.mark.parametrize("action,kw,grace", [
    ("start", {}, True), ("restart", {}, True), ("reload-or-restart", {}, True),
    ("try-restart", {}, True), ("enable", {"now": True}, True), ("enable", {}, False),
    ("stop", {}, False), ("disable", {"now": True}, False), ("status", {}, False),
    ("start", {"settle": 1}, False),
])
def test_started_units_are_read_a_moment_later(action, kw, grace):
    """Under load a unit that dies at once may not be dead yet when systemctl
    returns: the state after is read START_GRACE later (--settle: watched)."""
    script = command(action, **kw)
    assert ("sleep 0.25; k state after" in script) is grace
    assert script.count("sleep 0.25") == grace


def test_apply_reads_a_started_unit_a_moment_later_or_watches_it():
    declared = svcctl.Declared("demo", "running")
    steps = [svcctl.Step("demo.service", declared=declared)]
    apply = svcctl.ACTIONS["apply"]
    plain = svcctl.remote_script(svcctl.Protocol(apply, MARKER), steps)
    assert "c start; sleep 0.25; fi" in plain
    watched = svcctl.remote_script(svcctl.Protocol(apply, MARKER, settle=3), steps)
    assert 'c start; w "$u"; fi' in watched and "-lt 6 ]" in watched


def test_marker_is_random_per_run_and_needs_no_quoting():
    first, second = svcctl.new_marker(), svcctl.new_marker()
    assert first != second
    assert shlex.quote(first) == first
