"""Parsing and classification of what nodes send back."""
import dataclasses
import json
import pytest
from hypothesis import given, settings, strategies as st

import svcctl
from framing import (ACTIVE, FAILED, INACTIVE, MARKER, MASKED, MISSING, end,
                     frame, framed, journal, state)

A = svcctl.ACTIONS


def raw(lines, rc=0, stderr=(), timed_out=False):
    return svcctl.RawResult(stdout=list(lines), stderr=list(stderr), rc=rc,
                            timed_out=timed_out)


def read(action, lines, units=("demo.service",), timeout=300, interrupted=False,
         **kw):
    """One node's reply, read as svcctl reads it."""
    protocol = svcctl.Protocol(A[action], MARKER, timeout=timeout)
    return svcctl.read_reply(protocol, "n1", raw(lines, **kw),
                             [svcctl.Step(u) for u in units], interrupted)


def classify(action, lines, **kw):
    return read(action, lines, **kw)


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


def test_timeout_keeps_what_was_known_of_finished_units():
    """Cut short in the 3rd unit: the state after is never read, so no unit
    is proven started; each says what was known before the node timed out."""
    lines = framed(("demo.service", INACTIVE, ACTIVE, 0, []),
                   ("up.service", ACTIVE, ACTIVE, 0, []),
                   ("slow.service", INACTIVE, ACTIVE, 0, []))[:6]
    assert lines[-1].endswith(b"unit slow.service")
    result = read("start", lines, rc=None, timed_out=True, timeout=5,
                  units=["demo.service", "up.service", "slow.service"])
    assert [u.outcome for u in result.units] == ["timeout", "timeout", "timeout"]
    assert result.units[0].message == (
        "timed out after 5 s; known before that: changed, exit code 0, "
        "was inactive (dead), disabled, state after not read")
    assert result.units[1].message.startswith(
        "timed out after 5 s; known before that: ok, exit code 0, was active (running)")
    assert result.units[2].message == "timed out after 5 s while its start was " \
        "running (it was inactive (dead), disabled)"
    assert result.units[2].before == svcctl.UnitState.from_properties(
        dict(word.decode().split("=", 1) for word in INACTIVE))
    assert result.outcome == "timeout"
    assert result.reason == ""          # partly done: per-unit lines are shown


def test_a_timeout_after_the_last_action_is_never_success():
    """Every action returned 0, then the node timed out (or lost its
    connection) before the state after: timeout / unreachable, exit 4."""
    units = ["demo.service", "up.service"]
    whole = framed(("demo.service", INACTIVE, ACTIVE, 0, []),
                   ("up.service", ACTIVE, ACTIVE, 0, []))
    cut = [line for line in whole if b" state after " not in line and
           not line.endswith(b" end")]
    timed = read("start", cut, rc=None, timed_out=True, timeout=3, units=units)
    assert [u.outcome for u in timed.units] == ["timeout", "timeout"]
    lost = read("start", cut, rc=255, units=units,
                stderr=[b"Connection to node1 closed by remote host."])
    assert [u.outcome for u in lost.units] == ["unreachable", "unreachable"]
    assert lost.units[0].message.startswith("connection lost: Connection closed by "
                                            "remote host; known before that: changed")
    assert read("start", whole + end(), units=units).outcome == "changed"


@pytest.mark.parametrize("action,known", [("start", "ok"), ("try-restart", "changed")])
def test_a_run_read_first_says_the_unit_was_up_when_cut_short(action, known):
    """start and try-restart read the units' runs first, not their states: a
    run means the unit was up, so a start that returned 0 then was cut short
    is known ok, a try-restart a change; said, and the connection lost after
    those runs is lost mid-run."""
    m = MARKER.encode() + b" "
    lines = [m + b"state runs " + b"1" * 32 + b" " + b"2" * 32, m + b"unit a.service",
             m + b"rc 0", m + b"unit b.service"]
    units = ["a.service", "b.service"]
    timed = read(action, lines, rc=None, timed_out=True, timeout=5, units=units)
    assert [unit.outcome for unit in timed.units] == ["timeout", "timeout"]
    assert timed.units[0].message == "timed out after 5 s; known before that: %s, " \
        "exit code 0, was up, state after not read" % known
    assert timed.units[1].message == "timed out after 5 s while its %s was running " \
        "(it was up)" % action
    lost = read(action, lines[:1], rc=255, units=units,
                stderr=[b"Connection to n1 closed by remote host."])
    assert lost.units[0].message == "connection lost: Connection closed by remote " \
        "host (it was up)"


def test_a_unit_that_failed_before_the_timeout_says_so():
    """Failed, then the node timed out: the timeout is never hidden (exit 4),
    the failure is kept as detail; a worse outcome keeps its own verdict."""
    lines = framed(("demo.service", INACTIVE, INACTIVE, 1, ["Job failed."]),
                   ("up.service", INACTIVE, ACTIVE, 0, []))[:4]
    result = read("start", lines, rc=None, timed_out=True, timeout=5,
                  units=["demo.service", "up.service"])
    assert [u.outcome for u in result.units] == ["timeout", "timeout"]
    assert result.units[0].message == (
        "timed out after 5 s; known before that: failed, exit code 1, was inactive "
        "(dead), disabled, state after not read\nJob failed.")
    unit = svcctl.UnitResult("demo.service", "unreachable", message="lost")
    assert svcctl._cut_short(unit, "timeout", "timed out after 5 s") is unit


def test_whole_node_timeout():
    result = classify("start", [], rc=None, timed_out=True)
    assert result.outcome == "timeout"
    assert result.reason == "timed out after 300 s"


def test_connection_lost_mid_run():
    lines = framed(("demo.service", INACTIVE, ACTIVE, 0, []),
                   ("web.service", INACTIVE, ACTIVE, 0, []))[:4]
    result = read("start", lines, rc=255, units=["demo.service", "web.service"], stderr=[
        b"Connection to 127.0.0.11 closed by remote host."])
    assert [u.outcome for u in result.units] == ["unreachable", "unreachable"]
    assert result.units[0].message.startswith(
        "connection lost: Connection closed by remote host; known before that: changed")
    assert result.units[1].message == "connection lost: Connection closed by remote " \
        "host while its start was running (it was inactive (dead), disabled)"


