"""The model: the outcome and action tables, and the written contracts
(README) that follow from them."""
import json
import os
import re

import pytest

import svcctl
from conftest import ROOT
from framing import ACTIVE, INACTIVE, MARKER, end, frame

README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def test_outcomes_are_ordered_by_exit_code_precedence():
    """The worst outcome decides the exit code: 4 > 1 > 3 > 0 must follow
    the severity order, or a worse outcome would exit with a milder code."""
    precedence = [0, 3, 1, 4]
    codes = [o.exit_code for o in svcctl.OUTCOME_TABLE if o.name != "interrupted"]
    ranks = [precedence.index(code) for code in codes]
    assert ranks == sorted(ranks)
    assert all(o.problem == (o.exit_code in (1, 4, 130)) for o in svcctl.OUTCOME_TABLE)


def test_every_outcome_has_its_own_symbol():
    symbols = [o.symbol for o in svcctl.OUTCOME_TABLE]
    assert len(set(symbols)) == len(symbols)


def test_readme_documents_every_outcome_and_action():
    outcomes = re.findall(r"^\| `([a-z-]+)` \|", README, re.M)
    assert [o for o in outcomes if o in svcctl.OUTCOMES] == list(svcctl.OUTCOMES)
    for action in svcctl.ACTIONS:
        assert "`%s`" % action in README or " %s " % action in README, action


def test_code_asks_the_row_not_the_name():
    """Behaviour lives in the tables: the code does not branch on names."""
    source = open(os.path.join(ROOT, "svcctl.py"), encoding="utf-8").read()
    assert source.count("action.name") <= 3


@pytest.mark.parametrize("action", sorted(svcctl.ACTIONS))
def test_each_action_row_is_consistent(action):
    row = svcctl.ACTIONS[action]
    assert row.kind in ("change", "query", "node", "apply")
    if row.kind == "query":
        assert row.answer is not None and not row.privileged
    if row.kind == "change":
        assert row.privileged and (row.reads_before or row.always_changes
                                   or row.tells_change is not None)
        assert row.goal is not None or row.always_changes
    if row.takes_now:
        assert row.kind == "change"


def test_sudo_reaches_every_privileged_action():
    """--sudo once forgot daemon-reload: every action that needs root runs
    through sudo -n, and none that does not."""
    for action in svcctl.ACTION_TABLE:
        protocol = svcctl.Protocol(action, MARKER, sudo=True, verbose=True)
        script = svcctl.remote_script(protocol, [svcctl.Step("demo.service")])
        assert ("sudo -n systemctl" in script or "$x systemctl" in script) \
            == action.privileged, action.name
        # the journal is read as root with --sudo (a user outside
        # systemd-journal reads only their own lines)
        assert ("sudo -n journalctl" in script or "$x journalctl" in script) == (
            action.reads_as_root or action.tells_why()), action.name
        assert ("$x" not in script) or "x='sudo -n'" in script


def test_unit_state_predicates_match_systemctl():
    running = svcctl.UnitState("loaded", "active", "running", "enabled")
    assert running.is_running and running.is_enabled
    assert svcctl.UnitState(active="reloading").is_running
    assert not svcctl.UnitState(active="activating", sub="auto-restart").is_running
    assert svcctl.UnitState(active="activating", sub="auto-restart").crashed
    assert svcctl.UnitState(file="static").is_enabled
    assert not svcctl.UnitState(file="disabled").is_enabled
    dead = svcctl.UnitState("loaded", "failed", "failed", "disabled", "exit-code", "1",
                            "3", "2")
    assert dead.why() == "result exit-code, main process exited with status 3, " \
                         "restarted by systemd after failing"


def _documented(section):
    """The field names a README section lists: `- `a`, `b` — meaning`."""
    text = README.split("### " + section, 1)[1].split("\n#", 1)[0]
    return [name for line in re.findall(r"^- (.*?) \u2014", text, re.M)
            for name in re.findall(r"`([a-z_]+)`", line)]


def sample_report():
    protocol = svcctl.Protocol(svcctl.ACTIONS["start"], MARKER)
    raw = svcctl.RawResult(stdout=frame("demo.service", INACTIVE, ACTIVE) + end(), rc=0)
    node = svcctl.read_reply(protocol, "n1", raw, [svcctl.Step("demo.service")])
    return svcctl.Report("start", ["demo.service"], [node], 0, 1.0, run_id="abc")


def test_json_document_fields_are_the_documented_ones():
    doc = svcctl.document(sample_report())
    assert sorted(doc) == sorted(_documented("JSON document"))
    assert sorted(doc["nodes"][0]) == sorted(_documented("Node fields"))
    assert sorted(doc["nodes"][0]["units"][0]) == sorted(_documented("Unit fields"))
    assert doc["schema"] == svcctl.SCHEMA


def test_log_line_fields_are_the_documented_ones():
    record = json.loads(svcctl.log_lines(sample_report()).splitlines()[0])
    documented = _documented("Log lines") + _documented("Unit fields")
    assert sorted(record) == sorted(documented)
    assert record["schema"] == svcctl.SCHEMA
