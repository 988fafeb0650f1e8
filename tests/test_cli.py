"""The command line, in-process: usage errors run nothing, exit codes, dry run."""
import io
import os
import tempfile
import time

import pytest

import svcctl


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    try:
        code = svcctl.main(list(argv), out, err)
    except SystemExit as exc:      # argparse's own usage errors and --help
        code = exc.code
    return code, out.getvalue(), err.getvalue(), time.monotonic() - start


@pytest.mark.parametrize("argv,message", [
    (["start", "demo;reboot", "node1"], "svcctl: invalid unit name: demo;reboot\n"),
    (["start", "demo", "node[1-"], None),
    (["start", "demo", "--", "-oProxyCommand=x"], "svcctl: invalid NodeSet: "
                                                   "-oProxyCommand=x\n"),
    (["start", "demo", "node1", "-f", "0"], "svcctl: fanout must be from 1 to 100000, not 0\n"),
    (["start", "demo", "node1", "-u", "-3"], None),
    (["start", "demo", "node1", "--now"], "svcctl: --now goes with enable, disable, mask\n"),
    (["start", "demo", "node1", "--max-fail", "1"], "svcctl: --max-fail goes with --batch\n"),
    (["start", "demo", "node1", "--batch", "x"], None),
    (["start", "demo", "node1", "-l", "-oProxyCommand=x"], None),
    (["frobnicate", "demo", "node1"], None),
    (["start", "dеmo", "node1"], None),
])
def test_usage_errors_exit_2_with_one_line(argv, message):
    # hang1 would take seconds to time out: a fast answer proves no contact.
    code, out, err, elapsed = run(*argv + ["hang1"])
    check_usage_error(code, out, err, elapsed, message)


@pytest.mark.parametrize("argv,message", [
    (["start", "demo"], "svcctl: start needs a NodeSet\n"),
    (["start"], "svcctl: start needs UNIT[,UNIT...] and a NodeSet\n"),
    (["start", "demo", "node1", "-x", "node1"], "svcctl: no node to run on: node1\n"),
    (["start", "demo", "@nosuchsource:x"], None),
])
def test_missing_targets(argv, message):
    check_usage_error(*run(*argv), message)


def check_usage_error(code, out, err, elapsed, message):
    assert code == 2
    assert out == ""
    assert err.startswith("svcctl: ")
    if message:
        assert err == message
    else:
        assert err.count("\n") == 1
    assert elapsed < 2


def test_dry_run_contacts_nothing():
    code, out, err, elapsed = run("--dry-run", "stop", "demo,web", "hang1", "down1",
                                  "-l", "ops", "--sudo")
    assert code == 0 and err == ""
    assert elapsed < 2
    assert out.startswith("stop: dry run, nothing contacted\nnodes: down1,hang1 (2)\n")
    assert "user=ops" in out
    assert "a demo.service sudo -n systemctl stop -- demo.service; " in out
    assert "a web.service sudo -n systemctl stop -- web.service; " in out


def test_version_and_help(capsys):
    assert run("--version")[0] == 0
    assert capsys.readouterr().out == "svcctl %s\n" % svcctl.__version__
    assert run("--help")[0] == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "exit codes:" in out


def test_options_after_positionals():
    code, out, _, _ = run("start", "demo", "node[1-3]", "--dry-run", "-x", "node2")
    assert code == 0 and "nodes: node[1,3] (2)" in out


def test_clush_conf_errors_are_usage_errors(tmp_path, monkeypatch):
    (tmp_path / "clush.conf").write_text("[Main]\nfanout: lots\n")
    monkeypatch.setenv("CLUSTERSHELL_CFGDIR", str(tmp_path))
    code, out, err, _ = run("--dry-run", "start", "demo", "node1")
    assert code == 2 and err.startswith("svcctl: clush.conf: ")


def test_clush_conf_is_honoured_command_line_wins(tmp_path, monkeypatch):
    (tmp_path / "clush.conf").write_text(
        "[Main]\nfanout: 3\nssh_user: ops\nconnect_timeout: 4\n")
    monkeypatch.setenv("CLUSTERSHELL_CFGDIR", str(tmp_path))
    code, out, _, _ = run("--dry-run", "start", "demo", "node1", "-f", "5")
    assert code == 0
    assert "user=ops fanout=5 connect_timeout=4 command_timeout=300" in out


def test_persist_adds_control_options(monkeypatch):
    tmp_path = tempfile.mkdtemp(dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", tmp_path)
    code, out, _, _ = run("--dry-run", "--persist", "start", "demo", "node1")
    assert code == 0
    assert "-oControlMaster=auto -oControlPath=%s/svcctl/%%C -oControlPersist=600" \
        % tmp_path in out
    assert os.listdir(tmp_path) == []           # a dry run creates nothing


def test_persist_skips_a_socket_path_too_long(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/tmp/" + "x" * 80)
    code, out, err, _ = run("--dry-run", "--persist", "start", "demo", "node1")
    assert code == 0 and "-oControlPath=/tmp/svcctl-%d/%%C" % os.getuid() in out
