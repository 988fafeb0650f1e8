"""Text, JSON and log rendering of one result model."""
import json

import svcctl
from framing import ACTIVE, FAILED, INACTIVE, MARKER, MISSING, end, frame, framed, journal

A = svcctl.ACTIONS


def node(name, lines, rc=0, stderr=(), timed_out=False, units=("demo.service",),
         action="start"):
    raw = svcctl.RawResult(stdout=list(lines), stderr=list(stderr), rc=rc,
                           timed_out=timed_out)
    protocol = svcctl.Protocol(A[action], MARKER, timeout=10)
    return svcctl.read_reply(protocol, name, raw, [svcctl.Step(u) for u in units])


def sample_report():
    changed = frame("demo.service", INACTIVE, ACTIVE) + end()
    ok = frame("demo.service", ACTIVE, ACTIVE) + end()
    failed = frame("demo.service", INACTIVE, FAILED, 1, ["Job failed."]) + end()
    nodes = [node("node%d" % i, changed) for i in (1, 2, 6, 7)]
    nodes += [node("node3", ok), node("node4", failed),
              node("node5", [], rc=255, stderr=[b"ssh: connect to host 10.0.0.5 "
                                               b"port 22: Connection refused"]),
              node("node8", [], rc=None, timed_out=True)]
    return svcctl.Report("start", ["demo.service"], nodes, 1700000000.0, 2.34,
                         command="svcctl start demo node[1-8]", user="root",
                         run_id="0123456789ab")


EXPECTED = """\
---------------
node3
---------------
demo.service: ok, active (running), disabled
---------------
node[1-2,6-7] (4)
---------------
demo.service: changed, inactive (dead), disabled -> active (running), disabled
---------------
node4
---------------
demo.service: failed, now failed (failed), static
  Job failed.
---------------
node8
---------------
timed out after 10 s
---------------
node5
---------------
unreachable: Connection refused
== start demo.service on 8 nodes in 2.3 s ==
ok (1): node3
changed (4): node[1-2,6-7]
failed (1): node4
timeout (1): node8
unreachable (1): node5
"""


def test_text_output_bytes():
    assert svcctl.render_text(sample_report()) == EXPECTED


def test_every_node_appears_once():
    text = svcctl.render_text(sample_report())
    headers = [line for line in text.splitlines() if line.startswith("node")]
    nodes = svcctl.NodeSet.fromlist(h.split(" ")[0] for h in headers)
    assert len(nodes) == 8


def test_quiet_shows_only_problems_and_summary():
    text = svcctl.render_text(sample_report(), svcctl.Display(quiet=1))
    assert "node3\n" not in text.split("==")[0]
    assert "node[1-2,6-7] (4)\n" not in text
    assert "node4\n---------------\ndemo.service: failed" in text
    assert text.endswith("unreachable (1): node5\n")


def test_color_only_when_asked():
    plain = svcctl.render_text(sample_report())
    colored = svcctl.render_text(sample_report(), svcctl.Display(color=True))
    assert "\x1b[" not in plain
    assert "\x1b[31mdemo.service: failed, now failed (failed), static\x1b[0m" in colored


