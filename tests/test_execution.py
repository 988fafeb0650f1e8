"""The execution layer's event handler, fed events directly: it tolerates
keys it did not ask for, and bounds what one node may send."""
import pytest

import svcctl


class Worker:
    SNAME_STDOUT = "stdout"
    SNAME_STDERR = "stderr"

    def __init__(self, timed_out=()):
        self.timed_out = list(timed_out)

    def iter_keys_timeout(self):
        return iter(self.timed_out)

    def _engine_clients(self):
        return []


def collector(nodes=("node1",), cap=(1000, 10)):
    raw = {node: svcctl.RawResult() for node in nodes}
    done = []
    handler = svcctl._Collector(raw, {node: cap for node in nodes},
                                lambda node, result: done.append(node), svcctl.Signals(),
                                svcctl.Observer())
    return handler, raw, done


def test_events_for_keys_not_asked_for_are_ignored():
    """Tree mode: ClusterShell reports a gateway's own stderr, or a lying
    gateway any name, as a node: never a KeyError, never a result."""
    handler, raw, done = collector()
    worker = Worker(timed_out=["gw1", "node1"])
    handler.ev_pickup(worker, "gw1")
    handler.ev_read(worker, "gw1", "stderr", b"ssh: connect to host gw1: refused")
    handler.ev_read(worker, "evil1", "stdout", b"x")
    handler.ev_hup(worker, "gw1", 255)
    handler.ev_close(worker, True)
    assert set(raw) == {"node1"} and done == []
    assert raw["node1"].timed_out and raw["node1"].stdout == []


def test_a_second_hup_is_ignored():
    handler, raw, done = collector()
    handler.ev_hup(Worker(), "node1", 0)
    handler.ev_hup(Worker(), "node1", 76)
    assert raw["node1"].rc == 0 and done == ["node1"]


def test_a_node_past_its_caps_is_cut_off():
    for lines, size in ((11, 5), (2, 600)):
        handler, raw, done = collector()
        for _ in range(lines):
            handler.ev_read(Worker(), "node1", "stdout", b"y" * size)
        assert raw["node1"].too_large.startswith("more than 1000 bytes or 10 lines")
        handler.ev_hup(Worker(), "node1", 0)
        assert done == []           # a node cut off is never read as a reply
        reply = svcctl.read_reply(svcctl.Protocol(svcctl.ACTIONS["start"]), "node1",
                                  raw["node1"], [svcctl.Step("demo.service")])
        assert reply.outcome == "error" and reply.reason.startswith("reply too large")


def test_stderr_counts_toward_the_cap():
    handler, raw, _ = collector()
    for _ in range(11):
        handler.ev_read(Worker(), "node1", "stderr", b"e")
    assert raw["node1"].too_large and len(raw["node1"].stderr) == 10


def test_a_stop_from_another_thread_ends_the_task_at_its_next_timer():
    """signals.stop() only records; the run's thread acts on it at the timer,
    and only while the task may be interrupted."""
    handler, _, _ = collector()
    handler.signals.stop()
    handler.ev_timer(None)                  # not running the task: nothing raised
    handler.signals.raising = True
    with pytest.raises(svcctl.Interrupted) as caught:
        handler.ev_timer(None)
    assert caught.value.signame == "SIGINT" and not handler.signals.raising


def test_the_plan_driver_tells_the_observer_in_order(monkeypatch):
    """start() with ClusterShell's execution replaced by a stub (framing.py):
    batches, the observer's calls, the final report and the cache cleared."""
    from framing import ACTIVE, INACTIVE, stub_nodes
    stub_nodes(monkeypatch, lambda marker, command: [
        "%s state before %s" % (marker, " ".join(t.decode() for t in INACTIVE)),
        "%s unit demo.service" % marker, "%s rc 0" % marker,
        "%s state after %s" % (marker, " ".join(t.decode() for t in ACTIVE))])
    events = []

    class Recorder(svcctl.Observer):
        def wave_started(self, wave):
            events.append(("wave", wave.number, wave.total))

        def node_done(self, result):
            events.append(("node", result.node, result.outcome))

        def between_waves(self, so_far):
            report, pending = so_far()
            events.append(("so far", str(svcctl.fold(r.node for r in report.nodes)),
                           len(pending)))

        def run_ended(self, report):
            events.append(("end", report.exit_code()))
    request = svcctl.prepare(["start", "demo", "n[1-4]", "--batch", "2"])
    report = svcctl.start(request, Recorder())
    assert str(report.outcomes["changed"]) == "n[1-4]"
    assert events == [("wave", 1, 2), ("node", "n1", "changed"), ("node", "n2", "changed"),
                      ("so far", "n[1-2]", 2), ("wave", 2, 2), ("node", "n3", "changed"),
                      ("node", "n4", "changed"), ("end", 0)]
    assert svcctl._judged_reply.cache_info().currsize == 0
