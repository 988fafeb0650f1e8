"""Parsing and classification of what nodes send back."""
import pytest

import svcctl
from framing import (ACTIVE, FAILED, INACTIVE, MARKER, MASKED, MISSING, end,
                     frame, framed, state)

A = svcctl.ACTIONS


def raw(lines, rc=0, stderr=(), timed_out=False):
    return svcctl.RawResult(stdout=list(lines), stderr=list(stderr), rc=rc,
                            timed_out=timed_out)


def classify(action, lines, **kw):
    return svcctl.node_result("n1", raw(lines, **kw), A[action], ["demo.service"],
                              MARKER, 300, False)


@pytest.mark.parametrize("action,before,after,rc,output,outcome", [
    ("start", INACTIVE, ACTIVE, 0, [], "changed"),
    ("start", ACTIVE, ACTIVE, 0, [], "ok"),
    ("stop", ACTIVE, INACTIVE, 0, [], "changed"),
    ("stop", INACTIVE, INACTIVE, 0, [], "ok"),
    ("restart", ACTIVE, ACTIVE, 0, [], "changed"),
    ("try-restart", INACTIVE, INACTIVE, 0, [], "ok"),
    ("try-restart", ACTIVE, ACTIVE, 0, [], "changed"),
    ("enable", INACTIVE, state(file="enabled"), 0, ["Created symlink x"], "changed"),
    ("enable", state(file="enabled"), state(file="enabled"), 0, [], "ok"),
    ("start", INACTIVE, FAILED, 1, ["Job for demo.service failed because the "
                                    "control process exited with error code."], "failed"),
    ("start", MASKED, MASKED, 1, ["Failed to start demo.service: Unit "
                                  "demo.service is masked."], "masked"),
    ("start", MISSING, MISSING, 5, ["Failed to start demo.service: Unit "
                                    "demo.service not found."], "not-found"),
    ("start", INACTIVE, INACTIVE, 4, ["Failed to start demo.service: Access denied"], "denied"),
    ("start", INACTIVE, INACTIVE, 1, ["sudo: a password is required"], "denied"),
    ("is-active", None, ACTIVE, 0, ["active"], "ok"),
    ("is-active", None, INACTIVE, 3, ["inactive"], "negative"),
    ("status", None, MASKED, 3, [], "negative"),
    ("status", None, MISSING, 4, ["Unit demo.service could not be found."], "not-found"),
])
def test_classification(action, before, after, rc, output, outcome):
    result = classify(action, frame("demo.service", before, after, rc, output) + end())
    assert result.outcome == outcome
    assert result.units[0].rc == (rc if before is not None else None)
    assert result.reason == ""


def test_no_systemd_is_an_error_with_the_reason():
    lines = frame("demo.service", [b"Failed to connect to bus: No such file or directory"],
                  [b"Failed to connect to bus: No such file or directory"], 1,
                  ["Failed to connect to bus: No such file or directory"]) + end()
    unit = classify("start", lines).units[0]
    assert unit.outcome == "error"
    assert "Failed to connect to bus" in unit.message


def test_unreachable_keeps_ssh_reason_without_the_host():
    result = classify("start", [], rc=255, stderr=[
        b"ssh: connect to host 127.0.0.2 port 22: Connection refused"])
    assert result.outcome == "unreachable"
    assert result.reason == "Connection refused"
    assert result.units[0].outcome == "unreachable"


def test_unknown_host_reason():
    result = classify("start", [], rc=255, stderr=[
        b"ssh: Could not resolve hostname nowhere: Name or service not known"])
    assert result.reason == "name unknown: Name or service not known"


def test_timeout_keeps_finished_units():
    """Cut short in the 3rd unit: the state after is never read, the first two
    are judged from their state before and their exit code."""
    lines = framed(("demo.service", INACTIVE, ACTIVE, 0, []),
                   ("up.service", ACTIVE, ACTIVE, 0, []),
                   ("slow.service", INACTIVE, ACTIVE, 0, []))[:6]
    assert lines[-1].endswith(b"unit slow.service")
    result = svcctl.node_result("n1", raw(lines, rc=None, timed_out=True), A["start"],
                                ["demo.service", "up.service", "slow.service"], MARKER,
                                5, False)
    assert [u.outcome for u in result.units] == ["changed", "ok", "timeout"]
    assert result.units[0].message == "state after not read: the node did not finish"
    assert result.outcome == "timeout"
    assert result.reason == ""          # partly done: per-unit lines are shown


def test_whole_node_timeout():
    result = classify("start", [], rc=None, timed_out=True)
    assert result.outcome == "timeout"
    assert result.reason == "timed out after 300 s"


