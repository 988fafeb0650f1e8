"""The remote command: one POSIX sh line, quoted arguments, framed output."""
import shlex
import subprocess

import svcctl
from framing import MARKER


def command(action, units=("demo.service",), **kw):
    return svcctl.build_remote_command(svcctl.ACTIONS[action], list(units), MARKER, **kw)


def test_units_are_quoted_after_double_dash():
    cmd = command("start", ["demo.service", "getty@tty1.service"])
    assert "a demo.service systemctl start -- demo.service;" in cmd
    assert "a getty@tty1.service systemctl start -- getty@tty1.service;" in cmd
    assert cmd.endswith('echo "$m end"')
    assert "\n" not in cmd


def test_backslash_names_stay_one_quoted_word():
    cmd = command("status", ["a\\x2db.service"])
    assert "-- 'a\\x2db.service'" in cmd


def test_sudo_wraps_the_action_not_the_reads():
    cmd = command("restart", sudo=True)
    assert "sudo -n systemctl restart -- demo.service" in cmd
    assert "sudo -n systemctl show" not in cmd
    # queries need no privileges
    assert "sudo" not in command("is-active", sudo=True)


def test_now_and_status_flags():
    assert "systemctl enable --now -- demo.service" in command("enable", now=True)
    assert "systemctl status --no-pager --lines=0 -- demo.service" in command("status")
    assert "--lines=0" not in command("status", verbose=True)


def test_node_actions_take_no_unit():
    cmd = command("daemon-reload", units=())
    assert "systemctl daemon-reload </dev/null" in cmd
    assert "--" not in cmd.split("daemon-reload", 1)[1]
    assert "systemctl is-system-running" in command("ping", units=())


def test_script_runs_in_posix_sh_and_frames_output(tmp_path):
    """Run the real script with a fake systemctl: the framing parses back."""
    fake = tmp_path / "systemctl"
    fake.write_text('#!/bin/sh\ncase "$1" in show) echo LoadState=loaded; '
                    'echo ActiveState=active; echo SubState=running; '
                    'echo UnitFileState=enabled;; *) echo "did $*"; exit 3;; esac\n')
    fake.chmod(0o755)
    proc = subprocess.run(["sh", "-c", command("start", ["a.service", "b.service"])],
                          capture_output=True, env={"PATH": "%s:/usr/bin:/bin" % tmp_path})
    sections, complete = svcctl.parse_sections(proc.stdout.splitlines(), MARKER)
    assert complete
    assert [s["unit"] for s in sections] == ["a.service", "b.service"]
    assert sections[0]["rc"] == 3
    assert sections[0]["action"] == [b"did start -- a.service"]
    assert b"ActiveState=active" in sections[1]["after"]


def test_marker_is_random_per_run_and_needs_no_quoting():
    first, second = svcctl.new_marker(), svcctl.new_marker()
    assert first != second
    assert shlex.quote(first) == first
