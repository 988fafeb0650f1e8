"""Integration: the Python API (prepare -> start -> document) that the CLI and
the console stand on, driven in-process from a thread other than the main
one, against the real cluster."""
import os
import pathlib
import subprocess
import tempfile
import threading
import time

import pytest

import svcctl
from conftest import wait_on_nodes


class Recorder(svcctl.Observer):
    """Everything a front end is told, in order."""

    def __init__(self):
        self.events = []
        self.ended = "not called"

    def wave_started(self, wave):
        self.events.append(("wave", wave.number))

    def node_done(self, result):
        self.events.append(("node", result.node, result.outcome))

    def wave_ended(self, wave, results):
        self.events.append(("wave ended", wave.number, len(results)))

    def between_waves(self, so_far):
        report, pending = so_far()
        self.events.append(("so far", len(report.nodes), len(pending)))

    def run_ended(self, report):
        self.ended = report


@pytest.fixture
def api(cluster, monkeypatch, on_nodes):
    """The cluster's environment in this process; demo and demo-slow stopped,
    nothing failed, before and after."""
    for key in ("CLUSTERSHELL_CFGDIR", "NO_COLOR"):
        monkeypatch.setenv(key, cluster[key])
    on_nodes("node[1-8]", "systemctl stop demo demo-slow; systemctl reset-failed")
    yield
    # a stopped run's unit may be left failed (its start was cut off)
    on_nodes("node[1-8]", "systemctl stop demo demo-slow; systemctl reset-failed")


def in_thread(request, observer=None, signals=None):
    box = {}

    def target():
        box["report"] = svcctl.start(request, observer, signals)
    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def ssh_children():
    out = subprocess.run(["pgrep", "-P", str(os.getpid()), "ssh"], capture_output=True,
                         text=True).stdout
    return out.split()


def test_a_run_from_a_thread_tells_its_observer_node_by_node(api):
    request = svcctl.prepare(["start", "demo", "node[1-4]", "--batch", "2"])
    recorder = Recorder()
    thread, box = in_thread(request, recorder)
    thread.join(60)
    report = box["report"]
    assert recorder.ended is report
    assert report.exit_code() == 0 and str(report.outcomes["changed"]) == "node[1-4]"
    nodes = sorted(event[1] for event in recorder.events if event[0] == "node")
    assert nodes == ["node1", "node2", "node3", "node4"]
    assert [e for e in recorder.events if e[0] != "node"] == [
        ("wave", 1), ("wave ended", 1, 2), ("so far", 2, 2), ("wave", 2),
        ("wave ended", 2, 2)]
    doc = svcctl.document(report)
    assert doc["counts"] == {"changed": 4} and len(doc["nodes"]) == 4


def test_a_stop_from_another_thread_ends_the_run_as_ctrl_c_does(api):
    request = svcctl.prepare(["start", "demo-slow", "node[1-4]"])
    signals = svcctl.Signals()
    thread, box = in_thread(request, None, signals)
    wait_on_nodes(os.environ, "node[1-4]", "systemctl is-active demo-slow",
                  lambda states: states == ["activating"] * 4)
    stopped = time.monotonic()
    signals.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - stopped < 3
    report = box["report"]
    assert report.interrupted_by == "SIGINT" and report.exit_code() == 130
    assert str(report.outcomes["interrupted"]) == "node[1-4]"
    assert ssh_children() == []


def test_a_stop_during_the_pause_skips_the_later_batches(api):
    request = svcctl.prepare(["start", "demo", "node[1-4]", "--batch", "2",
                              "--batch-wait", "20"])
    signals = svcctl.Signals()
    recorder = Recorder()
    thread, box = in_thread(request, recorder, signals)
    deadline = time.monotonic() + 30
    while ("wave ended", 1, 2) not in recorder.events and time.monotonic() < deadline:
        time.sleep(0.1)         # the first batch reported: the pause has begun
    signals.stop()
    thread.join(10)
    report = box["report"]
    assert str(report.outcomes["changed"]) == "node[1-2]"
    assert str(report.outcomes["skipped"]) == "node[3-4]"


def test_start_keeps_persist(api, monkeypatch):
    """--persist made its ssh sockets when main() ran, not when another
    caller did: start() itself makes them now."""
    runtime = pathlib.Path(tempfile.mkdtemp(dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    request = svcctl.prepare(["is-active", "demo", "node[1-2]", "--persist",
                              "--persist-for", "5"])
    assert not (runtime / "svcctl").exists()        # prepare creates nothing
    report = svcctl.start(request)
    assert report.exit_code() == 3
    assert len(os.listdir(runtime / "svcctl")) == 2


def test_prepare_raises_one_line_with_exit_code_2():
    with pytest.raises(svcctl.UsageError) as bad:
        svcctl.prepare(["start", "demo;reboot", "node1"])
    assert str(bad.value) == "invalid unit name: demo;reboot"
    assert bad.value.exit_code == 2
    for words in (["report", "/tmp/x.log"], ["-c", "cluster.example.yaml",
                                               "--check-config"], []):
        with pytest.raises(svcctl.UsageError):
            svcctl.prepare(words)