def test_interrupted_node():
    result = read("start", [], rc=None, interrupted=True)
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
    result = read("start", frame("a.service", INACTIVE, ACTIVE) + end(),
                  units=["a.service", "b.service"])
    assert [u.unit for u in result.units] == ["a.service", "b.service"]
    assert result.units[1].outcome == "error"


def test_ping():
    m = MARKER.encode() + b" "
    ok = [m + b"unit ping", b"running", m + b"rc 0"] + end()
    degraded = [m + b"unit ping", b"degraded", m + b"rc 1"] + end()
    run = lambda lines: read("ping", lines, units=())
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
    assert report("ok", interrupted="SIGHUP").exit_code() == 129


def test_restart_reads_no_state_before():
    assert "state before" not in svcctl.remote_script(
        svcctl.Protocol(A["restart"], MARKER), [svcctl.Step("demo.service")])
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


# --- honest results ----------------------------------------------------------

# systemctl show prints a service's own properties first, UnitFileState last
CRASHED = [b"Result=exit-code", b"ExecMainCode=1", b"ExecMainStatus=1"] + \
    state(active="failed", sub="failed")
LOOPING = [b"Result=exit-code", b"NRestarts=2"] + state(active="activating",
                                                        sub="auto-restart")
RESTARTED = [b"NRestarts=3"] + state(active="active", sub="running")


@pytest.mark.parametrize("action,after,outcome", [
    ("start", CRASHED, "failed"), ("start", LOOPING, "failed"),
    ("start", RESTARTED, "failed"), ("restart", CRASHED, "failed"),
    ("reload-or-restart", LOOPING, "failed"), ("try-restart", CRASHED, "failed"),
    ("stop", CRASHED, "ok"), ("start", ACTIVE, "changed"),
])
def test_a_unit_that_dies_once_started_is_failed(action, after, outcome):
    """systemctl start returns 0 when the job completes (at fork for
    Type=simple): the state read back tells whether the unit survived."""
    before = ACTIVE if action == "try-restart" else INACTIVE
    if action == "stop":
        before = CRASHED
    unit = classify(action, frame("demo.service", before, after) + end()).units[0]
    assert unit.outcome == outcome
    if outcome == "failed":
        assert unit.message.startswith("the unit failed once started: ")
        assert "result exit-code" in unit.message or "restarted by systemd" in unit.message


def test_the_reason_systemd_gives_is_shown():
    unit = classify("start", frame("demo.service", INACTIVE, CRASHED) + end()).units[0]
    assert svcctl.unit_lines(A["start"], unit, False) == [
        "demo.service: failed, now failed (failed), disabled",
        "  the unit failed once started: result exit-code, main process exited "
        "with status 1"]


def test_an_already_running_unit_with_old_restarts_is_ok():
    unit = classify("start", frame("demo.service", RESTARTED, RESTARTED) + end()).units[0]
    assert unit.outcome == "ok"


@pytest.mark.parametrize("line", [
    b"rc " + b"9" * 5000, b"rc -1", b"rc 1x", b"unit \xff\xfe", b"bogus", b"rc 2560",
])
def test_a_reply_that_does_not_parse_makes_that_node_an_error(line):
    lines = frame("demo.service", INACTIVE, ACTIVE) + end()
    lines.insert(1, MARKER.encode() + b" " + line)
    result = classify("start", lines)
    assert result.outcome == "error"
    assert result.reason.startswith("unreadable reply: ")
    assert [u.outcome for u in result.units] == ["error"]


def test_a_gateway_failure_code_is_unreachable():
    result = classify("start", [], rc=76, stderr=[b"gw1: Connection refused"])
    assert result.outcome == "unreachable"
    assert result.reason.startswith("no reply through the gateway")


def test_too_large_reply():
    raw_result = raw(frame("demo.service", INACTIVE, ACTIVE)[:2], rc=None)
    raw_result.too_large = "more than 10 bytes or 5 lines"
    protocol = svcctl.Protocol(A["start"], MARKER)
    result = svcctl.read_reply(protocol, "n1", raw_result, [svcctl.Step("demo.service")])
    assert result.outcome == "error"
    assert result.units[0].message == \
        "reply too large (more than 10 bytes or 5 lines): stopped reading it"


def pipeline(replies, tmp_path, action="start", units=("demo.service", "web.service")):
    """Every output of a run whose nodes replied `replies` (node -> lines)."""
    protocol = svcctl.Protocol(A[action], MARKER)
    steps = [svcctl.Step(unit) for unit in units]
    nodes = [svcctl.read_reply(protocol, node, raw(lines), steps)
             for node, lines in sorted(replies.items())]
    report = svcctl.Report(action, list(units), nodes, 0, 1.0, run_id="abcdef012345")
    text = svcctl.render_text(report)
    doc = svcctl.document(report)
    svcctl.json.dumps(doc)
    page = svcctl.render_html(report)
    log = tmp_path / "run.log"
    if log.exists():
        log.unlink()
    svcctl.append_log(str(log), svcctl.log_lines(report))
    again, skipped = svcctl.report_from_log(str(log))
    assert skipped == [] and svcctl.render_text(again) == text
    return doc, text, page


GOOD = framed(("demo.service", INACTIVE, ACTIVE, 0, []),
              ("web.service", ACTIVE, ACTIVE, 0, [])) + end()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=12),
       st.lists(st.sampled_from([b"unit ", b"rc ", b"state before ", b"state after ",
                                 b"end", b"unit demo.service", b"rc 0", b"\x00", b"9" * 50]),
                max_size=6))
def test_any_reply_beside_good_nodes(tmp_path_factory, noise, framing):
    """Whatever one node sends (bytes, forged framing with the right marker):
    nothing raises, and the good nodes are reported right in every output."""
    hostile = list(noise) + [MARKER.encode() + b" " + word for word in framing]
    hostile = hostile[::2] + GOOD[:3] + hostile[1::2]
    doc, text, page = pipeline({"good1": GOOD, "good2": GOOD, "bad": hostile},
                               tmp_path_factory.mktemp("p"))
    by_node = {n["node"]: n for n in doc["nodes"]}
    assert set(by_node) == {"good1", "good2", "bad"}
    for good in ("good1", "good2"):
        assert [u["outcome"] for u in by_node[good]["units"]] == ["changed", "ok"]
    assert "good[1-2] (2)" in text and page.count('<b class="o') == 3


# --- found in review: each one a test ----------------------------------------

