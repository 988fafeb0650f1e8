"""Integration: at home for clush and systemctl users, on the real cluster."""
import json
import subprocess

import pytest

from conftest import normalise, svcctl_argv


@pytest.fixture
def demo_on_odd(on_nodes):
    on_nodes("@odd", "systemctl start demo")
    on_nodes("@even", "systemctl stop demo")
    yield
    on_nodes("@all", "systemctl stop demo")


def test_hostfile_from_a_pipe(cluster, demo_on_odd):
    """`sinfo -N -h -o %N | svcctl ... --hostfile -`"""
    proc = subprocess.run(svcctl_argv() + ["is-active", "demo", "--hostfile", "-"],
                          input="node1\nnode3 node5\n", env=cluster, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "active (3): node[1,3,5]\n" in proc.stdout


def test_clush_node_options(svcctl, demo_on_odd):
    run = svcctl("-g", "odd", "-x", "node7", "is-active", "demo")
    assert run.rc == 0 and "active (3): node[1,3,5]\n" in run.out, run
    run = svcctl("-a", "-X", "even", "is-active", "demo", "--json")
    assert json.loads(run.out)["summary"] == {"ok": "node[1,3,5,7]"}
    run = svcctl("-s", "testcluster", "-g", "even", "is-active", "demo")
    assert run.rc == 3 and "inactive (4): node[2,4,6,8]\n" in run.out, run


def test_regroup_names_nodes_by_group(svcctl, demo_on_odd):
    run = svcctl("is-active", "demo,web", "@all", "-r")
    assert run.rc == 1, run
    # @odd and @web are the same nodes, neither typed: both are said
    assert normalise(run.out) == (
        "---------------\n@odd = @web (4)\n---------------\n"
        "demo.service: active\nweb.service: %s\n"
        "---------------\n@even (4)\n---------------\n"
        "demo.service: inactive\nweb.service: not found\n"
        "== is-active demo.service,web.service on 8 nodes in X s ==\n"
        "demo.service active (4): @odd = @web\ndemo.service inactive (4): @even\n"
        "web.service %s (4): @odd = @web\nnot-found (4): @even\n") % ((
            run.out.split("web.service: ")[1].split("\n")[0],) * 2)


def test_regroup_prefers_the_group_typed(svcctl, demo_on_odd):
    run = svcctl("is-active", "demo", "@web", "-r")
    assert run.rc == 0, run
    assert "---------------\n@web (4)\n---------------\n" in run.out
    assert "active (4): @web\n" in run.out


def test_line_mode_one_line_per_node_and_unit(svcctl, demo_on_odd):
    run = svcctl("is-active", "demo", "node[1-3],down1", "-L")
    assert run.rc == 4, run
    assert normalise(run.out) == (
        "down1: unreachable: Connection refused\n"
        "node1: demo.service: active\nnode2: demo.service: inactive\n"
        "node3: demo.service: active\n"
        "== is-active demo.service on 4 nodes in X s ==\n"
        "active (2): node[1,3]\ninactive (1): node2\nunreachable (1): down1\n")


def test_qq_is_silent_when_all_is_well(svcctl, demo_on_odd):
    """For cron: nothing at all on success, problems and summary otherwise,
    the exit code unchanged."""
    quiet = svcctl("is-active", "demo", "@odd", "-qq")
    assert quiet.rc == 0 and quiet.out == "" and quiet.err == "", quiet
    loud = svcctl("is-active", "demo", "@all", "-qq")
    assert loud.rc == 3, loud
    assert normalise(loud.out) == (
        "---------------\nnode[2,4,6,8] (4)\n---------------\ndemo.service: inactive\n"
        "== is-active demo.service on 8 nodes in X s ==\n"
        "active (4): node[1,3,5,7]\ninactive (4): node[2,4,6,8]\n")


def test_site_config_and_override_on_a_real_run(cluster, tmp_path, demo_on_odd):
    audit = tmp_path / "audit.log"
    conf = tmp_path / "svcctl.conf"
    conf.write_text("# the site's audit log, always on\nlog = %s\nfanout = 2\n" % audit)
    env = dict(cluster, SVCCTL_CONF=str(conf))
    proc = subprocess.run(svcctl_argv() + ["is-active", "demo", "@odd"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(audit.read_text().splitlines()) == 4
    other = tmp_path / "other.log"
    subprocess.run(svcctl_argv() + ["is-active", "demo", "@odd", "-O", "log=%s" % other],
                   env=env, capture_output=True, timeout=60)
    assert len(other.read_text().splitlines()) == 4
    assert len(audit.read_text().splitlines()) == 4


def test_the_morning_check(svcctl, on_nodes):
    """list-units --failed: the nodes with failed units, folded."""
    on_nodes("node[2,5]", "systemctl start demo-fail; true")
    try:
        run = svcctl("list-units", "--failed", "@all")
    finally:
        on_nodes("@all", "systemctl reset-failed")
    assert run.rc == 3, run
    assert normalise(run.out) == (
        "---------------\nnode[1,3-4,6-8] (6)\n---------------\n"
        "list-units: no units failed\n"
        "---------------\nnode[2,5] (2)\n---------------\n"
        "list-units: 1 unit failed\n  demo-fail.service: failed (failed)\n"
        "== list-units on 8 nodes in X s ==\n"
        "ok (6): node[1,3-4,6-8]\nnegative (2): node[2,5]\n")
    listed = svcctl("list-units", "demo*", "--state", "active", "node1")
    assert listed.rc == 0, listed


def test_show_folds_properties_and_shows_which_nodes_differ(svcctl, on_nodes):
    on_nodes("node3", "mkdir -p /run/systemd/system/demo.service.d && printf "
             "'[Service]\\nEnvironment=MODE=debug\\n' > "
             "/run/systemd/system/demo.service.d/debug.conf && systemctl daemon-reload")
    on_nodes("@all", "systemctl restart demo")
    try:
        run = svcctl("show", "demo", "@all", "-p", "ExecStart,Environment")
    finally:
        on_nodes("node3", "rm -rf /run/systemd/system/demo.service.d; systemctl "
                 "daemon-reload")
        on_nodes("@all", "systemctl stop demo")
    assert run.rc == 0, run
    groups = run.out.split("---------------\n")
    assert groups[1] == "node[1-2,4-8] (7)\n"
    assert groups[3] == "node3\n"
    assert "demo.service: Environment=MODE=debug\n" in groups[4]
    assert "demo.service: ExecStart={ path=/bin/sleep ; argv[]=/bin/sleep infinity ; " \
           "ignore_errors=no }\n" in groups[2]


def test_cat_diff_finds_the_edited_node(svcctl, on_nodes):
    on_nodes("node4", "mkdir -p /run/systemd/system/demo.service.d && printf "
             "'[Service]\\nNice=5\\n' > /run/systemd/system/demo.service.d/nice.conf "
             "&& systemctl daemon-reload")
    try:
        run = svcctl("cat", "demo", "@all", "--diff")
    finally:
        on_nodes("node4", "rm -rf /run/systemd/system/demo.service.d; systemctl "
                 "daemon-reload")
    assert run.rc == 3, run
    assert "drift (1): node4\n" in run.out and "ok (7): node[1-3,5-8]\n" in run.out
    node4 = run.out.split("---------------\nnode4\n---------------\n")[1]
    assert node4.startswith("demo.service: drift\n"
                            "  --- the most common version (node[1-3,5-8])\n"
                            "  +++ this version\n")
    assert "  +# /run/systemd/system/demo.service.d/nice.conf\n" in node4
    assert "  +Nice=5\n" in node4
