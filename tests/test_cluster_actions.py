"""Integration: the installed svcctl against real systemd nodes over real SSH."""
import json
import subprocess

import pytest

from conftest import normalise

pytestmark = pytest.mark.usefixtures("restore_units")

ALL = "node[1-8]"


def test_start_twice_changed_then_ok(svcctl, on_nodes, tmp_path):
    """The second start reads the units' runs, not their states, first (one
    readlink of what systemd exports): the log has no state before."""
    on_nodes(ALL, "systemctl stop demo")
    first = svcctl("start", "demo", "@all")
    assert first.rc == 0, first
    assert normalise(first.out) == (
        "---------------\nnode[1-8] (8)\n---------------\n"
        "demo.service: changed, inactive (dead), disabled -> active (running), disabled\n"
        "== start demo.service on 8 nodes in X s ==\nchanged (8): node[1-8]\n")
    log = tmp_path / "run.log"
    second = svcctl("start", "demo", "@all", "--log", str(log))
    assert second.rc == 0, second
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["before"] for r in records] == [None] * 8
    assert normalise(second.out) == (
        "---------------\nnode[1-8] (8)\n---------------\n"
        "demo.service: ok, active (running), disabled\n"
        "== start demo.service on 8 nodes in X s ==\nok (8): node[1-8]\n")
    assert on_nodes(ALL, "systemctl is-active demo").count("active") == 8


def test_mixed_outcomes_in_one_run(svcctl, on_nodes, cluster):
    """changed, ok, failed, not found, masked, unreachable, timed out: one run."""
    on_nodes("@odd", "systemctl stop demo web")
    on_nodes("@even", "systemctl start demo")
    # demo-slow is quick everywhere but node8, which will time out.
    on_nodes("node[1-7]", "mkdir -p /run/systemd/system/demo-slow.service.d && printf "
             "'[Service]\\nExecStart=\\nExecStart=/bin/true\\n' > "
             "/run/systemd/system/demo-slow.service.d/fast.conf && systemctl daemon-reload")
    try:
        run = svcctl("start", "demo,web,demo-fail,demo-masked,demo-slow",
                     "@all,down1,hang1", "-u", "6", "--json")
    finally:
        on_nodes("node[1-7]", "rm -rf /run/systemd/system/demo-slow.service.d && "
                 "systemctl daemon-reload")
        on_nodes(ALL, "systemctl stop demo-slow; systemctl reset-failed")
    assert run.rc == 4, run
    doc = json.loads(run.out)
    units = {(n["node"], u["unit"]): u["outcome"] for n in doc["nodes"] for u in n["units"]}
    messages = {(n["node"], u["unit"]): u["message"] for n in doc["nodes"]
                for u in n["units"]}
    for i in range(1, 9):
        node = "node%d" % i
        if i == 8:
            # the run timed out in demo-slow: no unit there reads better than
            # that (the state after was never read); what was known is kept
            assert set(u for (n, _), u in units.items() if n == node) == {"timeout"}
            assert messages[node, "demo.service"].startswith(
                "timed out after 6 s; known before that: ok, exit code 0, was active")
            assert messages[node, "demo-fail.service"].startswith(
                "timed out after 6 s; known before that: failed, exit code 1")
            assert messages[node, "demo-slow.service"].startswith(
                "timed out after 6 s while its start was running (it was inactive")
            continue
        assert units[node, "demo.service"] == ("changed" if i % 2 else "ok")
        assert units[node, "web.service"] == ("changed" if i % 2 else "not-found")
        assert units[node, "demo-fail.service"] == "failed"
        assert units[node, "demo-masked.service"] == "masked"
        assert units[node, "demo-slow.service"] == "changed"
    assert {n["node"]: n["outcome"] for n in doc["nodes"] if n["node"] in
            ("down1", "hang1")} == {"down1": "unreachable", "hang1": "unreachable"}
    assert doc["summary"] == {"failed": "node[1-7]", "timeout": "node8",
                              "unreachable": "down1,hang1"}
    assert len(doc["nodes"]) == 10
    assert run.elapsed < 20