def test_a_signal_is_never_swallowed_by_a_nodes_guard():
    """Ctrl-C landing while a reply is read must stop the run, not make that
    node `error: unreadable reply: SIGINT`."""
    assert issubclass(svcctl.Interrupted, BaseException)
    assert not issubclass(svcctl.Interrupted, Exception)


@pytest.mark.parametrize("action,before,after,now,message", [
    ("stop", ACTIVE, ACTIVE, False, "systemctl said done, but the unit is active (running)"),
    ("mask", INACTIVE, INACTIVE, False, "systemctl said done, but the unit is inactive"),
    ("disable", state(file="enabled-runtime"), state(file="enabled-runtime"), False,
     "systemctl said done, but the unit is inactive (dead), enabled-runtime"),
    ("disable", state(active="active", sub="running", file="enabled"), ACTIVE, True,
     "systemctl said done, but the unit is active (running)"),
])
def test_an_action_that_did_not_reach_its_goal_failed(action, before, after, now, message):
    """A socket-activated service back up right after `stop`, a unit still
    enabled at runtime after `disable`: not ok."""
    protocol = svcctl.Protocol(A[action], MARKER, now=now)
    raw_result = raw(frame("demo.service", before, after) + end())
    unit = svcctl.read_reply(protocol, "n1", raw_result, [svcctl.Step("demo.service")])
    assert unit.outcome == "failed" and unit.units[0].message.startswith(message)


def test_a_sudo_warning_is_not_a_refusal():
    lines = frame("demo.service", INACTIVE, FAILED, 1, [
        "sudo: unable to resolve host node7: Name or service not known",
        "Job for demo.service failed because the control process exited"]) + end()
    assert classify("start", lines).outcome == "failed"


def test_node_actions_tell_failures_from_no():
    m = MARKER.encode() + b" "
    missing = [m + b"unit ping", b"sh: 1: systemctl: not found", m + b"rc 127"] + end()
    assert read("ping", missing, units=()).outcome == "failed"
    refused = [m + b"unit daemon-reload", b"sudo: a password is required",
               m + b"rc 1"] + end()
    assert read("daemon-reload", refused, units=()).outcome == "denied"


def test_a_query_cut_short_is_not_judged_by_its_exit_code():
    """status -v timing out after one unit ran: that unit timed out too."""
    m = MARKER.encode() + b" "
    lines = [m + b"unit demo.service", b"demo.service - svcctl demo", m + b"rc 3",
             m + b"unit web.service"]
    protocol = svcctl.Protocol(A["status"], MARKER, verbose=True, timeout=5)
    result = svcctl.read_reply(protocol, "n1", raw(lines, rc=None, timed_out=True),
                               [svcctl.Step("demo.service"), svcctl.Step("web.service")])
    assert [u.outcome for u in result.units] == ["timeout", "timeout"]


def apply_reply(before, after, did):
    m = MARKER.encode() + b" "
    return [m + b"unit a.service before " + b" ".join(before), m + b"rc 0 did " + did,
            m + b"state after " + b" ".join(after)] + end()


@pytest.mark.parametrize("declared,before,after,did,outcome", [
    (svcctl.Declared("a", "running"), INACTIVE, ACTIVE, b"start,", "changed"),
    (svcctl.Declared("a", "running"), ACTIVE, ACTIVE, b"-", "ok"),
    (svcctl.Declared("a", "running", False), state(active="active", sub="running",
                                                   file="static"),
     state(active="active", sub="running", file="static"), b"disable,", "failed"),
    (svcctl.Declared("a", "stopped"), state(active="activating", sub="auto-restart"),
     INACTIVE, b"stop,", "changed"),
])
def test_apply_says_what_it_did_and_whether_it_worked(declared, before, after, did,
                                                      outcome):
    protocol = svcctl.Protocol(A["apply"], MARKER)
    result = svcctl.read_reply(protocol, "n1", raw(apply_reply(before, after, did)),
                               [svcctl.Step("a.service", declared=declared)])
    assert result.units[0].outcome == outcome
    if outcome == "failed":
        assert result.units[0].message.startswith("still not as declared")


def test_a_unit_stuck_restarting_is_not_stopped():
    declared = svcctl.Declared("a", "stopped")
    assert declared.drifted(svcctl.UnitState("loaded", "activating", "auto-restart", "x"))
    assert not declared.drifted(svcctl.UnitState("loaded", "failed", "failed", "x"))
    script = svcctl.remote_script(svcctl.Protocol(A["apply"], MARKER),
                                  [svcctl.Step("a.service", declared=declared)])
    assert '*" ActiveState=inactive "*|*" ActiveState=failed "*) off=1' in script
    assert 'if [ "$3$off" = stopped0 ]; then c stop; fi' in script


def test_settle_compares_restarts_with_its_own_start():
    script = svcctl.remote_script(svcctl.Protocol(A["start"], MARKER, settle=2),
                                  [svcctl.Step("demo.service")])
    assert 'n=$(v NRestarts "$@")' in script
    assert '[ "$(v NRestarts "$@")" = "$n" ] || return' in script


def test_printable_escapes_surrogates():
    assert svcctl.printable("bad \ud800") == "bad \\ud800"


@pytest.mark.parametrize("action,output,outcome", [
    ("enable", ["Created symlink /etc/systemd/system/multi-user.target.wants/demo.service"
                " \u2192 /usr/lib/systemd/system/demo.service."], "changed"),
    ("enable", [], "ok"),
    ("disable", ["Removed \"/etc/systemd/system/multi-user.target.wants/demo.service\"."],
     "changed"),
    ("mask", ["Created symlink /etc/systemd/system/demo.service \u2192 /dev/null."],
     "changed"),
])
def test_enablement_changes_are_told_by_systemctl(action, output, outcome):
    """enable, disable, mask, unmask read no state first (one systemctl
    process less): systemctl prints what it changed, and nothing otherwise."""
    protocol = svcctl.Protocol(A[action], MARKER)
    script = svcctl.remote_script(protocol, [svcctl.Step("demo.service")])
    assert "state before" not in script
    assert "state before" in svcctl.remote_script(
        svcctl.Protocol(A[action], MARKER, now=True), [svcctl.Step("demo.service")])
    m = MARKER.encode() + b" "
    after = state(file="enabled") if action == "enable" else \
        MASKED if action == "mask" else INACTIVE
    lines = [m + b"unit demo.service"] + [line.encode() for line in output] + [
        m + b"rc 0", m + b"state after " + b" ".join(after)] + end()
    unit = classify(action, lines).units[0]
    assert unit.outcome == outcome and unit.before is None


