"""Integration: a cluster file driving the real test cluster."""
import json
import os

import pytest

from conftest import ROOT, normalise

FILE = """\
groups:
  back: node[1-4]
services:
  base:
    unit: demo-fail            # fails, except on node[1-2] (a drop-in there)
    nodes: "@back"
  mid:
    unit: demo@mid
    nodes: "@back"
    requires: base
  top:
    unit: demo@top
    nodes: "@back"
    requires: mid
    enabled: false
  front:
    unit: web
    nodes: node[5,7],down1
"""
FIX_BASE = ("mkdir -p /run/systemd/system/demo-fail.service.d && printf '[Service]\\n"
            "ExecStart=\\nExecStart=/bin/true\\nRemainAfterExit=yes\\n' > "
            "/run/systemd/system/demo-fail.service.d/ok.conf && systemctl daemon-reload")
CLEAN = ("rm -rf /run/systemd/system/demo-fail.service.d; systemctl daemon-reload; "
         "systemctl stop demo-fail demo@mid demo@top web 2>/dev/null; "
         "systemctl reset-failed; true")


@pytest.fixture
def cluster_file(tmp_path, on_nodes):
    path = tmp_path / "cluster.yaml"
    path.write_text(FILE)
    on_nodes("node[1-8]", CLEAN)
    on_nodes("node[1-2]", FIX_BASE)
    yield str(path)
    on_nodes("node[1-8]", CLEAN)


def outcomes(run):
    doc = json.loads(run.out)
    return {(n["node"], u["unit"]): u["outcome"] for n in doc["nodes"] for u in n["units"]}


def test_start_status_stop_with_a_failing_requirement(svcctl, cluster_file):
    # one wave: every chain lives on the same nodes -> one ssh connection per node
    dry = svcctl("-c", cluster_file, "start", "--dry-run")
    assert dry.rc == 0 and "wave" not in dry.out, dry
    assert ("base: start demo-fail.service on node[1-4] (4)\n"
            "mid: start demo@mid.service on node[1-4] (4); after base on each node, not "
            "where it failed\n") in dry.out

    start = svcctl("-c", cluster_file, "start", "--json", "-t", "3")
    assert start.rc == 4, start
    got = outcomes(start)
    for node in ("node1", "node2"):
        assert [got[node, u] for u in ("demo-fail.service", "demo@mid.service",
                                       "demo@top.service")] == ["changed"] * 3
    for node in ("node3", "node4"):
        assert [got[node, u] for u in ("demo-fail.service", "demo@mid.service",
                                       "demo@top.service")] == ["failed", "skipped", "skipped"]
    assert got["node5", "web.service"] == got["node7", "web.service"] == "changed"
    assert got["down1", "web.service"] == "unreachable"
    assert len({n for n, _ in got}) == 7       # node6 and node8 are in no service

    text = svcctl("-c", cluster_file, "start", "-t", "3")
    assert "demo@mid.service: skipped\n  a service it requires failed on this node\n" \
        in text.out

    status = svcctl("-c", cluster_file, "status", "-t", "3")
    assert status.rc == 4, status
    out = normalise(status.out)
    assert ("---------------\nbase: demo-fail.service on node[1-4], declared running\n"
            "---------------\nnode[1-2] (2): active (exited), static\n"
            "node[3-4] (2): failed (failed), static  <- drift\n") in out
    assert ("---------------\ntop: demo@top.service on node[1-4], declared running, "
            "disabled\n---------------\nnode[1-2] (2): active (running), disabled\n"
            "node[3-4] (2): inactive (dead), disabled  <- drift\n") in out
    assert ("---------------\nfront: web.service on down1,node[5,7], declared running\n"
            "---------------\ndown1: unreachable: Connection refused\n"
            "node[5,7] (2): active (running), disabled\n") in out
    assert ("== status 4 services of %s on 7 nodes in X s ==\n"
            "demo-fail.service active (2): node[1-2]\n"
            "demo-fail.service failed (2): node[3-4]\n"
            "demo@mid.service active (2): node[1-2]\n"
            "demo@mid.service inactive (2): node[3-4]\n"
            "demo@top.service active (2): node[1-2]\n"
            "demo@top.service inactive (2): node[3-4]\n"
            "web.service active (2): node[5,7]\n"
            "drift (2): node[3-4]\nunreachable (1): down1\n" % cluster_file) in out

    stop = svcctl("-c", cluster_file, "stop", "-n", "node[1-2]", "--json")
    assert stop.rc == 0, stop
    doc = json.loads(stop.out)
    assert [u["unit"] for u in doc["nodes"][0]["units"]] == [
        "demo@top.service", "demo@mid.service", "demo-fail.service"]    # reverse order
    assert doc["counts"] == {"changed": 2}


def test_named_service_pulls_its_requirements_unless_no_deps(svcctl, cluster_file):
    run = svcctl("-c", cluster_file, "start", "top", "-n", "node1", "--json")
    assert run.rc == 0, run
    assert [u["unit"] for u in json.loads(run.out)["nodes"][0]["units"]] == [
        "demo-fail.service", "demo@mid.service", "demo@top.service"]
    alone = svcctl("-c", cluster_file, "is-active", "top", "--no-deps", "-n", "node1")
    assert normalise(alone.out).startswith(
        "---------------\nnode1\n---------------\ndemo@top.service: active\n")