def test_text_of_mixed_run_folds_and_puts_problems_last(svcctl, on_nodes):
    on_nodes(ALL, "systemctl start demo")
    run = svcctl("start", "demo,web", "@all,down1")
    assert run.rc == 4, run
    assert normalise(run.out) == (
        "---------------\nnode[1,3,5,7] (4)\n---------------\n"
        "demo.service: ok, active (running), disabled\n"
        "web.service: %s\n"
        "---------------\nnode[2,4,6,8] (4)\n---------------\n"
        "demo.service: ok, active (running), disabled\nweb.service: not found\n"
        "---------------\ndown1\n---------------\nunreachable: Connection refused\n"
        "== start demo.service,web.service on 9 nodes in X s ==\n"
        "%s"
        "not-found (4): node[2,4,6,8]\nunreachable (1): down1\n"
        # each unit's own outcomes: "not-found (4)" is web's, not demo's
        "demo.service: ok (8): node[1-8]\ndemo.service: unreachable (1): down1\n"
        "web.service: %s (4): node[1,3,5,7]\nweb.service: not-found (4): node[2,4,6,8]\n"
        "web.service: unreachable (1): down1\n") % (
        run.out.split("web.service: ")[1].split("\n")[0],
        "changed (4): node[1,3,5,7]\n" if "changed" in run.out.split("==")[0]
        else "ok (4): node[1,3,5,7]\n",
        "changed" if "changed" in run.out.split("==")[0] else "ok")


def test_quiet_shows_only_problems(svcctl, on_nodes):
    on_nodes(ALL, "systemctl start demo")
    run = svcctl("is-active", "demo", "@all,down1", "-q")
    assert run.rc == 4
    assert normalise(run.out) == (
        "---------------\ndown1\n---------------\nunreachable: Connection refused\n"
        "== is-active demo.service on 9 nodes in X s ==\n"
        "active (8): node[1-8]\nunreachable (1): down1\n")


def test_status_is_one_normalised_line_per_node(svcctl, on_nodes):
    on_nodes("@odd", "systemctl start demo")
    on_nodes("@even", "systemctl stop demo")
    run = svcctl("status", "demo", "@all")
    assert run.rc == 3, run
    assert normalise(run.out) == (
        "---------------\nnode[1,3,5,7] (4)\n---------------\n"
        "demo.service: active (running), disabled\n"
        "---------------\nnode[2,4,6,8] (4)\n---------------\n"
        "demo.service: inactive (dead), disabled\n"
        "== status demo.service on 8 nodes in X s ==\n"
        "active (4): node[1,3,5,7]\ninactive (4): node[2,4,6,8]\n")
    verbose = svcctl("status", "demo", "node1", "-v")
    assert "Main PID:" in verbose.out and "demo.service - svcctl demo" in verbose.out


@pytest.mark.parametrize("setup,argv,rc,line", [
    ("systemctl start demo-reload", ["restart", "demo-reload"], 0,
     "demo-reload.service: changed, active (running), disabled"),
    ("systemctl start demo-reload", ["reload", "demo-reload"], 0,
     "demo-reload.service: changed, active (running), disabled"),
    ("systemctl stop demo-reload", ["try-restart", "demo-reload"], 0,
     "demo-reload.service: ok, inactive (dead), disabled"),
    ("systemctl start demo-reload", ["try-restart", "demo-reload"], 0,
     "demo-reload.service: changed, active (running), disabled"),
    ("systemctl stop demo-reload", ["reload-or-restart", "demo-reload"], 0,
     "demo-reload.service: changed, active (running), disabled"),   # no state read before
    ("systemctl start demo", ["reload", "demo"], 1,
     "demo.service: failed, now active (running), disabled"),
    ("systemctl start demo", ["stop", "demo"], 0,
     "demo.service: changed, active (running), disabled -> inactive (dead), disabled"),
    # enable, disable, mask, unmask read no state first: systemctl says what
    # it changed (with --now they do read it: starting or stopping changes too)
    ("systemctl disable demo", ["enable", "demo"], 0,
     "demo.service: changed, inactive (dead), enabled"),
    ("systemctl enable demo", ["enable", "demo"], 0,
     "demo.service: ok, inactive (dead), enabled"),
    ("systemctl enable demo", ["disable", "demo", "--now"], 0,
     "demo.service: changed, inactive (dead), enabled -> inactive (dead), disabled"),
    ("systemctl disable --now demo", ["enable", "--now", "demo"], 0,
     "demo.service: changed, inactive (dead), disabled -> active (running), enabled"),
    ("systemctl disable --now demo", ["is-enabled", "demo"], 3, "demo.service: disabled"),
    ("systemctl start demo", ["is-active", "demo"], 0, "demo.service: active"),
    ("systemctl stop demo", ["is-failed", "demo"], 3, "demo.service: inactive"),
    ("systemctl unmask demo", ["mask", "demo"], 0, "demo.service: changed, masked"),
    ("systemctl mask demo", ["unmask", "demo"], 0,
     "demo.service: changed, inactive (dead), disabled"),
    ("systemctl unmask demo", ["unmask", "demo"], 0,
     "demo.service: ok, inactive (dead), disabled"),
    ("systemctl start demo-fail || true", ["reset-failed", "demo-fail"], 0,
     "demo-fail.service: changed, failed (failed), static -> inactive (dead), static"),
    ("systemctl stop demo@a demo@b", ["start", "demo@a,demo@b"], 0,
     "demo@a.service: changed, inactive (dead), disabled -> active (running), disabled\n"
     "demo@b.service: changed, inactive (dead), disabled -> active (running), disabled"),
    ("true", ["daemon-reload"], 0, "daemon-reload: done"),
    ("systemctl start demo-masked || true", ["start", "demo-masked"], 1,
     "demo-masked.service: masked\n"
     "  Failed to start demo-masked.service: Unit demo-masked.service is masked."),
    ("true", ["stop", "web"], 1, "web.service: not found"),
])
def test_every_action(svcctl, on_nodes, setup, argv, rc, line):
    nodes = "node[2,4]"
    on_nodes(nodes, setup)
    try:
        run = svcctl(*argv + [nodes])
    finally:
        on_nodes(nodes, "systemctl unmask demo; systemctl disable --now demo "
                 "demo-reload demo@a demo@b 2>/dev/null; systemctl reset-failed")
    assert run.rc == rc, run
    assert run.out.startswith("---------------\nnode[2,4] (2)\n---------------\n"
                              + line + "\n"), run