def shown(action, output, rc, after=ACTIVE, **protocol):
    """A query whose text is its answer (show, cat), one unit."""
    m = MARKER.encode() + b" "
    lines = [m + b"unit demo.service"] + output + [m + b"rc %d" % rc,
                                                   m + b"state after " + b" ".join(after)]
    proto = svcctl.Protocol(A[action], MARKER, **protocol)
    return svcctl.read_reply(proto, "n1", raw(lines + end()), [svcctl.Step("demo.service")])


@pytest.mark.parametrize("action", ["show", "cat"])
def test_show_and_cat_read_systemctls_exit_code(action):
    failed = shown(action, [b"Failed to get properties: Connection timed out"], 1)
    assert failed.outcome == "error"
    assert failed.units[0].message == "Failed to get properties: Connection timed out"
    assert shown(action, [b"Failed to get properties: Access denied"], 1).outcome == "denied"
    assert shown(action, [b"ActiveState=active"], 0).outcome == "ok"


def test_cat_diff_never_takes_a_failed_cat_as_a_version():
    good = shown("cat", [b"[Service]", b"ExecStart=/bin/true"], 0, diff=True)
    bad = shown("cat", [b"Failed to get properties: Connection timed out"], 1, diff=True)
    svcctl.judge_against_majority([good, bad])
    assert [good.outcome, bad.outcome] == ["ok", "error"]


def test_reset_failed_with_nothing_to_reset_is_ok():
    """systemd calls a unit not loaded an error; the goal (not failed) holds."""
    message = [b"Failed to reset failed state of unit demo-fail.service: "
               b"Unit demo-fail.service not loaded."]
    idle = classify("reset-failed", frame("demo-fail.service", INACTIVE, INACTIVE, 1,
                                          [m.decode() for m in message]) + end(),
                    units=["demo-fail.service"])
    assert idle.outcome == "ok"
    stuck = classify("reset-failed", frame("demo-fail.service", FAILED, FAILED, 1,
                                           [m.decode() for m in message]) + end(),
                     units=["demo-fail.service"])
    assert stuck.outcome == "failed"
    other = classify("reset-failed", frame("demo-fail.service", INACTIVE, INACTIVE, 1,
                                           ["Failed to reset: Access denied"]) + end(),
                     units=["demo-fail.service"])
    assert other.outcome == "denied"


@pytest.mark.parametrize("after,watched,outcome", [
    (state(active="active", sub="running") + [b"NRestarts=4"], "3", "failed"),
    (state(active="active", sub="running") + [b"NRestarts=3"], "3", "ok"),
    (state(active="active", sub="running") + [b"NRestarts=3"], None, "ok"),
    (state(active="activating", sub="auto-restart") + [b"NRestarts=3"], "3", "failed"),
])
def test_settle_judges_every_unit_it_watched(after, watched, outcome):
    """start found it running (nothing to do), then --settle watched it: a
    restart by systemd during the watch is a failure, even if it reads
    active again by the state after."""
    m = MARKER.encode() + b" "
    before = state(active="active", sub="running") + [b"NRestarts=3"]
    # systemctl show prints NRestarts before UnitFileState: the block ends there
    order = lambda s: [s[0], s[1], s[2], s[4], s[3]]
    lines = [m + b"state before " + b" ".join(order(before)), m + b"unit demo.service",
             m + b"rc 0"]
    if watched is not None:
        lines.append(m + b"state watch " + watched.encode())
    lines += [m + b"state after " + b" ".join(order(after))] + end()
    protocol = svcctl.Protocol(A["start"], MARKER, settle=3)
    result = svcctl.read_reply(protocol, "n1", raw(lines), [svcctl.Step("demo.service")])
    assert result.outcome == outcome, result.units[0].message
    if outcome == "failed":
        assert result.units[0].message.startswith("the unit failed once started")


def _whole_replies():
    """Real replies of a few shapes, as bytes on the wire."""
    m = MARKER.encode() + b" "
    start = framed(("demo.service", INACTIVE, ACTIVE, 0, ["Started."]),
                   ("web.service", ACTIVE, ACTIVE, 0, [])) + end()
    status = [m + b"unit demo.service", b"demo.service - svcctl demo", m + b"rc 3",
              m + b"state after " + b" ".join(INACTIVE)] + end()
    apply = [m + b"unit a.service before " + b" ".join(INACTIVE),
             m + b"rc 0 did start,", m + b"state after " + b" ".join(ACTIVE)] + end()
    reload = [m + b"unit daemon-reload", m + b"rc 0"] + end()
    return [("start", ["demo.service", "web.service"], start),
            ("status", ["demo.service"], status), ("apply", ["a.service"], apply),
            ("daemon-reload", [], reload)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_whole_replies()), st.floats(0, 1),
       st.sampled_from([("timeout", dict(rc=None, timed_out=True)),
                        ("unreachable", dict(rc=255, stderr=[b"Connection closed by "
                                                             b"remote host."])),
                        ("interrupted", dict(rc=None))]))
def test_a_reply_cut_anywhere_is_never_better_than_the_cut(reply, where, how):
    """Cut a real reply at any byte before its end marker: the node never
    reads better than timeout / unreachable / not finished."""
    action, units, lines = reply
    wire = b"\n".join(lines)
    cut = wire[:int(where * wire.rindex(b"\n"))]
    outcome, kw = how
    protocol = svcctl.Protocol(A[action], MARKER, verbose=action == "status", timeout=5)
    steps = [svcctl.Step(u, declared=svcctl.Declared(u.split(".")[0]) if action == "apply"
                         else None) for u in units]
    result = svcctl.read_reply(protocol, "n1", raw([line for line in cut.split(b"\n")
                                                    if line], **kw), steps,
                               interrupted=outcome == "interrupted")
    for unit in result.units:
        assert svcctl.SEVERITY[unit.outcome] >= svcctl.SEVERITY[outcome], (cut, unit)
    assert result.outcome == outcome or svcctl.SEVERITY[result.outcome] > \
        svcctl.SEVERITY[outcome]