def test_use_color(monkeypatch):
    class Tty:
        def isatty(self):
            return True
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert svcctl.use_color("auto", Tty())
    assert not svcctl.use_color("never", Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not svcctl.use_color("auto", Tty())
    assert svcctl.use_color("always", Tty())


def test_verbose_shows_messages_of_good_results_too():
    lines = frame("demo.service", INACTIVE, ACTIVE, 0, ["Created symlink x"]) + end()
    report = svcctl.Report("start", ["demo.service"], [node("n1", lines)], 0, 0)
    assert "Created symlink" not in svcctl.render_text(report)
    assert "  Created symlink x\n" in svcctl.render_text(report, svcctl.Display(verbose=True))


def test_json_document():
    doc = svcctl.document(sample_report())
    json.dumps(doc)
    assert doc["exit_code"] == 4
    assert doc["summary"] == {"ok": "node3", "changed": "node[1-2,6-7]",
                              "failed": "node4", "timeout": "node8",
                              "unreachable": "node5"}
    assert doc["counts"]["changed"] == 4
    assert len(doc["nodes"]) == 8
    by_node = {n["node"]: n for n in doc["nodes"]}
    assert by_node["node1"]["units"][0]["before"]["ActiveState"] == "inactive"
    assert by_node["node1"]["units"][0]["after"]["ActiveState"] == "active"
    assert by_node["node5"]["reason"] == "Connection refused"
    assert doc["started"] == "2023-11-14T22:13:20+00:00"


def test_log_lines_one_per_node_and_unit():
    lines = svcctl.log_lines(sample_report()).decode().splitlines()
    assert len(lines) == 8
    records = [json.loads(line) for line in lines]
    assert {r["node"] for r in records} == {"node%d" % i for i in range(1, 9)}
    unreachable = [r for r in records if r["outcome"] == "unreachable"][0]
    assert unreachable["message"] == "Connection refused"
    assert all(r["run_id"] == "0123456789ab" and r["action"] == "start" for r in records)


def test_status_lines_fold_identical_states():
    lines = frame("demo.service", None, ACTIVE, 0, ["● demo.service - pid 42"]) + end()
    other = frame("demo.service", None, ACTIVE, 0, ["● demo.service - pid 43"]) + end()
    nodes = [node(n, l, action="status") for n, l in (("a1", lines), ("a2", other))]
    report = svcctl.Report("status", ["demo.service"], nodes, 0, 0)
    assert svcctl.render_text(report).startswith(
        "---------------\na[1-2] (2)\n---------------\n"
        "demo.service: active (running), disabled\n")


def test_html_report_is_self_contained_and_complete():
    page = svcctl.render_html(sample_report())
    assert page.count('<b class="o') == 8
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "http://" not in page and "https://" not in page and "src=" not in page
    assert "unsafe-inline" not in page and "script-src 'sha256-" in page
    for node in range(1, 9):        # every node by name, as text a browser finds
        assert '" tabindex="0">node%d</b>' % node in page
    data = svcctl.json.loads(page.split('<script type="application/json" id="data">')[1]
                             .split("</script>")[0])
    assert ["unreachable: Connection refused"] in data["details"]
    assert "svcctl start demo.service: 8 nodes, exit 4" in page
    assert "<code>node[1-2,6-7]</code>" in page
    # the same grouped text as the terminal, escaped
    assert svcctl.escape(svcctl.render_text(sample_report())) in page


def test_html_escapes_what_nodes_print():
    hostile = frame("demo.service", INACTIVE, FAILED, 1,
                    ['<img src="http://127.0.0.1:9/x"><script>alert(1)</script>']) + end()
    report = svcctl.Report("start", ["demo.service"], [node("n1", hostile)], 0, 0)
    page = svcctl.render_html(report)
    assert "<img" not in page and "<script>alert" not in page
    assert "&lt;img src=&quot;http://127.0.0.1:9/x&quot;&gt;" in page


def test_html_for_10000_nodes_is_small():
    lines = frame("demo.service", INACTIVE, ACTIVE) + end()
    nodes = [node("node%d" % i, lines) for i in range(10000)]
    report = svcctl.Report("start", ["demo.service"], nodes, 0, 1.0)
    page = svcctl.render_html(report)
    assert page.count('<b class="o') == 10000
    assert len(page.encode()) < 2 * 1024 * 1024


def test_report_rebuilt_from_the_log(tmp_path):
    report = sample_report()
    path = tmp_path / "svcctl.log"
    svcctl.append_log(str(path), svcctl.log_lines(report))
    svcctl.append_log(str(path), b"not json\n")
    rebuilt, skipped = svcctl.report_from_log(str(path))
    assert skipped == ["%s:9: skipped: not an svcctl log line (no run_id)" % path]
    assert svcctl.render_text(rebuilt) == svcctl.render_text(report)
    assert svcctl.document(rebuilt)["summary"] == svcctl.document(report)["summary"]
    assert rebuilt.command == report.command and rebuilt.run_id == report.run_id


def test_runtime_fields_of_exec_properties_are_removed():
    text = ("ExecStart={ path=/bin/sleep ; argv[]=/bin/sleep infinity ; ignore_errors=no "
            "; start_time=[Fri 2026-11-27 07:40:01 UTC] ; stop_time=[n/a] ; pid=1234 ; "
            "code=(null) ; status=0/0 }")
    assert svcctl._clean_properties(text) == \
        "ExecStart={ path=/bin/sleep ; argv[]=/bin/sleep infinity ; ignore_errors=no }"


def test_line_mode_and_quiet_levels():
    report = sample_report()
    lines = svcctl.render_text(report, svcctl.Display(lines=True)).splitlines()
    assert lines[:3] == ["node1: demo.service: changed, inactive (dead), disabled -> "
                         "active (running), disabled",
                         "node2: demo.service: changed, inactive (dead), disabled -> "
                         "active (running), disabled",
                         "node3: demo.service: ok, active (running), disabled"]
    assert "node5: unreachable: Connection refused" in lines
    assert svcctl.render_text(report, svcctl.Display(quiet=2)) == \
        svcctl.render_text(report, svcctl.Display(quiet=1))
    fine = svcctl.Report("start", ["demo.service"], [report.nodes[2]], 0, 1.0)
    assert svcctl.render_text(fine, svcctl.Display(quiet=2)) == ""
    assert svcctl.render_text(fine, svcctl.Display(quiet=1)).startswith("== start")


def test_json_in_chunks_is_the_same_document():
    report = sample_report()
    text = "".join(svcctl.json_chunks(report))
    assert json.loads(text) == json.loads(json.dumps(svcctl.document(report)))
    assert text.endswith("}\n")


# --- a query's summary names its answers --------------------------------------

def query_report(action, units=("demo-crash.service",)):
    """demo-crash failed on node[1-4], inactive on node[5-6] (and, with a second
    unit, web active on odd nodes, missing on even ones); node7 unreachable."""
    nodes = []
    for i in range(1, 7):
        states = [("demo-crash.service", None, FAILED if i <= 4 else INACTIVE, 0, []),
                  ("web.service", None, ACTIVE if i % 2 else MISSING, 0, [])]
        lines = framed(*[s for s in states if s[0] in units]) + end()
        nodes.append(node("node%d" % i, lines, units=units, action=action))
    nodes.append(node("node7", [], rc=255, stderr=[b"ssh: connect to host node7 port 22: "
                                                   b"Connection refused"],
                      units=units, action=action))
    return svcctl.Report(action, list(units), nodes, 1700000000.0, 0.5,
                         command="svcctl %s ..." % action, user="root",
                         run_id="0123456789ab")


def summary_of(text):
    return text.split(" s ==\n", 1)[1]


def test_a_query_summary_names_each_answer_with_its_nodes():
    status = svcctl.render_text(query_report("status"))
    assert summary_of(status) == ("failed (4): node[1-4]\ninactive (2): node[5-6]\n"
                                  "unreachable (1): node7\n")
    assert summary_of(svcctl.render_text(query_report("is-failed"))) == (
        "failed (4): node[1-4]\ninactive (2): node[5-6]\nunreachable (1): node7\n")
    assert summary_of(svcctl.render_text(query_report("is-active"))) == (
        "failed (4): node[1-4]\ninactive (2): node[5-6]\nunreachable (1): node7\n")
    # the exit code is still the outcomes' (unreachable first, then "no")
    assert query_report("status").exit_code() == 4


def test_a_query_summary_of_several_units_names_the_unit():
    report = query_report("is-active", ("demo-crash.service", "web.service"))
    assert summary_of(svcctl.render_text(report)) == (
        "demo-crash.service failed (4): node[1-4]\n"
        "demo-crash.service inactive (2): node[5-6]\n"
        "web.service active (3): node[1,3,5]\n"
        "not-found (3): node[2,4,6]\nunreachable (1): node7\n")


def test_a_query_answer_in_json_and_again_from_the_log(tmp_path):
    report = query_report("is-active", ("demo-crash.service", "web.service"))
    doc = svcctl.document(report)
    assert doc["answers"] == {"demo-crash.service": {"failed": "node[1-4]",
                                                     "inactive": "node[5-6]"},
                              "web.service": {"active": "node[1,3,5]"}}
    assert doc["summary"]["negative"] == "node[1,3,5]"     # kept as it was
    assert svcctl.document(sample_report())["answers"] is None
    path = tmp_path / "svcctl.log"
    svcctl.append_log(str(path), svcctl.log_lines(report))
    rebuilt, _ = svcctl.report_from_log(str(path))
    assert svcctl.render_text(rebuilt) == svcctl.render_text(report)
    assert svcctl.document(rebuilt)["answers"] == doc["answers"]


def test_ping_summary_says_how_systemd_runs():
    def pinged(name, answer, rc):
        marker = MARKER.encode() + b" "
        lines = [marker + b"unit ping", answer, marker + b"rc %d" % rc] + end()
        return node(name, lines, units=("ping",), action="ping")
    nodes = [pinged("n1", b"running", 0), pinged("n2", b"degraded", 1),
             pinged("n3", b"running", 0)]
    text = svcctl.render_text(svcctl.Report("ping", [], nodes, 0, 0.1))
    assert summary_of(text) == "running (2): n[1,3]\ndegraded (1): n2\n"


def test_the_same_failure_on_many_nodes_is_one_block_with_its_journal(tmp_path):
    """40 nodes, one story (process ids aside): one block; a second story on
    2 nodes is its own block; the log replays it byte for byte."""
    m = MARKER.encode() + b" "

    def crashed(name, pid, story):
        lines = frame("demo.service", ACTIVE, FAILED, 0) + [
            m + b"journal demo.service inv"] + journal([b"Started demo (pid %d)." % pid,
                                                         story]) + end()
        return node(name, lines, action="restart")
    nodes = [crashed("m%d" % i, i, b"demo: no config") for i in (1, 2)] + [
        crashed("n%d" % i, 1000 + i, b"demo: cannot bind port 80") for i in range(1, 41)]
    report = svcctl.Report("restart", ["demo.service"], nodes, 0, 0.1, run_id="r1")
    text = svcctl.render_text(report)
    assert text.count("journal of that run:") == 2
    assert "---------------\nn[1-40] (40)\n---------------\n" in text
    assert "  journal of that run:\n    Started demo (pid N).\n    demo: cannot bind " \
           "port 80\n" in text
    assert "---------------\nm[1-2] (2)\n" in text
    assert svcctl.document(report)["nodes"][2]["units"][0]["journal"] == \
        "Started demo (pid N).\ndemo: cannot bind port 80"
    path = tmp_path / "svcctl.log"
    svcctl.append_log(str(path), svcctl.log_lines(report))
    rebuilt, _ = svcctl.report_from_log(str(path))
    assert svcctl.render_text(rebuilt) == text


# --- a run on several units: each unit's outcomes in the summary -------------

def two_unit_start():
    """start demo-crash,web on node[1-4]: demo-crash fails on every node, web
    starts everywhere but node1, where it fails."""
    nodes = []
    for i in range(1, 5):
        web = ("web.service", INACTIVE, MISSING if i == 1 else ACTIVE, 5 if i == 1 else 0,
               [])
        lines = framed(("demo-crash.service", INACTIVE, FAILED, 0, []), web) + end()
        nodes.append(node("node%d" % i, lines, units=("demo-crash.service", "web.service")))
    return svcctl.Report("start", ["demo-crash.service", "web.service"], nodes,
                         1700000000.0, 0.5, command="svcctl start ...", user="root",
                         run_id="0123456789ab")


def test_a_run_on_several_units_says_each_units_outcomes(tmp_path):
    report = two_unit_start()
    text = svcctl.render_text(report)
    assert summary_of(text) == (
        "failed (4): node[1-4]\n"
        "demo-crash.service: failed (4): node[1-4]\n"
        "web.service: changed (3): node[2-4]\nweb.service: failed (1): node1\n")
    doc = svcctl.document(report)
    assert doc["unit_outcomes"] == {"demo-crash.service": {"failed": "node[1-4]"},
                                    "web.service": {"changed": "node[2-4]",
                                                    "failed": "node1"}}
    page = svcctl.render_html(report)
    assert "<td>web.service: changed</td><td>3</td><td><code>node[2-4]</code>" in page
    path = tmp_path / "svcctl.log"
    svcctl.append_log(str(path), svcctl.log_lines(report))
    rebuilt, _ = svcctl.report_from_log(str(path))
    assert svcctl.render_text(rebuilt) == text
    assert svcctl.document(rebuilt)["unit_outcomes"] == doc["unit_outcomes"]
