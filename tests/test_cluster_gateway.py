"""Integration: svcctl unchanged when ClusterShell routes through a gateway."""
import json
import shutil
import socket

import pytest

pytestmark = pytest.mark.usefixtures("restore_units")

ROOT_HOST = socket.gethostname().split(".")[0]


def gateway_env(cluster, tmp_path, routes):
    """A config dir like the cluster's, plus a topology.conf."""
    cfgdir = tmp_path / "cfg"
    shutil.copytree(cluster["CLUSTERSHELL_CFGDIR"], cfgdir)
    (cfgdir / "topology.conf").write_text("[routes]\n" + routes)
    return dict(cluster, CLUSTERSHELL_CFGDIR=str(cfgdir))


@pytest.fixture
def via_gateway(cluster, tmp_path, on_nodes):
    """svcctl with node1 as the gateway to node[2-8]."""
    import subprocess
    from conftest import Run, svcctl_argv
    import time
    env = gateway_env(cluster, tmp_path, "%s: node1\nnode1: node[2-8]\n" % ROOT_HOST)

    def run(*args, environment=env):
        start = time.monotonic()
        proc = subprocess.run(svcctl_argv() + list(args), env=environment,
                              capture_output=True, text=True, timeout=120)
        return Run(proc, time.monotonic() - start)
    return run


def gateway_sessions(on_nodes):
    """Logins into node1 so far, in its sshd journal (this one included)."""
    out = on_nodes("node1", "journalctl _COMM=sshd -o cat | grep -c 'Accepted' || true")
    return int(out.split()[-1])


def test_actions_through_a_gateway(via_gateway, on_nodes):
    on_nodes("node[2-8]", "systemctl stop demo")
    before = gateway_sessions(on_nodes)
    run = via_gateway("start", "demo", "node[2-8]")
    assert run.rc == 0, run
    assert "demo.service: changed, inactive (dead), disabled -> active (running)" in run.out
    assert "changed (7): node[2-8]\n" in run.out
    # node1 is not a target: a login there (beside the counting one) is the gateway
    assert gateway_sessions(on_nodes) - before >= 2
    mixed = via_gateway("is-active", "demo,web", "node[2-5]", "--json")
    assert mixed.rc == 1, mixed                       # web is not found on even nodes
    units = {(n["node"], u["unit"]): u["outcome"]
             for n in json.loads(mixed.out)["nodes"] for u in n["units"]}
    assert {k: v for k, v in units.items() if k[1] == "demo.service"} == {
        ("node%d" % i, "demo.service"): "ok" for i in range(2, 6)}
    assert units["node2", "web.service"] == units["node4", "web.service"] == "not-found"
    assert units["node3", "web.service"] in ("ok", "negative")


def test_gateway_down_is_reported(via_gateway, cluster, tmp_path):
    env = gateway_env(cluster, tmp_path / "down", "%s: down1\ndown1: node[2-3]\n" % ROOT_HOST)
    run = via_gateway("is-active", "demo", "node[2-3]", "-t", "3", environment=env)
    assert run.rc == 4, run
    assert "Traceback" not in run.err
    assert "---------------\nnode[2-3] (2)\n---------------\nunreachable: no route " \
           "(gateway unreachable?): " in run.out
    assert "unreachable (2): node[2-3]" in run.out


def test_bad_topology_is_a_clear_error(via_gateway, cluster, tmp_path):
    env = gateway_env(cluster, tmp_path / "bad", "%s: node1\nnode1: node[2-3]\n"
                      "node2: node1\n" % ROOT_HOST)
    run = via_gateway("is-active", "demo", "node[2-3]", environment=env)
    assert run.rc == 2 and run.out == "", run
    assert run.err.startswith("svcctl: topology: Loop detected") and run.err.count("\n") == 1