def test_show_keeps_the_order_of_the_properties_asked(monkeypatch):
    """systemctl show -p SubState,ActiveState,LoadState prints them in its own
    order (LoadState first): shown as asked."""
    from framing import main, stub_nodes

    def shown(marker, command):
        return ["%s unit demo.service" % marker, "LoadState=loaded", "ActiveState=active",
                "SubState=running", "%s rc 0" % marker,
                "%s state after LoadState=loaded ActiveState=active SubState=running "
                "UnitFileState=disabled" % marker]
    stub_nodes(monkeypatch, shown)
    code, out, err = main("show", "demo", "n[1-2]", "-p", "SubState,ActiveState,LoadState")
    assert code == 0, err
    assert out.startswith("---------------\nn[1-2] (2)\n---------------\n"
                          "demo.service: SubState=running\ndemo.service: ActiveState=active\n"
                          "demo.service: LoadState=loaded\n== show demo.service on 2 nodes")


def with_journal(lines, outcome_state=FAILED, rc=0, action="restart"):
    m = MARKER.encode() + b" "
    reply = frame("demo.service", None if action == "status" else ACTIVE,
                  outcome_state, rc) + [m + b"journal demo.service inv2"] + journal(lines) \
        + end()
    return classify(action, reply)


def test_a_failed_units_journal_is_kept_and_made_to_fold():
    lines = [b"demo.service: Main process exited, code=exited, status=1/FAILURE",
             b"Killing process 4242 (sleep) with signal SIGKILL.", b"-- No entries --",
             b"\x1b[31mred\x1b[0m pid=77"]
    result = with_journal(lines)
    assert result.outcome == "failed"
    assert result.units[0].journal == (
        "demo.service: Main process exited, code=exited, status=1/FAILURE\n"
        "Killing process N (sleep) with signal SIGKILL.\n\\x1b[31mred\\x1b[0m pid=N")
    other = with_journal([line.replace(b"4242", b"99") for line in lines])
    assert other.units[0].journal == result.units[0].journal     # they fold


def test_a_journal_is_kept_only_for_a_failed_unit():
    ok = with_journal([b"started fine"], outcome_state=ACTIVE)
    assert ok.outcome == "changed" and ok.units[0].journal == ""
    status = with_journal([b"boom"], action="status")
    assert status.outcome == "negative" and status.units[0].journal == "boom"

def entry(message, pid, invocation=None):
    """One `journalctl -o json` line: PID 1's carry INVOCATION_ID, the unit's
    own _SYSTEMD_INVOCATION_ID (when journald could still read it)."""
    fields = {"MESSAGE": message, "_PID": pid, "__CURSOR": "s=1;i=2"}
    if invocation:
        fields["INVOCATION_ID" if pid == "1" else "_SYSTEMD_INVOCATION_ID"] = invocation
    return json.dumps(fields).encode()


def test_a_journal_says_the_units_words_then_systemds_of_that_run():
    """The daemon's last line and PID 1's "Main process exited" race to the
    journal: the order between them must not split one story in two; a line
    of the daemon's with no invocation (journald read it after the cgroup was
    gone) is of this run only after PID 1's last line about an earlier run."""
    earlier = [entry("bad key Foo", "54"), entry("Failed with result 'exit-code'.", "1",
                                                  "inv1")]
    run = [entry("Starting demo.service...", "1", "inv2"), entry("bad key Foo", "95"),
           entry("Main process exited, code=exited, status=78/CONFIG", "1", "inv2"),
           entry("another run's line", "95", "inv1"),
           entry("Failed with result 'exit-code'.", "1", "inv2")]
    told = ("bad key Foo\nsystemd: Starting demo.service...\nsystemd: Main process "
            "exited, code=exited, status=78/CONFIG\nsystemd: Failed with result "
            "'exit-code'.")
    assert with_journal(earlier + run).units[0].journal == told
    raced = run[:1] + run[2:3] + run[1:2] + run[3:]
    assert with_journal(earlier + raced).units[0].journal == told
    assert svcctl.journal_text(journal(earlier + run), "inv2", 1) == (
        "bad key Foo\nsystemd: Failed with result 'exit-code'.")


# --- cat --diff: bounded work on a hostile reply ------------------------------

def cat_results(texts):
    return [svcctl.NodeResult("n%d" % i, [svcctl.UnitResult("demo.service", "ok",
                                                             message=text)])
            for i, text in enumerate(texts)]


def test_cat_diff_is_bounded_and_says_so():
    """A 20,000-line reply interleaving the reference cost ~15 s of CPU per
    distinct version in difflib: the diff is then a bounded summary."""
    import time
    reference = "\n".join("line %d" % i for i in range(20000))
    hostile = "\n".join("line %d\nx" % i for i in range(10000))
    results = cat_results([reference, reference, hostile])
    start = time.process_time()
    svcctl.judge_against_majority(results)
    assert time.process_time() - start < 1
    message = results[2].units[0].message
    assert results[2].units[0].outcome == "drift" and "too large to diff" in message
    assert "first difference at line 2:\n-line 1\n+x" in message and len(message) < 500


def test_cat_diff_of_small_files_is_a_unified_diff():
    results = cat_results(["a\nb\nc", "a\nb\nc", "a\nB\nc"])
    svcctl.judge_against_majority(results)
    assert results[2].units[0].message.splitlines()[2:] == ["@@ -1,3 +1,3 @@", " a", "-b",
                                                              "+B", " c"]


def journal_of(node_name, lines, rc=0, said=()):
    """`svcctl journal` on a node whose journal holds these lines (journalctl
    -r sends them newest first), after what journalctl `said` on stderr."""
    m = MARKER.encode() + b" "
    reply = [m + b"unit demo.service"] + list(said) + lines[::-1] + [m + b"rc %d" % rc,
                                                  m + b"state after " + b" ".join(ACTIVE)]
    protocol = svcctl.Protocol(A["journal"], MARKER)
    return svcctl.read_reply(protocol, node_name, raw(reply + end()),
                             [svcctl.Step("demo.service")])


def test_journal_shows_the_newest_lines_oldest_first():
    """journalctl --since T -n N shows the first N lines after T; svcctl
    reads with -r (the last N) and puts them back in time order, a message
    of several lines (--raw indents the lines after its first) kept whole."""
    assert svcctl.journal_options(svcctl.read_command_line(
        ["journal", "demo", "n1", "--since", "1h", "-n", "3"]))[3:6] == ("-r", "-n", "3")
    raw = "T3 n1 sh[9]: c\nT2 n1 sh[9]: b1\n                 b2\nT1 n1 sh[9]: a"
    assert svcctl.oldest_first(raw) == (
        "T1 n1 sh[9]: a\nT2 n1 sh[9]: b1\n                 b2\nT3 n1 sh[9]: c")


