"""Integration: what really happened is reported, logged and replayed."""
import difflib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, normalise, restarted, svcctl_argv, wait_on_nodes

NODES = "node[1-4]"


@pytest.fixture
def reset(on_nodes):
    yield
    on_nodes("node[1-8]", "systemctl stop demo-crash demo-late demo-loop demo-reload "
             "demo-slowfail demo 2>/dev/null; systemctl reset-failed; true")


@pytest.mark.parametrize("action", ["restart", "reload-or-restart"])
def test_restarting_into_a_crash_is_failed(svcctl, reset, action):
    run = svcctl(action, "demo-crash", NODES, "--json")
    assert run.rc == 1, run
    assert json.loads(run.out)["counts"] == {"failed": 4}


def test_a_unit_that_dies_at_once_is_failed_on_a_busy_machine(svcctl, reset):
    """HPC nodes run at full load. With every core busy, the unit's process may
    not have run yet when systemctl returns (Type=simple is "started" once
    forked): 3 in 30 restarts were called changed before the state after was
    read a moment later."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(2 * os.cpu_count())]
    try:
        for _ in range(20):
            run = svcctl("restart", "demo-crash", "node[1-8]", "--json")
            assert json.loads(run.out)["counts"] == {"failed": 8}, run
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def test_a_unit_that_dies_later_is_caught_with_settle(svcctl, reset):
    """By default the state is read once, right after systemctl returns: a
    unit dying 1.5 s later still looks started. --settle watches it."""
    quick = svcctl("start", "demo-late", "node[1-2]")
    assert quick.rc == 0 and "changed (2): node[1-2]" in quick.out, quick
    svcctl("stop", "demo-late", "node[1-2]")
    watched = svcctl("start", "demo-late", "node[1-2]", "--settle", "4")
    assert watched.rc == 1, watched
    assert "demo-late.service: failed, now failed (failed), static\n" \
           "  the unit failed once started: result exit-code, main process exited " \
           "with status 2\n" in watched.out
    assert watched.elapsed < 10


def test_a_restart_loop_is_failed_with_settle(svcctl, reset):
    run = svcctl("start", "demo-loop", "node[1-2]", "--settle", "20")
    assert run.rc == 1, run
    assert "  the unit failed once started: " in run.out
    assert "failed (2): node[1-2]\n" in run.out
    assert run.elapsed < 12         # the watch ends as soon as the unit died


def test_settle_fails_a_loop_that_was_already_running(svcctl, reset, on_nodes):
    """start finds the looping unit running (nothing to do), --settle watches
    it restart: failed, every time (it read ok in 2 of 3 tries before). The
    loop is started by plain systemctl: svcctl's own start may already see it
    crash (it dies 0.3 s after each start, the grace is 0.25 s)."""
    for _ in range(10):
        on_nodes("node1", "systemctl start demo-loop")
        run = svcctl("start", "demo-loop", "node1", "--settle", "3", "--json")
        assert run.rc == 1, run
        unit = json.loads(run.out)["nodes"][0]["units"][0]
        assert unit["outcome"] == "failed", unit
        assert unit["message"].startswith("the unit failed once started: "), unit
        assert svcctl("stop", "demo-loop", "node1").rc == 0


def test_a_node_cut_short_after_its_last_action_is_timed_out(svcctl, reset):
    """start returns after 2.5 s, --settle 4.5 runs past -u 5: the state after
    is never read, so the unit (which dies 4 s after starting) is not called
    started: the node timed out, exit 4, with what was known."""
    run = svcctl("start", "demo-slowfail", "node[1-2]", "--settle", "4.5", "-u", "5",
                 "--json")
    assert run.rc == 4, run
    doc = json.loads(run.out)
    assert doc["counts"] == {"timeout": 2}
    message = doc["nodes"][0]["units"][0]["message"]
    assert message.startswith("timed out after 5 s; known before that: changed, "
                              "exit code 0, was inactive (dead)"), message


def test_reset_failed_with_nothing_to_reset_is_ok(svcctl, reset):
    run = svcctl("reset-failed", "demo-fail", "node[1-2]")
    assert run.rc == 0, run
    assert "ok (2): node[1-2]\n" in run.out
    assert svcctl("start", "demo-fail", "node[1-2]").rc == 1
    reset_now = svcctl("reset-failed", "demo-fail", "node[1-2]")
    assert reset_now.rc == 0 and "changed (2): node[1-2]\n" in reset_now.out, reset_now


def test_settle_on_healthy_units_waits_and_reports_changed(svcctl, reset):
    run = svcctl("restart", "demo", "node[1-2]", "--settle", "1.5")
    assert run.rc == 0 and "changed (2): node[1-2]" in run.out, run
    assert run.elapsed >= 1.5


def test_sudo_reaches_daemon_reload(svcctl):
    with_sudo = svcctl("--sudo", "-l", "ops", "daemon-reload", "node[1-2]")
    assert with_sudo.rc == 0, with_sudo
    assert "daemon-reload: done" in with_sudo.out
    without = svcctl("-l", "ops", "daemon-reload", "node[1-2]")
    assert without.rc == 1 and "denied" in without.out, without


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_during_the_pause_keeps_the_finished_batch(cluster, on_nodes, tmp_path,
                                                            sig, code):
    on_nodes("@all", "systemctl start demo-reload")
    log = tmp_path / "run.log"
    first_batch = restarted(cluster, "node[1-4]", "demo-reload")
    proc = subprocess.Popen(svcctl_argv() + ["restart", "demo-reload", "@all", "--batch",
                                             "4", "--batch-wait", "30", "--log", str(log)],
                            env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_on_nodes(cluster, "node[1-4]", "systemctl show -p InvocationID --value "
                  "demo-reload", first_batch)
    time.sleep(1)               # its replies read: the pause has begun
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    on_nodes("@all", "systemctl stop demo-reload; systemctl reset-failed")
    assert proc.returncode == code, out + err
    assert "changed (4): node[1-4]\nskipped (4): node[5-8]\n" in out
    assert "interrupted by %s ==" % signal.Signals(sig).name in out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 8 and {r["exit_code"] for r in records} == {code}
    assert "Traceback" not in err


# --- the log replays the run -------------------------------------------------

REPLAYED = [
    ("systemctl stop demo", ["start", "demo"]),
    ("systemctl start demo", ["stop", "demo"]),
    ("systemctl start demo", ["restart", "demo"]),
    ("systemctl start demo-reload", ["reload", "demo-reload"]),
    ("systemctl start demo", ["try-restart", "demo,demo-reload"]),
    ("true", ["reload-or-restart", "demo-reload"]),
    ("systemctl disable demo", ["enable", "demo", "--now"]),
    ("systemctl enable demo", ["disable", "demo"]),
    ("true", ["mask", "demo"]),
    ("systemctl mask demo", ["unmask", "demo"]),
    ("systemctl start demo-fail; true", ["reset-failed", "demo-fail"]),
    ("systemctl start demo", ["status", "demo,web,nosuch"]),
    ("systemctl start demo", ["status", "demo", "-v"]),
    ("true", ["is-active", "demo,web"]),
    ("true", ["is-enabled", "demo,demo-masked"]),
    ("true", ["is-failed", "demo-fail"]),
    ("true", ["daemon-reload"]),
    ("true", ["ping"]),
    ("systemctl stop demo", ["start", "demo-crash,demo-masked,demo"]),
]


def replay(svcctl, tmp_path, argv, verbose=()):
    log = tmp_path / "replay.log"
    live = svcctl(*argv + ["--log", str(log)])
    again = svcctl("report", str(log), *verbose)
    assert again.rc == 0, again
    assert normalise(again.out) == normalise(live.out), (live, again)
    return live


@pytest.mark.parametrize("setup,argv", REPLAYED, ids=[" ".join(a) for _, a in REPLAYED])
def test_the_log_replays_every_action_byte_for_byte(svcctl, on_nodes, tmp_path, reset,
                                                     setup, argv):
    on_nodes("node[1-3]", setup)
    try:
        live = replay(svcctl, tmp_path, argv + ["node[1-3],down1"],
                      ["-v"] if "-v" in argv else [])
    finally:
        on_nodes("node[1-3]", "systemctl unmask demo; systemctl disable --now demo "
                 "2>/dev/null; true")
    assert "down1" in live.out


def test_the_log_replays_a_cluster_file_status(svcctl, on_nodes, tmp_path):
    example = os.path.join(ROOT, "cluster.example.yaml")
    on_nodes("node[1-8]", "systemctl start demo@db; systemctl stop web; true")
    try:
        live = replay(svcctl, tmp_path, ["-c", example, "status"])
    finally:
        on_nodes("node[1-8]", "systemctl stop demo@db; true")
    assert "<- drift" in live.out and "db: demo@db.service on node[1-4]" in live.out


def test_the_log_replays_a_rolling_run(svcctl, tmp_path, reset):
    live = replay(svcctl, tmp_path, ["start", "demo-crash", "@all", "--batch", "2",
                                     "--max-fail", "1"])
    assert "svcctl: stopped after 2 failed nodes (--max-fail 1)" in live.out


def test_a_unit_that_dies_at_once_is_failed_with_why(svcctl, reset):
    """Failed, with the failing run's journal lines in the same round trip,
    folded: the same story on every node is one block; status of the failed
    unit brings them too; a healthy start none."""
    run = svcctl("start", "demo-crash", NODES, "--journal", "3")
    assert run.rc == 1, run
    assert normalise(run.out) == (
        "---------------\nnode[1-4] (4)\n---------------\n"
        "demo-crash.service: failed, now failed (failed), static\n"
        "  the unit failed once started: result exit-code, main process exited with "
        "status 1\n"
        "  journal of that run:\n"
        "    systemd: Started demo-crash.service - svcctl demo, dies at once.\n"
        "    systemd: demo-crash.service: Main process exited, code=exited, "
        "status=1/FAILURE\n"
        "    systemd: demo-crash.service: Failed with result 'exit-code'.\n"
        "== start demo-crash.service on 4 nodes in X s ==\nfailed (4): node[1-4]\n")
    status = svcctl("status", "demo-crash", NODES, "--json")
    units = [node["units"][0] for node in json.loads(status.out)["nodes"]]
    assert {unit["journal"] for unit in units} == {
        "systemd: Started demo-crash.service - svcctl demo, dies at once.\n"
        "systemd: demo-crash.service: Main process exited, code=exited, status=1/FAILURE\n"
        "systemd: demo-crash.service: Failed with result 'exit-code'."}
    healthy = svcctl("start", "demo", NODES, "--json")
    assert all(node["units"][0]["journal"] is None
               for node in json.loads(healthy.out)["nodes"])


def test_journal_folds_the_same_story_and_compares(svcctl, reset):
    """svcctl journal: 4 nodes that failed alike are one block; --compare
    with a node where the unit ran fine puts first what only they say."""
    since = "@%d" % (time.time() - 1)      # what earlier tests logged is left out
    assert svcctl("start", "demo-crash", "node[1-3]").rc == 1
    assert svcctl("start", "demo", "node4").rc == 0
    run = svcctl("journal", "demo-crash", "node[1-3]", "--lines", "2", "--boot")
    assert run.rc == 0, run
    assert normalise(run.out) == (
        "---------------\nnode[1-3] (3)\n---------------\ndemo-crash.service: ok\n"
        "  demo-crash.service: Main process exited, code=exited, status=1/FAILURE\n"
        "  demo-crash.service: Failed with result 'exit-code'.\n"
        "== journal demo-crash.service on 3 nodes in X s ==\nok (3): node[1-3]\n")
    masked = svcctl("journal", "demo-crash", "node[1-3]", "--lines", "1", "--mask",
                    "--grep", "status=")
    assert "code=exited, status=<N>/FAILURE\n" in masked.out, masked
    compared = svcctl("journal", "demo-crash,demo", "node[1-3]", "--compare", "node4",
                      "--lines", "20", "--since", since, "--json")
    units = {(n["node"], u["unit"]): u["message"] for n in json.loads(compared.out)["nodes"]
             for u in n["units"]}
    assert units["node1", "demo-crash.service"].startswith("only here, not on node4:\n")
    assert "Failed with result 'exit-code'." in \
        units["node1", "demo-crash.service"].split("also on node4:")[0]


def test_a_loop_brings_its_last_run_only(svcctl, reset):
    """Caught by --settle while it reads active again: its journal comes all
    the same, of its current run only."""
    run = svcctl("start", "demo-loop", "node1", "--settle", "3", "--json")
    assert run.rc == 1, run
    journal = json.loads(run.out)["nodes"][0]["units"][0]["journal"]
    assert journal is not None and "demo-loop.service" in journal, run.out
    assert journal.count("Started demo-loop.service") <= 1, journal


STORY = ("    systemd: Starting demo-config.service - svcctl demo, refuses its "
         "configuration...\n"
         "    systemd: demo-config.service: Main process exited, code=exited, "
         "status=78/CONFIG\n"
         "    systemd: demo-config.service: Failed with result 'exit-code'.\n"
         "    systemd: Failed to start demo-config.service - svcctl demo, refuses its "
         "configuration.\n")


@pytest.mark.parametrize("attempt", range(3))
def test_two_stories_fold_into_two_blocks(svcctl, on_nodes, attempt):
    """A daemon that refuses its configuration on 8 nodes, and cannot bind
    its port on two of them: two blocks, each line once. Its own last line
    lost the race with PID 1's "Main process exited" on some nodes and lost
    its invocation id on others (journald reads it from a cgroup already
    gone): neither may split a story (it did, 3 ways, before). Three times:
    the race is a matter of luck."""
    try:
        run = svcctl("start", "demo-config", "node[1-8]")
        assert run.rc == 1, run
        head = "demo-config.service: failed, now failed (failed), static\n" \
               "  Job for demo-config.service failed because the control process " \
               "exited with error code.\n  See \"systemctl status demo-config.service\" " \
               "and \"journalctl -xeu demo-config.service\" for details.\n" \
               "  journal of that run:\n"
        assert normalise(run.out) == (
            "---------------\nnode[1-6] (6)\n---------------\n" + head +
            "    /etc/demo.conf line 12: unknown key SlurmctldHost2\n" + STORY +
            "---------------\nnode[7-8] (2)\n---------------\n" + head +
            "    cannot bind 0.0.0.0:6817: Address already in use\n" + STORY +
            "== start demo-config.service on 8 nodes in X s ==\nfailed (8): node[1-8]\n")
    finally:
        on_nodes("node[1-8]", "systemctl reset-failed demo-config; true")


def test_journal_reads_as_journalctl_users_type_it(svcctl, on_nodes):
    """-p err and -n N as journalctl takes them; -L per node; --raw keeps
    times and hosts (so nothing folds)."""
    since = "@%d" % (time.time() - 1)
    try:
        assert svcctl("start", "demo-config", "node[1-2,7]").rc == 1
        errors = svcctl("journal", "demo-config", "node[1-2,7]", "-p", "err", "-n", "1",
                        "--since", since)
        assert normalise(errors.out) == (
            "---------------\nnode[1-2,7] (3)\n---------------\ndemo-config.service: ok\n"
            "  Failed to start demo-config.service - svcctl demo, refuses its "
            "configuration.\n== journal demo-config.service on 3 nodes in X s ==\n"
            "ok (3): node[1-2,7]\n"), errors
        lines = svcctl("journal", "demo-config", "node[1,7]", "-L", "--grep", "line 12|bind",
                       "-n", "1")
        assert lines.out.splitlines()[:4] == [
            "node1: demo-config.service: ok",
            "node1:   /etc/demo.conf line 12: unknown key SlurmctldHost2",
            "node7: demo-config.service: ok",
            "node7:   cannot bind 0.0.0.0:6817: Address already in use"], lines
        raw = svcctl("journal", "demo-config", "node[1-2]", "--raw", "-n", "1",
                     "--since", since)
        assert raw.rc == 0 and " node1 systemd[1]: Failed to start demo-config" in raw.out
        assert " node2 systemd[1]: Failed to start demo-config" in raw.out, raw
    finally:
        on_nodes("node[1-2,7]", "systemctl reset-failed demo-config; true")


def test_a_noisy_failure_folds_within_its_bounds(svcctl, on_nodes):
    """1,000 lines, then exit 1, on two nodes: --journal keeps the last N
    lines of that run (then systemd's), the same on both nodes, one block; journal --lines
    1010 reads them all (with systemd's own) and they fold too. (The unit
    waits before its first line: PID 1's "Started" line and the unit's
    first reach journald on two sockets, in either order under load.)"""
    noisy = "svcctl-noisy"
    since = "@%d" % (time.time() - 1)      # an earlier run's lines left out
    on_nodes("node[1-2]", "systemd-run --unit=%s --quiet sh -c 'sleep 1; for i in $(seq 1000); "
             "do echo line $i of a long story; done; sleep 1; exit 1'; sleep 3" % noisy)
    try:
        status = svcctl("status", noisy, "node[1-2]", "--journal", "20")
        assert status.rc == 3, status
        assert "---------------\nnode[1-2] (2)\n---------------\n" in status.out
        lines = status.out.split("  journal of that run:\n")[1].split("\n==")[0]
        own = [line for line in lines.split("\n") if "systemd: " not in line]
        assert own == ["    line %d of a long story" % i for i in range(981, 1001)], lines
        read = svcctl("journal", noisy, "node[1-2]", "--lines", "1010", "--since", since)
        assert read.rc == 0 and read.out.count("\n  line ") == 1000, "\n".join(
            difflib.unified_diff(*(block.split("\n") for block in read.out.split(
                "---------------\n")[2::2][:2]), lineterm=""))
        assert read.out.startswith("---------------\nnode[1-2] (2)\n"), read.out[:200]
    finally:
        on_nodes("node[1-2]", "systemctl reset-failed %s; true" % noisy)



def test_a_journal_the_login_user_cannot_read_is_said_per_node(svcctl, on_nodes):
    """nosudo is neither root nor in systemd-journal: its read of the system
    journal is refused, or, where it has its own user journal, sees only
    that (journalctl then says nothing of the rest: "no entries"). Said on
    each node, never an error of the run; the failed unit stays failed, and
    none of its lines leak."""
    try:
        assert svcctl("start", "demo-config", "node[1-2]").rc == 1
        read = svcctl("-l", "nosudo", "journal", "demo-config", "node[1-2]", "--json")
        assert read.rc in (0, 3), read
        for node in json.loads(read.out)["nodes"]:
            unit = node["units"][0]
            assert unit["outcome"] in ("negative", "ok"), read.out
            said = unit["answer"] + unit["message"]
            assert "journal not read: no permission" in said or \
                "journal partly read: only this user's lines" in said or \
                said == "no entries", read.out
            assert "unknown key" not in said
        status = svcctl("-l", "nosudo", "status", "demo-config", "node[1-2]", "--json")
        assert status.rc == 3, status
        for node in json.loads(status.out)["nodes"]:
            unit = node["units"][0]
            assert unit["outcome"] == "negative" and "unknown key" not in unit["journal"]
            assert "journal not read" in unit["journal"] or \
                "journal partly read" in unit["journal"] or "no entries" in unit["journal"], \
                status.out
    finally:
        on_nodes("node[1-2]", "systemctl reset-failed demo-config; true")