def test_apply_twice_converges_then_changes_nothing(svcctl, on_nodes):
    example = os.path.join(ROOT, "cluster.example.yaml")
    assert svcctl("-c", example, "--check-config").out == \
        "%s: ok, 4 services, 2 groups\n" % example
    on_nodes("node[1-8]", "systemctl disable --now demo@db demo@app web; "
             "systemctl start demo-reload; true")
    try:
        first = svcctl("-c", example, "apply")
        assert first.rc == 0, first
        assert "changed (8): node[1-8]" in first.out
        assert "demo@db.service: changed, inactive (dead), disabled -> " \
               "active (running), enabled" in first.out
        assert "demo-reload.service: changed, active (running), disabled -> " \
               "inactive (dead), disabled" in first.out
        second = svcctl("-c", example, "apply")
        assert second.rc == 0, second
        assert "ok (8): node[1-8]\n" \
               "svcctl: nothing to change: the cluster matches %s\n" % example in second.out
        status = svcctl("-c", example, "status")
        assert status.rc == 0 and "drift" not in status.out, status
    finally:
        on_nodes("node[1-8]", "systemctl disable --now demo@db demo@app web; true")


def test_apply_dry_run_says_what_would_change_and_changes_nothing(svcctl, on_nodes):
    """Ansible's check mode: one status query, then per service and NodeSet
    the start/stop/enable/disable that apply would run; nothing changed."""
    example = os.path.join(ROOT, "cluster.example.yaml")
    on_nodes("node[1-8]", "systemctl disable --now demo@db demo@app web; "
             "systemctl start demo-reload; true")
    try:
        dry = svcctl("-c", example, "apply", "--dry-run")
        assert dry.rc == 0, dry
        assert normalise(dry.out) == (
            "apply: dry run, the states read by one status query in X s, nothing changed\n"
            "db: demo@db.service, declared running, enabled\n"
            "  start, enable: node[1-4] (4)\n"
            "app: demo@app.service, declared running\n"
            "  start: node[1-4] (4)\n"
            "web: web.service, declared running\n"
            "  start: node[1,3,5,7] (4)\n"
            "reload: demo-reload.service, declared stopped\n"
            "  stop: node[1-8] (8)\n"
            "== apply --dry-run on 8 nodes ==\n"
            "would change (8): node[1-8]\n")
        assert svcctl("is-active", "demo-reload", "@all").rc == 0      # still running
        assert svcctl("is-active", "demo@db", "node[1-4]").rc == 3     # still stopped
        assert svcctl("-c", example, "apply").rc == 0
        again = svcctl("-c", example, "apply", "--dry-run", "-x", "node8")
        assert again.rc == 0, again
        assert again.out.endswith("== apply --dry-run on 7 nodes ==\n"
                                  "nothing to do (7): node[1-7]\n"), again
    finally:
        on_nodes("node[1-8]", "systemctl disable --now demo@db demo@app web; true")


def test_ping_every_node_of_the_file(svcctl, cluster_file):
    run = svcctl("-c", cluster_file, "ping", "-t", "3")
    assert run.rc == 4
    assert "== ping nodes of %s on 7 nodes in" % cluster_file in run.out
    assert "unreachable (1): down1" in run.out


def test_bad_file_contacts_nothing(svcctl, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  a:\n    nodes: hang1\n    requires: nope\n")
    run = svcctl("-c", str(bad), "start")
    assert run.rc == 2 and run.out == ""
    assert run.err == "svcctl: %s:2: services.a: unknown service nope\n" % bad
    assert run.elapsed < 3


CHAIN_WITH_A_BAD_LINK = """\
services:
  a: {unit: demo-notify@a, nodes: "node[1-4,7]"}
  b: {unit: demo-config, nodes: "node[1-4,7]", requires: a}
  c: {unit: demo-notify@c, nodes: "node[1-4,7]", requires: b}
"""


def test_apply_reads_once_and_still_tells_each_unit_and_why(svcctl, on_nodes, tmp_path):
    """apply reads its units' states once before and once after (not per
    unit): each unit is still judged on its own state, the one that could not
    start brings its journal (two stories: node7's port, the others' key),
    and the one that requires it is skipped."""
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN_WITH_A_BAD_LINK)
    units = "demo-notify@a demo-config demo-notify@c"
    on_nodes("node[1-4,7]", "systemctl stop %s; systemctl reset-failed; true" % units)
    try:
        run = svcctl("-c", str(path), "apply", "--json")
        assert run.rc == 1, run
        doc = json.loads(run.out)
        by_node = {n["node"]: {u["unit"]: u for u in n["units"]} for n in doc["nodes"]}
        assert sorted(by_node) == ["node1", "node2", "node3", "node4", "node7"]
        for node, got in by_node.items():
            assert [got[u]["outcome"] for u in ("demo-notify@a.service", "demo-config.service",
                                                "demo-notify@c.service")] \
                == ["changed", "failed", "skipped"], (node, got)
            assert got["demo-notify@a.service"]["after"]["ActiveState"] == "active"
            assert got["demo-notify@a.service"]["before"]["ActiveState"] == "inactive"
            why = got["demo-config.service"]["journal"]
            assert ("cannot bind 0.0.0.0:6817" if node == "node7"
                    else "unknown key SlurmctldHost2") in why, (node, why)
        text = svcctl("-c", str(path), "apply")
        assert text.rc == 1 and "unknown key SlurmctldHost2" in text.out, text
    finally:
        on_nodes("node[1-4,7]", "systemctl stop %s; systemctl reset-failed; true" % units)