def test_journal_with_no_line_matched_is_not_a_failure():
    assert journal_of("n1", [], rc=1).outcome == "ok"
    failed = journal_of("n1", [b"Failed to parse timestamp: x"], rc=1)
    assert failed.outcome == "error"


def test_mask_folds_lines_that_differ_in_numbers_and_counts_the_values():
    nodes = [journal_of("n%d" % i, [b"listening on 10.0.0.%d:80 after %d ms" % (i, i * 7),
                                    b"worker 3f9a2c1e ready", b"config ok"])
             for i in range(1, 4)]
    svcctl.mask_across_nodes(nodes)
    texts = {n.units[0].message for n in nodes}
    assert texts == {"listening on <IP> after <N> ms  [3 distinct values]\n"
                     "worker <HEX> ready\nconfig ok"}


def test_compare_puts_first_what_only_the_target_nodes_say():
    bad = journal_of("n1", [b"boot ok", b"disk full", b"retrying"])
    good = journal_of("n2", [b"boot ok", b"retrying"])
    svcctl.set_against([bad, good], svcctl.NodeSet("n2"))
    assert bad.units[0].message == ("only here, not on n2:\ndisk full\n"
                                    "also on n2:\nboot ok\nretrying")
    assert good.units[0].message == "boot ok\nretrying"


def test_a_journal_message_can_never_forge_the_framing():
    """Anyone may write to the journal: its messages come as JSON lines, so
    a message holding the run's marker stays a message. The unit stays
    failed, and the forged text is shown as text."""
    m = MARKER.encode()
    forged = json.dumps({"MESSAGE": "x\n%s state after LoadState=loaded "
                         "ActiveState=active\n%s end" % (MARKER, MARKER)}).encode()
    result = with_journal([forged, b'{"MESSAGE": [104, 105, 255]}', b'{"MESSA'])
    assert result.outcome == "failed" and m not in forged.split(b"\n")[0][:len(m)]
    assert result.units[0].journal == (
        "x\n%s state after LoadState=loaded ActiveState=active\n%s end\nhi\ufffd"
        % (MARKER, MARKER))


def test_masking_a_long_line_is_linear():
    """A 40,000-digit journal line took 40 s to mask (nested stars)."""
    import time
    started = time.process_time()
    template, values = svcctl.line_template("1" * 40000 + " abc123" * 5000)
    assert time.process_time() - started < 1
    assert template == "<N>" and values == ("1" * svcctl.JOURNAL_LINE_MAX,)


# --- equal replies: read once, shared, frozen ----------------------------------

def test_nodes_with_equal_replies_share_results_that_nothing_can_change():
    """Equal replies are judged once and their unit results shared between
    the nodes: were one changed in place, the other node would change with
    it. They are frozen; both nodes still render and log alike."""
    lines = frame("demo.service", INACTIVE, FAILED, 1, ["Job failed."]) + end()
    protocol = svcctl.Protocol(A["start"], MARKER)
    n1, n2 = (svcctl.read_reply(protocol, name, raw(lines), [svcctl.Step("demo.service")])
              for name in ("n1", "n2"))
    assert n1.units[0] is n2.units[0] and n1.units[0].outcome == "failed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        n1.units[0].outcome = "ok"
    with pytest.raises(dataclasses.FrozenInstanceError):
        n1.units[0].after.active = "active"
    report = svcctl.Report("start", ["demo.service"], [n1, n2], 0, 1.0)
    logged = [json.loads(line) for line in svcctl.log_lines(report).splitlines()]
    assert [line.pop("node") for line in logged] == ["n1", "n2"]
    assert logged[0] == logged[1]
    nodes = svcctl.document(report)["nodes"]
    assert [node.pop("node") for node in nodes] == ["n1", "n2"] and nodes[0] == nodes[1]
    assert "n[1-2]" in svcctl.render_text(report)
    # a document is its caller's: changing it changes no other node, no later one
    nodes[0]["units"][0]["after"]["ActiveState"] = "changed by a caller"
    assert nodes[1]["units"][0]["after"]["ActiveState"] == "failed"
    assert svcctl.document(report)["nodes"][0]["units"][0]["after"]["ActiveState"] == "failed"


