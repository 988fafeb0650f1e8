"""Integration: progress line, syslog, output bounds, sshd dying mid-run."""
import io
import os
import re
import pty
import select
import socket
import subprocess

import pytest

import svcctl as svcctl_module
from conftest import svcctl_argv, wait_on_nodes

pytestmark = pytest.mark.usefixtures("restore_units")


def test_progress_line_on_a_terminal_only(cluster, on_nodes):
    on_nodes("node[1-8]", "systemctl stop demo-slow")
    master, slave = pty.openpty()
    proc = subprocess.Popen(svcctl_argv() + ["start", "demo-slow", "node[1-8]", "-u", "3"],
                            env=cluster, stdin=slave, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    terminal = b""
    while True:
        ready, _, _ = select.select([master], [], [], 10)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    out = proc.stdout.read().decode()
    proc.wait(timeout=30)
    os.close(master)
    on_nodes("node[1-8]", "systemctl stop demo-slow")
    assert b"svcctl: 0/8 nodes done, 0:00 elapsed" in terminal
    assert terminal.endswith(b"\r\x1b[K")            # erased at the end
    assert "nodes done" not in out and "timeout (8): node[1-8]" in out


def test_no_progress_line_when_not_a_terminal(svcctl, on_nodes):
    on_nodes("node[1-2]", "systemctl stop demo-slow")
    run = svcctl("start", "demo-slow", "node[1-2]", "-u", "2")
    on_nodes("node[1-2]", "systemctl stop demo-slow")
    assert run.err == "" and "nodes done" not in run.out


def syslog_run(cluster, tmp_path, argv):
    """Run svcctl with a socket of ours as /dev/log (the standard library's
    syslog writes there): bound at /dev/log when nothing is, else over it
    in a mount namespace of its own. Returns (process, messages)."""
    sock_path = "/dev/log" if not os.path.exists("/dev/log") else str(tmp_path / "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    try:
        command = svcctl_argv() + argv
        if sock_path != "/dev/log":
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       'mount --bind "$0" /dev/log && exec "$@"', sock_path] + command
        proc = subprocess.run(command, env=cluster, capture_output=True, text=True,
                              timeout=60)
        server.settimeout(0.5)
        messages = []
        try:
            while True:
                messages.append(server.recv(9000).decode())
        except socket.timeout:
            pass
        return proc, messages
    finally:
        server.close()
        os.unlink(sock_path)


def test_syslog_gets_one_summary_line(cluster, tmp_path, on_nodes):
    on_nodes("node[1-2]", "systemctl start demo")
    try:
        proc, messages = syslog_run(cluster, tmp_path, ["is-active", "demo",
                                                        "node[1-2],down1", "--syslog"])
    finally:
        on_nodes("node[1-2]", "systemctl stop demo")
    assert proc.returncode == 4, proc.stderr
    assert len(messages) == 1
    message = messages[0]
    assert re.match(r"<11>\w{3} [ \d]\d \d\d:\d\d:\d\d svcctl\[\d+\]: run [0-9a-f]{12} "
                    r"by root: is-active demo.service on 3 nodes: ", message), message
    assert message.endswith("exit 4; unreachable 1, ok 2; unreachable: down1; ok: node[1-2]")


def test_syslog_missing_is_an_error_but_results_are_printed(cluster, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("CLUSTERSHELL_CFGDIR", cluster["CLUSTERSHELL_CFGDIR"])
    monkeypatch.setattr(svcctl_module, "SYSLOG_ADDRESS", str(tmp_path / "none"))
    out, err = io.StringIO(), io.StringIO()
    code = svcctl_module.main(["is-active", "demo", "down1", "--syslog"], out, err)
    assert code == 4 and "down1" in out.getvalue()
    assert err.getvalue() == "svcctl: cannot write %s/none: no syslog socket there\n" \
        % tmp_path


def test_sshd_session_killed_mid_run(svcctl, cluster, on_nodes):
    on_nodes("node[1-4]", "systemctl stop demo-slow")
    proc = subprocess.Popen(svcctl_argv() + ["start", "demo-slow", "node[1-4]", "-u", "40"],
                            env=cluster, stdout=subprocess.PIPE, text=True)
    wait_on_nodes(cluster, "node[1-4]", "systemctl is-active demo-slow",
                  lambda states: states == ["activating"] * 4)
    # the oldest root session on node2 is svcctl's: kill it
    subprocess.run(["clush", "-w", "node2", "pkill -9 -o -f 'sshd: root@notty'"],
                   env=cluster, capture_output=True)
    out, _ = proc.communicate(timeout=60)
    on_nodes("node[1-4]", "systemctl stop demo-slow")
    assert proc.returncode == 4, out
    assert "---------------\nnode2\n---------------\n" \
           "demo-slow.service: unreachable\n  connection lost: Connection closed by " \
           "remote host while its start was running (it was " in out
    assert "changed (3): node[1,3-4]\n" in out