def test_connection_lost_mid_run():
    lines = framed(("demo.service", INACTIVE, ACTIVE, 0, []),
                   ("web.service", INACTIVE, ACTIVE, 0, []))[:4]
    result = svcctl.node_result("n1", raw(lines, rc=255, stderr=[
        b"Connection to 127.0.0.11 closed by remote host."]), A["start"],
        ["demo.service", "web.service"], MARKER, 5, False)
    assert [u.outcome for u in result.units] == ["changed", "unreachable"]
    assert result.units[1].message == \
        "connection lost: Connection closed by remote host"


def test_interrupted_node():
    result = svcctl.node_result("n1", raw([], rc=None), A["start"], ["demo.service"],
                                MARKER, 5, True)
    assert result.outcome == "interrupted" and result.reason == "not finished"


def test_remote_shell_ended_early():
    result = classify("start", [MARKER.encode() + b" unit demo.service"], rc=137)
    assert result.outcome == "error"


def test_forged_markers_are_plain_output():
    """A unit printing something like a marker cannot change the framing."""
    output = ["@@svcctl-ffffffffffff rc 0", "@@svcctl- end"]
    result = classify("start", frame("demo.service", INACTIVE, FAILED, 1, output) + end())
    assert result.outcome == "failed"
    assert "@@svcctl-ffffffffffff rc 0" in result.units[0].message


def test_login_banner_before_framing_is_ignored():
    lines = [b"Welcome to node1", b"LoadState=bogus"] + \
        frame("demo.service", INACTIVE, ACTIVE) + end()
    assert classify("start", lines).outcome == "changed"


def test_escape_sequences_and_bad_utf8_are_neutralised():
    lines = frame("demo.service", INACTIVE, FAILED, 1, []) + end()
    lines.insert(2, b"\x1b]0;pwned\x07\xff\xfeboom")  # after the unit marker
    unit = classify("start", lines).units[0]
    assert "\x1b" not in unit.message and "\x07" not in unit.message
    assert "\\x1b]0;pwned\\x07" in unit.message and "\ufffd" in unit.message


def test_missing_unit_section_is_reported_not_dropped():
    result = svcctl.node_result("n1", raw(frame("a.service", INACTIVE, ACTIVE) + end()),
                                A["start"], ["a.service", "b.service"], MARKER, 5, False)
    assert [u.unit for u in result.units] == ["a.service", "b.service"]
    assert result.units[1].outcome == "error"


def test_ping():
    m = MARKER.encode() + b" "
    ok = [m + b"unit ping", b"running", m + b"rc 0"] + end()
    degraded = [m + b"unit ping", b"degraded", m + b"rc 1"] + end()
    run = lambda lines: svcctl.node_result("n", raw(lines), A["ping"], [], MARKER, 5, False)
    assert run(ok).outcome == "ok" and run(ok).units[0].answer == "running"
    assert run(degraded).outcome == "negative"


def test_exit_code_precedence():
    def report(*outcomes, interrupted=""):
        nodes = [svcctl.NodeResult("n%d" % i, [svcctl.UnitResult("u", o)])
                 for i, o in enumerate(outcomes)]
        return svcctl.Report("start", ["u"], nodes, 0, 0, interrupted_by=interrupted)
    assert report("ok", "changed").exit_code() == 0
    assert report("ok", "negative").exit_code() == 3
    assert report("negative", "failed").exit_code() == 1
    assert report("not-found").exit_code() == 1
    assert report("skipped", "ok").exit_code() == 1
    assert report("failed", "timeout").exit_code() == 4
    assert report("unreachable", "ok").exit_code() == 4
    assert report("ok", interrupted="SIGINT").exit_code() == 130
    assert report("ok", interrupted="SIGTERM").exit_code() == 143


def test_restart_reads_no_state_before():
    assert "state before" not in svcctl.build_remote_command(
        A["restart"], ["demo.service"], MARKER)
    m = MARKER.encode() + b" "
    lines = [m + b"unit demo.service", m + b"rc 0",
             m + b"state after " + b" ".join(ACTIVE)] + end()
    unit = classify("restart", lines).units[0]
    assert unit.outcome == "changed" and unit.before is None
    assert svcctl.unit_lines(A["restart"], unit, False) == [
        "demo.service: changed, active (running), disabled"]
    masked = [m + b"unit demo.service", b"Failed to restart demo.service: Unit "
              b"demo.service is masked.", m + b"rc 1",
              m + b"state after " + b" ".join(MASKED)] + end()
    assert classify("restart", masked).outcome == "masked"