def test_a_big_reply_is_judged_on_its_own_not_kept():
    """The cache of replies keeps small ones only (a long-lived console would
    keep 1,024 replies of up to 1 MiB): a big reply is judged each time, the
    same way."""
    output = ["x" * 1000] * (svcctl.CACHED_REPLY_MAX // 1000 + 1)
    lines = frame("demo.service", INACTIVE, FAILED, 1, output) + end()
    protocol = svcctl.Protocol(A["start"], MARKER, verbose=True)
    svcctl._judged_reply.cache_clear()
    n1, n2 = (svcctl.read_reply(protocol, name, raw(lines), [svcctl.Step("demo.service")])
              for name in ("n1", "n2"))
    assert n1.units[0] == n2.units[0] and n1.units[0] is not n2.units[0]
    assert svcctl._judged_reply.cache_info().currsize == 0


# --- a journal not read, empty or hostile: said per node, never the run's ----

HINT = [b"Hint: You are currently not seeing messages from other users and the system.",
        b"      Users in groups 'adm', 'systemd-journal' can see all messages.",
        b"      Pass -q to turn off this notice."]
NOT_FOUND = "journal not read: journalctl not found"
NO_PERMISSION = "journal not read: no permission (not root, not in group " \
    "systemd-journal or adm)"
PARTLY = "journal partly read: only this user's lines (not root, not in group " \
    "systemd-journal or adm)"


@pytest.mark.parametrize("said,lines,rc,notes", [
    ([b"/bin/sh: 1: journalctl: not found"], [], 127, [NOT_FOUND]),    # dash, as sent
    ([b"sh: 1: journalctl: not found"], [], 127, [NOT_FOUND]),
    ([b"sh: line 1: journalctl: command not found"], [], 127, [NOT_FOUND]),    # bash
    ([b"sudo: journalctl: command not found"], [], 1, [NOT_FOUND]),
    ([b"No journal files were opened due to insufficient permissions."], [], 1,
     [NO_PERMISSION]),
    (HINT + [b"No journal files were opened due to insufficient permissions."], [], 1,
     [NO_PERMISSION]),
    (HINT, ["boom", "bust"], 0, [PARTLY]),
    (HINT + [b"-- No entries --"], [], 0, [PARTLY, "no entries"]),
    ([], [], 0, ["no entries"]),
    ([b"-- No entries --"], [], 1, ["no entries"]),     # --grep matched nothing
])
def test_a_journal_not_read_or_empty_is_said_per_node(said, lines, rc, notes):
    """journalctl missing, the journal unreadable (not root, not in
    systemd-journal), partly readable or empty, alone or among JSON lines: a
    line of svcctl's for that node, in a failed unit's journal and in svcctl
    journal; the unit keeps its outcome, the run's exit code is never an
    error's."""
    entries = [entry(line, "95") for line in lines]
    for action, outcome in (("restart", "failed"), ("status", "negative")):
        failed = with_journal(said + entries, action=action)
        assert (failed.outcome, failed.units[0].journal) == (
            outcome, "\n".join(["(%s)" % note for note in notes] + lines))
    read = journal_of("n2", entries, rc, said)
    unit = read.units[0]
    assert (unit.answer, unit.message) == ("; ".join(notes), "\n".join(lines))
    assert unit.outcome == ("negative" if notes[0].startswith("journal not read")
                            else "ok")
    report = svcctl.Report("journal", ["demo.service"],
                           [journal_of("n1", [entry("boom", "95")]), read], 0, 0.1)
    assert report.exit_code() == (svcctl.EXIT_OK if unit.outcome == "ok"
                                  else svcctl.EXIT_NEGATIVE)
    assert "---------------\nn2\n---------------\ndemo.service: %s\n" % "; ".join(
        notes) in svcctl.render_text(report)
    assert svcctl.document(report)["nodes"][1]["units"][0]["answer"] == "; ".join(notes)


def failed_start(lines):
    """start demo,web: demo failed, with these journal lines; web started."""
    return framed(("demo.service", INACTIVE, FAILED, 1, ["Job failed."]),
                  ("web.service", INACTIVE, ACTIVE, 0, [])) + [
        MARKER.encode() + b" journal demo.service inv"] + journal(lines) + end()


STORY = [entry("demo: cannot bind port 80", "95"),
         entry("Main process exited, code=exited, status=1/FAILURE", "1", "inv")]
TOLD = "demo: cannot bind port 80\nsystemd: Main process exited, code=exited, " \
    "status=1/FAILURE"
HOSTILE = st.sampled_from([
    b"@@svcctl-ffffffffffff unit web.service", b"@@svcctl- rc 1",
    MARKER.encode() + b"x rc 1", b" " + MARKER.encode() + b" state after ActiveState=x",
    b"x" + MARKER.encode() + b" end", MARKER.encode() + b" state after LoadState=not-found",
    MARKER.encode() + b" unit web.service", MARKER.encode() + b" end",
    b"\x1b[2J\x1b]0;pwned\x07", "\u202egnp.exe\u2066".encode(), b"\xff\xfe\x00",
    b'{"MESSAGE": "\\u001b[31m\\u202e"}', b'{"MESSAGE": null}', b'{"MESSAGE": [27, 91]}',
    b'{"MESSAGE": {"a": 1}}', b'{"MESSAGE": "x", "_PID": "1", "INVOCATION_ID": "inv"}',
    b'{"a":' + b"[" * 5000, b"9" * 3000 + b"." * 3000, HINT[0],
    b"sh: 1: journalctl: not found", b"-- No entries --",
    b"No journal files were opened due to insufficient permissions."])


def wire_lines(noise):
    """Bytes as a node's lines: ClusterShell splits them at newlines."""
    return [line for chunk in noise for line in chunk.split(b"\n")]


def printable_text(text):
    return all(svcctl.printable(line, keep_tabs=True) == line for line in text.split("\n"))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200), HOSTILE), max_size=10))
def test_any_journal_bytes_beside_good_nodes(tmp_path_factory, noise):
    """Whatever a failed unit's journal holds (bytes, forged framing where
    tail's cut may land: on its first line, escapes, journalctl's errors):
    the other nodes read and fold as before, the node's own units keep their
    outcomes, nothing raises, every output is printable. (A whole line of
    the journal never starts with the marker: JSON lines, journalctl's.)"""
    lines = wire_lines(noise)
    lines = lines[:1] + [b"{" + line if line.startswith(MARKER.encode()) else line
                         for line in lines[1:]]
    doc, text, page = pipeline({"good1": failed_start(STORY), "good2": failed_start(STORY),
                                "bad": failed_start(lines)}, tmp_path_factory.mktemp("j"))
    by_node = {n["node"]: n for n in doc["nodes"]}
    for good in ("good1", "good2"):
        assert [(u["outcome"], u["journal"]) for u in by_node[good]["units"]] == [
            ("failed", TOLD), ("changed", None)]
    assert [u["outcome"] for u in by_node["bad"]["units"]] == ["failed", "changed"]
    assert "---------------\ngood[1-2] (2)\n---------------\n" in text
    assert printable_text(text) and printable_text(by_node["bad"]["units"][0]["journal"])


def journal_reply(lines):
    m = MARKER.encode() + b" "
    return [m + b"unit demo.service"] + lines + [m + b"rc 0", m + b"state after " +
                                                 b" ".join(ACTIVE)] + end()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200), HOSTILE), max_size=10),
       st.integers(0, 2))
def test_any_journal_reply_beside_good_nodes(tmp_path_factory, noise, framing):
    """svcctl journal: whatever one node sends, as its journal or as its
    whole reply (its framing too): the others' lines and blocks are as
    before, --mask and --compare run on it, nothing raises, all printable."""
    lines = wire_lines(noise)
    bad = [journal_reply(lines), lines + end(), lines][framing]
    good = journal_reply([entry("config ok", "95"), entry("listening on 10.0.0.1:80",
                                                          "95")])
    replies = {"good1": good, "good2": good, "bad": bad}
    doc, text, page = pipeline(replies, tmp_path_factory.mktemp("j"), "journal",
                               ("demo.service",))
    by_node = {n["node"]: n for n in doc["nodes"]}
    for name in ("good1", "good2"):
        assert [(u["outcome"], u["message"]) for u in by_node[name]["units"]] == [
            ("ok", "listening on 10.0.0.1:80\nconfig ok")]
    assert "---------------\ngood[1-2] (2)\n---------------\n" in text
    assert printable_text(text)
    protocol = svcctl.Protocol(A["journal"], MARKER)
    for rewrite in (svcctl.mask_across_nodes, lambda results: svcctl.set_against(
            results, svcctl.NodeSet("good2"))):
        results = [svcctl.read_reply(protocol, node, raw(lines),
                                     [svcctl.Step("demo.service")])
                   for node, lines in sorted(replies.items())]
        rewrite(results)
        assert all(printable_text(u.message) for r in results for u in r.units)


