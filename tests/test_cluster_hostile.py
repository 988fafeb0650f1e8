"""Integration: hostile or unusual nodes. The `evil` user's login shell plays a
compromised node (tests/cluster.py); zshop and dashop log in with zsh and
dash, whose echo would read backslashes in unit names."""
import json
import subprocess
import sys

import pytest

from conftest import svcctl_argv

pytestmark = pytest.mark.usefixtures("restore_units")

MEASURE = ("import resource, subprocess, sys; "
           "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
           "sys.stdout.write(p.stdout); "
           "sys.stderr.write('%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN)"
           ".ru_maxrss); sys.exit(p.returncode)")


def test_floods_from_compromised_nodes_are_cut_off(cluster, on_nodes):
    """300 MB without a newline, 300 MB of forged framing lines (the node
    knows the run's marker: it is on its command line), 300 MB of short
    lines: each such node is `error: reply too large`, svcctl stays small,
    and the honest node is reported on time."""
    on_nodes("node1", "echo nonl > /run/evil-mode")
    on_nodes("node2", "echo markers > /run/evil-mode")
    on_nodes("node3", "echo lines > /run/evil-mode")
    on_nodes("node4", "systemctl start demo; rm -f /run/evil-mode")
    try:
        proc = subprocess.run([sys.executable, "-c", MEASURE] + svcctl_argv() + [
            "-l", "evil", "is-active", "demo", "node[1-4]", "--json", "-u", "120"],
            env=cluster, capture_output=True, text=True, timeout=120)
    finally:
        on_nodes("node[1-4]", "rm -f /run/evil-mode")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    by_node = {n["node"]: n for n in doc["nodes"]}
    assert by_node["node4"]["outcome"] == "ok"
    for node in ("node1", "node2", "node3"):
        assert by_node[node]["outcome"] == "error"
        assert by_node[node]["reason"].startswith("reply too large (")
    assert doc["elapsed"] < 20
    peak_kb = int(proc.stderr.split()[-1])
    assert peak_kb < 100 * 1024, "svcctl grew to %d MB" % (peak_kb // 1024)


@pytest.mark.parametrize("user", ["zshop", "dashop"])
def test_unit_names_with_backslashes_under_any_login_shell(svcctl, on_nodes, user):
    unit = "demo-a\\x2db.service"       # what systemd-escape makes of demo-a-b
    on_nodes("node[1-2]", "printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > "
             "'/run/systemd/system/%s' && systemctl daemon-reload" % unit)
    try:
        start = svcctl("--sudo", "-l", user, "start", unit, "node[1-2]")
        stop = svcctl("--sudo", "-l", user, "stop", unit, "node[1-2]")
    finally:
        on_nodes("node[1-2]", "systemctl stop '%s'; rm -f '/run/systemd/system/%s'; "
                 "systemctl daemon-reload" % (unit, unit))
    assert start.rc == 0, start
    assert "%s: changed, inactive (dead), static -> active (running), static" % unit \
        in start.out
    assert stop.rc == 0 and "%s: changed, active (running), static -> inactive (dead), " \
        "static" % unit in stop.out, stop


def test_a_group_name_from_a_cluster_file_runs_nothing(svcctl, tmp_path):
    """The pip-installed groups.conf has a `local` source whose map is a sed
    command line with the group name pasted in."""
    canary = tmp_path / "pwned"
    bad = tmp_path / "cluster.yaml"
    bad.write_text("services:\n  a:\n    nodes: \"@local:x';touch %s;'\"\n" % canary)
    run = svcctl("-c", str(bad), "--check-config")
    assert run.rc == 2 and run.err.startswith("svcctl: %s:3: services.a.nodes: invalid "
                                               "NodeSet: @local:x" % bad), run
    for argv in (["start", "demo", "@x';touch %s;'" % canary],
                 ["start", "demo", "node1", "-x", "@x$(touch %s)" % canary]):
        run = svcctl(*argv)
        assert run.rc == 2 and run.err.count("\n") == 1, run
    assert not canary.exists()
