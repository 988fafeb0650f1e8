"""Integration: progress line, syslog, output bounds, sshd dying mid-run."""
import io
import os
import pty
import select
import socket
import subprocess
import time

import svcctl
from conftest import svcctl_argv


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


def test_syslog_gets_one_summary_line(cluster, monkeypatch, tmp_path):
    path = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    monkeypatch.setattr(svcctl, "SYSLOG_ADDRESS", path)
    monkeypatch.setenv("CLUSTERSHELL_CFGDIR", cluster["CLUSTERSHELL_CFGDIR"])
    out, err = io.StringIO(), io.StringIO()
    code = svcctl.main(["is-active", "demo", "node[1-2],down1", "--syslog"], out, err)
    assert code == 4, err.getvalue()
    server.settimeout(5)
    message = server.recv(9000).decode()
    server.close()
    assert message.startswith("<11>svcctl[%d]: is-active demo.service on 3 nodes in " % os.getpid())
    assert "unreachable down1 (1); exit 4; run " in message
    # and when syslog is not there: an error, the results still printed
    monkeypatch.setattr(svcctl, "SYSLOG_ADDRESS", str(tmp_path / "none.sock"))
    out, err = io.StringIO(), io.StringIO()
    code = svcctl.main(["is-active", "demo", "node1", "--syslog"], out, err)
    assert code in (1, 3) and "node1" in out.getvalue()
    assert err.getvalue().startswith("svcctl: cannot write %s/none.sock: " % tmp_path)


def test_sshd_session_killed_mid_run(svcctl, cluster, on_nodes):
    on_nodes("node[1-4]", "systemctl stop demo-slow")
    proc = subprocess.Popen(svcctl_argv() + ["start", "demo-slow", "node[1-4]", "-u", "40"],
                            env=cluster, stdout=subprocess.PIPE, text=True)
    time.sleep(3)
    # the oldest root session on node2 is svcctl's: kill it
    subprocess.run(["clush", "-w", "node2", "pkill -9 -o -f 'sshd: root@notty'"],
                   env=cluster, capture_output=True)
    out, _ = proc.communicate(timeout=60)
    on_nodes("node[1-4]", "systemctl stop demo-slow")
    assert proc.returncode == 4, out
    assert "---------------\nnode2\n---------------\n" \
           "unreachable: connection lost: Connection closed by remote host\n" in out
    assert "changed (3): node[1,3-4]\n" in out