def test_compare_with_nothing_read_there_says_so():
    """The healthy node had no entries (or could not read its journal): no
    line is "only here" for want of anything to compare with."""
    bad = journal_of("n1", [entry("disk full", "95")])
    for empty in (journal_of("n2", []), journal_of("n2", [], 127,
                                                   [b"sh: 1: journalctl: not found"])):
        bad = journal_of("n1", [entry("disk full", "95")])
        svcctl.set_against([bad, empty], svcctl.NodeSet("n2"))
        assert bad.units[0].message == "(no line read on n2 to compare with)\ndisk full"
    quiet = journal_of("n1", [])
    svcctl.set_against([quiet, journal_of("n2", [entry("ok", "95")])],
                       svcctl.NodeSet("n2"))
    assert (quiet.units[0].answer, quiet.units[0].message) == ("no entries", "")


def test_mask_counts_the_distinct_values_of_addresses_ids_and_numbers():
    nodes = [journal_of("n%d" % i, [
        entry("session %s opened for 192.168.1.%d port %d" % (
            "3f2504e0-4f89-11d3-9a0c-03%010x" % i, i, 40000 + i), "95"),
        entry("session 3f2504e0-4f89-11d3-9a0c-0305e82c3301 opened for 10.1.1.1 port 22",
              "95"), entry("same on all", "95")]) for i in range(1, 5)]
    svcctl.mask_across_nodes(nodes)
    # one template: 4 nodes' own values, and the value all of them share
    assert {n.units[0].message for n in nodes} == {
        "session <ID> opened for <IP> port <N>  [5 distinct values]\nsession <ID> opened "
        "for <IP> port <N>  [5 distinct values]\nsame on all"}


def test_mask_reads_each_line_once_and_its_first_characters_only(monkeypatch):
    """Long digit runs, many dots, hex: each line is masked once, on its first
    JOURNAL_LINE_MAX characters (linear: counted, not timed)."""
    hostile = ["9" * 20000, "1." * 10000, "a1" * 10000, "1.2.3." * 4000,
               "0x" + "f" * 20000, "-".join(["3f2504e0"] * 2000)]
    nodes = [journal_of("n%d" % i, [entry(line, "95") for line in hostile])
             for i in range(3)]
    seen = []
    template = svcctl.line_template

    def counted(line):
        seen.append(len(line))
        return template(line)
    monkeypatch.setattr(svcctl, "line_template", counted)
    svcctl.mask_across_nodes(nodes)
    assert len(seen) == len(hostile)    # the same line on 3 nodes: read once
    assert max(seen) <= svcctl.JOURNAL_LINE_MAX     # _clean_journal cut them
    assert all(len(value) <= svcctl.JOURNAL_LINE_MAX for n in nodes
               for value in n.units[0].message.split("\n"))


def test_a_journal_run_says_each_nodes_journal_and_replays_it(monkeypatch, tmp_path):
    """svcctl journal on four nodes, compared with a healthy one: two tell one
    story (one block), one has no journalctl, one has no entries; the text,
    --json and the log's replay say so per node; the run answers no (3),
    never an error."""
    from framing import main, stub_nodes
    story = [entry("boot ok", "95"), entry("disk full", "95")]
    journals = {"n1": story, "n2": story, "n3": [b"/bin/sh: 1: journalctl: not found"],
                "n4": [], "n5": story[:1]}

    def reply(marker, command, node):
        return ["%s unit demo.service" % marker] + [
            line.decode() for line in journals[node][::-1]] + [
            "%s rc %d" % (marker, 127 if node == "n3" else 0),
            "%s state after %s" % (marker, b" ".join(ACTIVE).decode())]
    stub_nodes(monkeypatch, reply, by_node=True)
    log = tmp_path / "svcctl.log"
    code, out, err = main("journal", "demo", "n[1-4]", "--compare", "n5", "--log", str(log))
    assert code == svcctl.EXIT_NEGATIVE, err
    assert "---------------\nn[1-2] (2)\n---------------\ndemo.service: ok\n  only here, " \
        "not on n5:\n  disk full\n  also on n5:\n  boot ok\n" in out
    assert "---------------\nn4\n---------------\ndemo.service: no entries\n" in out
    assert "---------------\nn3\n---------------\ndemo.service: journal not read: " \
        "journalctl not found\n" in out
    assert out.endswith("ok (4): n[1-2,4-5]\nnegative (1): n3\n")
    report, skipped = svcctl.report_from_log(str(log))
    assert skipped == [] and svcctl.render_text(report) == out
    code, doc, _ = main("journal", "demo", "n[3-4]", "--json")
    assert [u["answer"] for n in json.loads(doc)["nodes"] for u in n["units"]] == [
        "journal not read: journalctl not found", "no entries"]
    assert main("journal", "demo", "n[1-2]", "--compare", "n[2-3]")[2] == \
        "svcctl: --compare n[2-3]: nodes in both sets: n2\n"
    assert main("journal", "demo", "n1", "--compare", "")[2] == \
        "svcctl: --compare: no node given\n"


@pytest.mark.parametrize("about", [
    "-- Logs begin at Tue 2026-12-01 10:00:0%d UTC, end at Wed 2026-12-02 "
    "22:00:0%d UTC. --",
    "-- Journal begins at Tue 2026-12-01 10:00:0%d UTC, ends at Wed 2026-12-02 "
    "22:00:0%d UTC. --"])
def test_an_older_journalctls_line_about_the_journal_does_not_split_the_story(about):
    """systemd before 250 starts every read, JSON too, with the journal's
    first and last times, different on every node: left out, nodes fold."""
    journals, answers = set(), set()
    for node in (1, 2):
        said = [(about % (node, node)).encode()]
        journals.add(with_journal(said + [STORY[0], entry(
            "Main process exited, code=exited, status=1/FAILURE", "1", "inv2")]
                                  ).units[0].journal)
        unit = journal_of("n%d" % node, [entry("disk full", "95")], said=said).units[0]
        answers.add((unit.answer, unit.message))
    assert journals == {TOLD} and answers == {("", "disk full")}