def test_sudo_as_ops_and_nosudo(svcctl, on_nodes):
    on_nodes("node[1-2]", "systemctl stop demo")
    ok = svcctl("--sudo", "-l", "ops", "start", "demo", "node[1-2]")
    assert ok.rc == 0, ok
    assert "demo.service: changed, inactive (dead)" in ok.out
    refused = svcctl("--sudo", "-l", "nosudo", "stop", "demo", "node[1-2]")
    assert refused.rc == 1, refused
    assert "demo.service: denied, now active (running), disabled\n" \
           "  sudo: a password is required\n" in refused.out
    assert refused.elapsed < 10         # never waits on a password prompt
    no_sudo = svcctl("-l", "ops", "stop", "demo", "node[1-2]")
    assert no_sudo.rc == 1 and "denied" in no_sudo.out, no_sudo
    assert on_nodes("node[1-2]", "systemctl is-active demo").count("active") == 2


def test_json_has_every_node(svcctl, on_nodes):
    on_nodes(ALL, "systemctl start demo")
    run = svcctl("is-active", "demo", "@all,hang1", "--json", "-t", "2")
    assert run.rc == 4
    doc = json.loads(run.out)
    assert doc["action"] == "is-active" and doc["units"] == ["demo.service"]
    assert [n["node"] for n in doc["nodes"]] == ["hang1"] + ["node%d" % i for i in range(1, 9)]
    assert doc["counts"] == {"ok": 8, "unreachable": 1}
    assert doc["exit_code"] == 4


def test_dry_run_contacts_nothing(svcctl):
    run = svcctl("--dry-run", "restart", "demo", "@all,hang1")
    assert run.rc == 0 and run.elapsed < 3
    assert "nodes: hang1,node[1-8] (9)" in run.out
    assert "ssh: user=(default) fanout=64 connect_timeout=5" in run.out


def test_ping(svcctl):
    run = svcctl("ping", "@all,down1,hang1,nowhere", "-t", "2")
    assert run.rc == 4, run
    out = normalise(run.out)
    assert "---------------\nnowhere\n---------------\nunreachable: name unknown: " in out
    assert "---------------\ndown1\n---------------\nunreachable: Connection refused\n" in out
    assert "---------------\nhang1\n---------------\nunreachable: Connection timed out" in out
    assert "---------------\nnode[1-8] (8)\n---------------\nping: " in out


def test_clush_reaches_the_cluster_unchanged(cluster, on_nodes):
    on_nodes(ALL, "systemctl start demo")
    proc = subprocess.run(["clush", "-bw", "@all", "systemctl", "is-active", "demo"],
                          env=cluster, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout == "---------------\nnode[1-8] (8)\n---------------\nactive\n"
