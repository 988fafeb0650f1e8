"""Integration: long runs show where they are, on a real terminal (tmux) and
through a pipe."""
import shutil
import subprocess
import time

import pytest

from conftest import IN_CI, svcctl_argv

TMUX = shutil.which("tmux")


@pytest.fixture
def terminal(cluster):
    """terminal(argv) starts svcctl in a 120x30 tmux pane; .screen() reads it."""
    if not TMUX:
        if IN_CI:
            pytest.fail("tmux is not installed")
        pytest.skip("tmux is not installed")
    name = "svcctl-test"
    subprocess.run([TMUX, "kill-session", "-t", name], capture_output=True)

    class Pane:
        def start(self, argv):
            command = " ".join("'%s'" % a for a in svcctl_argv() + argv)
            subprocess.run([TMUX, "new-session", "-d", "-s", name, "-x", "120", "-y", "30",
                            "env CLUSTERSHELL_CFGDIR=%s NO_COLOR=1 %s; echo EXIT=$?; "
                            "sleep 120" % (cluster["CLUSTERSHELL_CFGDIR"], command)],
                           check=True)

        def screen(self):
            return subprocess.run([TMUX, "capture-pane", "-p", "-t", name],
                                  capture_output=True, text=True).stdout

        def wait_for(self, text, timeout=40):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                screen = self.screen()
                if text in screen:
                    return screen
                time.sleep(0.2)
            raise AssertionError("%r never shown:\n%s" % (text, self.screen()))

        def keys(self, *keys):
            subprocess.run([TMUX, "send-keys", "-t", name] + list(keys), check=True)

    yield Pane()
    subprocess.run([TMUX, "kill-session", "-t", name], capture_output=True)


@pytest.fixture
def reloadable(on_nodes):
    on_nodes("@all", "systemctl start demo-reload")
    yield
    on_nodes("@all", "systemctl stop demo-reload; systemctl reset-failed")


def test_a_rolling_restart_shows_batches_and_the_countdown(terminal, reloadable):
    terminal.start(["restart", "demo-reload", "@all,down1", "--batch", "3",
                    "--batch-wait", "5"])
    pause = terminal.wait_for("starts in")
    lines = pause.splitlines()
    assert lines[0] == "svcctl: batch 1/3 down1,node[1-2]: changed 2, unreachable 1 " \
                       "(problems: down1)"
    assert lines[1].startswith("svcctl: 3/9 nodes done, unreachable 1, 0:0")
    assert ", batch 2/3 starts in 0:0" in lines[1]
    final = terminal.wait_for("EXIT=")
    assert "svcctl: batch 2/3 node[3-5]: changed 3\n" in final
    assert "svcctl: batch 3/3 node[6-8]: changed 3\n" in final
    assert "changed (8): node[1-8]\nunreachable (1): down1\nEXIT=4" in final
    assert "nodes done" not in final and "starts in" not in final


def test_ctrl_c_in_the_pause_clears_the_status_line(terminal, reloadable):
    terminal.start(["restart", "demo-reload", "@all", "--batch", "4",
                    "--batch-wait", "30"])
    terminal.wait_for("starts in")
    terminal.keys("C-c")
    final = terminal.wait_for("EXIT=")
    assert "changed (4): node[1-4]\nskipped (4): node[5-8]\nEXIT=130" in final
    assert "nodes done" not in final and "starts in" not in final


def test_through_a_pipe_no_escape_sequences(cluster, reloadable):
    quiet = subprocess.run(svcctl_argv() + ["restart", "demo-reload", "node[1-4]",
                                            "--batch", "2", "--batch-wait", "1"],
                           env=cluster, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == ""
    verbose = subprocess.run(svcctl_argv() + ["restart", "demo-reload", "node[1-4]",
                                              "--batch", "2", "--batch-wait", "1", "-v"],
                             env=cluster, capture_output=True, text=True, timeout=60)
    assert verbose.returncode == 0
    assert verbose.stderr == "svcctl: batch 1/2 node[1-2]: changed 2\n" \
                             "svcctl: batch 2/2 node[3-4]: changed 2\n"
    assert "\x1b" not in verbose.stderr + verbose.stdout
