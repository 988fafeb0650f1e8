"""The result log and the report files: written safely by root, read back
with suspicion. A second, unprivileged local user plays the attacker."""
import io
import json
import os
import pathlib
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest
from hypothesis import given, settings, strategies as st

import svcctl
from framing import ACTIVE, INACTIVE, MARKER, end, frame

ATTACKER = "svcctl-attacker"


@pytest.fixture(scope="module")
def attacker():
    """(uid, gid) of a local user who is not root, created if need be, and
    removed afterwards if it was created here."""
    if os.geteuid() != 0:
        pytest.skip("needs root to play two users")
    created = False
    try:
        entry = pwd.getpwnam(ATTACKER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", ATTACKER], check=True)
        entry, created = pwd.getpwnam(ATTACKER), True
    yield entry.pw_uid, entry.pw_gid
    if created:
        subprocess.run(["userdel", ATTACKER], check=False)


def as_user(user, function, *args):
    """Run function(*args) in a child process as `user` (uid, gid)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(user[1])
            os.setuid(user[0])
            function(*args)
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0, "the attacker's step failed"


@pytest.fixture
def shared():
    """A world-writable sticky directory, like /tmp."""
    directory = pathlib.Path(tempfile.mkdtemp(dir="/tmp"))
    directory.chmod(0o1777)
    yield directory
    shutil.rmtree(str(directory))


def a_report():
    protocol = svcctl.Protocol(svcctl.ACTIONS["start"], MARKER)
    raw = svcctl.RawResult(stdout=frame("demo.service", INACTIVE, ACTIVE) + end(), rc=0)
    node = svcctl.read_reply(protocol, "node1", raw, [svcctl.Step("demo.service")])
    return svcctl.Report("start", ["demo.service"], [node], 0, 1.0, run_id="abcdef012345",
                         command="svcctl start demo node1", user="root")


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "shadow"
    path.write_text("root's secret\n")
    path.chmod(0o600)
    return path


def test_log_through_a_planted_symlink_is_refused(attacker, shared, victim):
    log = shared / "svcctl.log"
    as_user(attacker, os.symlink, str(victim), str(log))
    with pytest.raises(svcctl.OutputError) as err:
        svcctl.append_log(str(log), svcctl.log_lines(a_report()))
    assert str(err.value) == "it is a symbolic link"
    assert victim.read_text() == "root's secret\n"


def test_log_owned_by_another_user_is_refused(attacker, shared):
    log = shared / "svcctl.log"
    as_user(attacker, lambda: open(str(log), "w").close())
    with pytest.raises(svcctl.OutputError) as err:
        svcctl.append_log(str(log), b"x\n")
    assert "owned by uid %d" % attacker[0] in str(err.value)
    assert log.read_text() == ""


def test_log_writable_by_others_is_refused(tmp_path):
    log = tmp_path / "svcctl.log"
    log.write_text("")
    log.chmod(0o666)
    with pytest.raises(svcctl.OutputError) as err:
        svcctl.append_log(str(log), b"x\n")
    assert "writable by group or others (mode 0666)" in str(err.value)


def test_log_with_another_hard_link_is_refused(tmp_path, victim):
    log = tmp_path / "svcctl.log"
    os.link(str(victim), str(log))
    with pytest.raises(svcctl.OutputError):
        svcctl.append_log(str(log), b"x\n")
    assert victim.read_text() == "root's secret\n"


def test_log_that_is_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "svcctl.log"
    os.mkfifo(str(fifo))
    with pytest.raises((OSError, svcctl.OutputError)):
        svcctl.append_log(str(fifo), b"x\n")


def test_a_page_is_as_private_as_the_log(tmp_path):
    """The page carries the log's text (systemctl's output with -v)."""
    page = tmp_path / "report.html"
    umask = os.umask(0o022)
    try:
        svcctl.write_file(str(page), "<p>x</p>")
        assert stat.S_IMODE(page.stat().st_mode) == 0o600
        page.chmod(0o644)       # replaced whole: a served copy is a deliberate step
        svcctl.write_file(str(page), "<p>y</p>")
        assert stat.S_IMODE(page.stat().st_mode) == 0o600
    finally:
        os.umask(umask)


def test_new_log_is_private(tmp_path):
    log = tmp_path / "svcctl.log"
    svcctl.append_log(str(log), svcctl.log_lines(a_report()))
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    svcctl.append_log(str(log), svcctl.log_lines(a_report()))
    assert len(log.read_text().splitlines()) == 2


def test_html_over_a_planted_symlink_is_refused(attacker, shared, victim):
    page = shared / "report.html"
    as_user(attacker, os.symlink, str(victim), str(page))
    with pytest.raises(svcctl.OutputError) as err:
        svcctl.write_file(str(page), svcctl.render_html(a_report()))
    assert str(err.value) == "not a regular file (a symbolic link)"
    assert victim.read_text() == "root's secret\n" and page.is_symlink()
    assert sorted(p.name for p in shared.iterdir()) == ["report.html"]


@pytest.mark.parametrize("target", ["/dev/null", "/dev/stdout"])
def test_html_never_replaces_a_device(target):
    """`--html /dev/null` from cron once made /dev/null a regular file."""
    before = os.lstat(target)
    with pytest.raises(svcctl.OutputError):
        svcctl.write_file(target, "<html>")
    assert os.lstat(target).st_mode == before.st_mode


def test_html_replaces_its_own_report(tmp_path):
    page = tmp_path / "report.html"
    svcctl.write_file(str(page), "first")
    svcctl.write_file(str(page), "second")
    assert page.read_text() == "second" and [p.name for p in tmp_path.iterdir()] == \
        ["report.html"]


def test_html_temporary_name_cannot_be_guessed(attacker, shared, victim):
    """The old temporary name was PATH.PID.tmp: plant links on all of them."""
    page = shared / "report.html"
    for pid in range(os.getpid() - 5, os.getpid() + 50):
        as_user(attacker, os.symlink, str(victim), "%s.%d.tmp" % (page, pid))
    svcctl.write_file(str(page), "new report")
    assert victim.read_text() == "root's secret\n" and page.read_text() == "new report"


@pytest.mark.parametrize("plant", ["directory", "symlink", "dangling", "file"])
def test_persist_directory_is_never_another_users(attacker, tmp_path, monkeypatch, plant):
    """From cron there is no XDG_RUNTIME_DIR: /tmp/svcctl-UID is taken when
    it is ours, and passed over (never followed, never chmodded) when not."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    target = tmp_path / "target"
    target.mkdir()
    target.chmod(0o755)
    place = "/tmp/svcctl-%d" % os.getuid()
    subprocess.run(["rm", "-rf", place], check=True)
    make = {"directory": lambda: os.mkdir(place, 0o777),
            "symlink": lambda: os.symlink(str(target), place),
            "dangling": lambda: os.symlink(str(tmp_path / "none"), place),
            "file": lambda: open(place, "w").close()}[plant]
    as_user(attacker, make)
    home = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".svcctl-sockets")
    try:
        options = svcctl.persist_options(600)
        assert "-oControlPath=%s/%%C" % home in options
        assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
        assert stat.S_IMODE(target.stat().st_mode) == 0o755
        assert os.lstat(place).st_uid == attacker[0]
    finally:
        subprocess.run(["rm", "-rf", place], check=True)


def test_persist_directory_is_made_private(monkeypatch):
    runtime = tempfile.mkdtemp(dir="/tmp")          # 0700, ours
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    try:
        options = svcctl.persist_options(60)
        assert "-oControlPath=%s/svcctl/%%C" % runtime in options
        assert stat.S_IMODE(os.stat(os.path.join(runtime, "svcctl")).st_mode) == 0o700
    finally:
        shutil.rmtree(runtime)


@pytest.mark.parametrize("runtime", ["shared", "attacker's", "/tmp/x -oProxyCommand=y",
                                     "/tmp/q'x", "relative"])
def test_persist_ignores_a_runtime_dir_that_is_not_really_ours(attacker, shared,
                                                               monkeypatch, runtime):
    """`su` without `-` leaves another user's XDG_RUNTIME_DIR; a crafted one
    could carry ssh options or quotes."""
    if runtime == "shared":
        runtime = str(shared)
    elif runtime == "attacker's":
        runtime = str(shared / "run")
        as_user(attacker, os.mkdir, runtime, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    assert all(not place.startswith(runtime) for place in svcctl.control_directories())


# --- reading a log back ------------------------------------------------------

def write_log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def logged(**change):
    record = json.loads(svcctl.log_lines(a_report()).splitlines()[0])
    record.update(change)
    return record


@pytest.mark.parametrize("change,reason", [
    ({"node": "-oProxyCommand=x"}, "invalid node name"),
    ({"node": "@x';touch /tmp/pwned;'"}, "invalid node name"),
    ({"unit": "a;b"}, "invalid unit name"),
    ({"outcome": "great"}, "unknown outcome"),
    ({"action": "format-disk"}, "unknown action"),
    ({"rc": 99999}, "bad rc"),
    ({"before": {"LoadState": 3}}, "bad unit state"),
    ({"run_id": "../x"}, "not an svcctl log line (no run_id)"),
    ({"interrupted_by": "SIGKILL"}, "bad interrupted_by"),
])
def test_a_damaged_line_is_named_and_skipped(tmp_path, change, reason):
    log = tmp_path / "svcctl.log"
    write_log(log, [logged(node="node2"), logged(**change)])
    report, skipped = svcctl.report_from_log(str(log))
    assert [r.node for r in report.nodes] == ["node2"]
    assert len(skipped) == 1 and skipped[0].startswith("%s:2: skipped: " % log)
    assert reason in skipped[0]


def test_report_prints_nothing_raw_from_a_forged_log(tmp_path):
    log = tmp_path / "svcctl.log"
    write_log(log, [logged(message="\x1b]0;owned\x07\x1b[2J\u202eevil", command="\x1b[31m",
                           outcome="failed", after=None)])
    out, err = io.StringIO(), io.StringIO()
    code = svcctl.main(["report", str(log), "-v"], out, err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b]0;owned\\x07" in text and "\\u202eevil" in text


def test_report_exit_code_says_lines_were_skipped(tmp_path):
    log = tmp_path / "svcctl.log"
    write_log(log, [logged(), {"not": "ours"}])
    out, err = io.StringIO(), io.StringIO()
    assert svcctl.main(["report", str(log)], out, err) == 1
    assert err.getvalue() == "svcctl: %s:2: skipped: not an svcctl log line (no " \
                             "run_id)\n" % log
    assert "node1" in out.getvalue()
    empty = tmp_path / "empty.log"
    empty.write_text("garbage\n")
    assert svcctl.main(["report", str(empty)], io.StringIO(), io.StringIO()) == 2
    for odd in ("/dev/zero", str(tmp_path)):
        err = io.StringIO()
        assert svcctl.main(["report", odd], io.StringIO(), err) == 2
        assert err.getvalue().count("\n") == 1


def test_report_of_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "log"
    os.mkfifo(str(fifo))
    err = io.StringIO()
    assert svcctl.main(["report", str(fifo)], io.StringIO(), err) == 2
    assert "not a regular file" in err.getvalue()


def test_report_reads_only_the_run_it_shows(tmp_path):
    log = tmp_path / "svcctl.log"
    write_log(log, [logged(run_id="run%03d" % i, node="node%d" % i) for i in range(300)])
    report, skipped = svcctl.report_from_log(str(log))
    assert report.run_id == "run299" and [r.node for r in report.nodes] == ["node299"]
    report, _ = svcctl.report_from_log(str(log), "run007")
    assert [r.node for r in report.nodes] == ["node7"]
    with pytest.raises(svcctl.UsageError):
        svcctl.report_from_log(str(log), "nosuch")


# --- history -----------------------------------------------------------------

def history_of(tmp_path, records, *argv):
    log = tmp_path / "svcctl.log"
    write_log(log, records)
    out, err = io.StringIO(), io.StringIO()
    code = svcctl.main(["report", str(log), "--history"] + list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def run_of(run_id, when, outcomes, **change):
    """A run's log records: outcomes per node, e.g. {"node1": "ok"}."""
    return [logged(run_id=run_id, time=when, node=node, outcome=outcome,
                   message="went %s" % outcome, **change)
            for node, outcome in outcomes.items()]


def test_history_says_since_when_a_node_says_no(tmp_path):
    """A query's "no" (is-active from cron) and drift are what a history is for."""
    records = run_of("r1", "2026-11-20T00:00:00+00:00", {"node1": "ok", "node2": "ok"}) \
        + run_of("r2", "2026-11-21T00:00:00+00:00", {"node1": "ok", "node2": "negative"}) \
        + run_of("r3", "2026-11-22T00:00:00+00:00", {"node1": "ok", "node2": "negative"})
    code, out, err = history_of(tmp_path, records)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("== history of ") and "3 runs" in lines[0]
    assert lines[1:] == ["node2  \u2713\u2212\u2212  negative since 2026-11-21T00:00:00+00:00 "
                         "(run r2, start demo.service by root)"]
    code, out, _ = history_of(tmp_path, records, "-v")
    assert "node1  \u2713\u2713\u2713" in out


def test_history_opens_a_run_at_its_first_good_line_and_says_what_it_skipped(tmp_path):
    bad = logged(run_id="r2", time="2026-11-21T00:00:00+00:00", node="node1", rc=256)
    records = run_of("r1", "2026-11-20T00:00:00+00:00", {"node1": "ok", "node3": "ok"}) \
        + [bad] + run_of("r2", "2026-11-21T00:00:00+00:00", {"node3": "failed"})
    code, out, err = history_of(tmp_path, records)
    assert code == 1
    assert err == "svcctl: %s/svcctl.log:3: skipped: bad rc\n" % tmp_path
    assert "2 runs" in out and "node3  \u2713\u2717  failed since" in out


def test_history_keeps_the_message_of_the_worst_unit(tmp_path):
    records = [logged(run_id="r1", node="node1", unit="a.service", outcome="not-found",
                      message="no a"),
               logged(run_id="r1", node="node1", unit="b.service", outcome="failed",
                      message="b broke")]
    write_log(tmp_path / "l", records)
    history, _ = svcctl.read_history(str(tmp_path / "l"))
    assert history.messages[("node1", 0)] == "b.service: failed: b broke"


def test_history_reads_each_line_as_json_whatever_its_spacing(tmp_path):
    """The history found run, node and outcome by matching text, which held
    only for json.dumps' default separators and for a key not nested before
    the real one: a compact log (as jq -c writes it) was all skipped, and a
    state carrying a "node" key named a node that was not in the run."""
    records = run_of("r1", "2026-11-20T00:00:00+00:00", {"node1": "ok", "node2": "failed"}) \
        + run_of("r2", "2026-11-21T00:00:00+00:00", {"node1": "ok", "node2": "ok"})
    write_log(tmp_path / "plain", records)
    (tmp_path / "compact").write_text("".join(
        json.dumps(dict(r, before={"node": "ghost", "outcome": "failed"}),
                   separators=(",", ":"), sort_keys=True) + "\n" for r in records))
    plain, skipped = svcctl.read_history(str(tmp_path / "plain"))
    compact, skipped_compact = svcctl.read_history(str(tmp_path / "compact"))
    assert skipped.count == skipped_compact.count == 0
    assert compact.nodes == plain.nodes == ["node1", "node2"]
    assert (compact.runs, compact.cells, compact.messages) == \
        (plain.runs, plain.cells, plain.messages)


def test_a_run_replays_from_a_log_whatever_its_spacing(tmp_path):
    """report LOG (the last run) and --run ID found the run by text that held
    only for json.dumps' default separators: a compact log was "no svcctl run
    in this log". The filter tolerates any spacing; the parsed run_id decides
    (a forged nested run_id key picks no line of another run)."""
    records = run_of("r1", "2026-11-20T00:00:00+00:00", {"node1": "ok", "node2": "failed"}) \
        + run_of("r2", "2026-11-21T00:00:00+00:00", {"node1": "ok", "node2": "ok"})
    write_log(tmp_path / "plain", records)
    forged = dict(records[0], before={"run_id": "r2"})
    (tmp_path / "compact").write_text("".join(
        json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n"
        for r in records[:1] + [forged] + records[1:]))
    for run_id in (None, "r1", "r2"):
        plain, _ = svcctl.report_from_log(str(tmp_path / "plain"), run_id)
        compact, _ = svcctl.report_from_log(str(tmp_path / "compact"), run_id)
        assert svcctl.render_text(compact) == svcctl.render_text(plain)
    assert svcctl.last_run_id(str(tmp_path / "compact")) == "r2"


def test_a_node_that_printed_a_flood_stays_in_the_replay_and_the_history(tmp_path):
    """A node's 250 KB of control bytes is 1.5 MB of JSON once escaped: its
    line was cut at LOG_LINE_MAX when read back, did not parse, and the node
    vanished from the replay, @last and the history. Each line now fits, and
    says what was cut."""
    report = a_report()
    unit = report.nodes[0].units[0]
    report.nodes[0].units[0] = svcctl.replace(unit, outcome="failed", message="\x01" * 250000,
                                              journal="\x1b" * 250000, answer="\x07" * 90000)
    data = svcctl.log_lines(report)
    assert all(len(line) < svcctl.LOG_LINE_MAX for line in data.splitlines(True))
    log = tmp_path / "svcctl.log"
    log.write_bytes(data)
    replay, skipped = svcctl.report_from_log(str(log))
    assert skipped.count == 0 and [r.node for r in replay.nodes] == ["node1"]
    message = replay.nodes[0].units[0].message
    assert message.startswith("\\x01") and message.endswith(" more characters]")
    history, skipped = svcctl.read_history(str(log))
    assert skipped.count == 0 and history.nodes == ["node1"]
    assert svcctl.outcome_nodes(replay, ["failed"]) == svcctl.NodeSet("node1")
    assert svcctl.log_line({"run_id": "r", "message": "hi"}) == \
        '{"message": "hi", "run_id": "r"}\n'


def test_a_node_that_printed_a_huge_state_stays_in_the_replay(tmp_path):
    """The states before and after are dicts inside the record, out of
    log_line's reach: a node printing ActiveState=<600 KB> made a line over
    LOG_LINE_MAX. A state value is cut where it is read."""
    states, _ = svcctl.state_blocks([b"LoadState=loaded", b"ActiveState=" + b"a" * 600000,
                                     b"UnitFileState=enabled"])
    assert states[0].active == "a" * svcctl.STATE_VALUE_MAX and states[0].file == "enabled"
    report = a_report()
    report.nodes[0].units[0] = svcctl.replace(report.nodes[0].units[0], before=states[0],
                                              after=states[0])
    data = svcctl.log_lines(report)
    assert all(len(line) < svcctl.LOG_LINE_MAX for line in data.splitlines(True))
    log = tmp_path / "svcctl.log"
    log.write_bytes(data)
    replay, skipped = svcctl.report_from_log(str(log))
    assert skipped.count == 0 and replay.nodes[0].units[0].after == states[0]


def test_the_history_of_the_last_runs_reads_only_their_lines(tmp_path, monkeypatch):
    """The console asks for the last 40 runs of a log that may hold 20,000:
    the same columns as the whole history's last 40, the other lines never
    parsed."""
    records = [record for i in range(120) for record in run_of(
        "r%03d" % i, "2026-11-%02dT00:00:00+00:00" % (1 + i % 28),
        {"node1": "ok", "node%d" % (2 + i % 3): "failed" if i % 2 else "ok"})]
    write_log(tmp_path / "log", records)
    whole, _ = svcctl.read_history(str(tmp_path / "log"))
    parsed = []
    parse = svcctl.parse_log_line
    monkeypatch.setattr(svcctl, "parse_log_line", lambda line: parsed.append(1) or parse(line))
    last, skipped = svcctl.read_history(str(tmp_path / "log"), last=40)
    assert skipped.count == 0 and len(parsed) == 80
    assert [r["id"] for r in last.runs] == ["r%03d" % i for i in range(80, 120)]
    assert last.runs == whole.runs[80:]
    matrix, whole_matrix = svcctl.history_matrix(last, 40), svcctl.history_matrix(whole, 40)
    for key in ("runs", "labels", "rows", "messages"):
        assert matrix[key] == whole_matrix[key]


def test_crafted_log_lines_never_raise(tmp_path):
    deep = '{"run_id": "abc", "node": "n1", "outcome": "failed", "x": %s}' % (
        "[" * 5000 + "]" * 5000)
    huge = json.dumps(logged(node="n" + "9" * 120))
    log = tmp_path / "crafted.log"
    log.write_text("\n".join([deep, huge] + ["junk"] * 5000) + "\n")
    for argv in (["report", str(log)], ["report", str(log), "--history"]):
        out, err = io.StringIO(), io.StringIO()
        assert svcctl.main(argv, out, err) in (1, 2)
        assert err.getvalue().count("\n") <= 22      # the first 20, then a count


def test_history_qq_writes_only_the_page(tmp_path):
    """From cron: `report LOG --history --html PAGE -qq` prints nothing (cron
    would mail it), and still writes the page."""
    records = run_of("r1", "2026-11-21T00:00:00+00:00", {"node1": "ok", "node2": "failed"})
    page = tmp_path / "history.html"
    code, out, err = history_of(tmp_path, records, "-qq", "--html", str(page))
    assert (code, out, err) == (0, "", "")
    assert "svcctl history of" in page.read_text()
    code, out, _ = history_of(tmp_path, records, "-q")
    assert "node2  \u2717  failed since" in out

# --- the syslog line: what matters survives the cut ---------------------------

@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(list(svcctl.OUTCOMES)), st.integers(1, 600),
                       min_size=1), st.integers(1, 2000))
def test_the_syslog_line_keeps_the_exit_code_and_the_problems(counts, units):
    """The line was cut at 4,000 characters from the end, dropping the
    problems and the exit code (ok comes first): whatever the sizes, the line
    fits, says the exit code and every outcome's count, problems' nodes first."""
    nodes = [svcctl.NodeResult("%s%d.x%d" % (name[:2], index, index * 7),
                               [svcctl.UnitResult("demo.service", name)])
             for name, count in counts.items() for index in range(count)]
    report = svcctl.Report("start", ["u%d.service" % n for n in range(units)], nodes, 0,
                           1.0, run_id="r1", user="root")
    line = svcctl.syslog_line(report)
    assert len(line) <= 4000 and "\n" not in line
    assert "exit %d; " % report.exit_code() in line
    for name, count in counts.items():
        assert "%s %d" % (name, count) in line
    problems = [name for name in counts if svcctl.OUTCOMES[name].exit_code]
    if problems:
        worst = max(problems, key=svcctl.SEVERITY.get)
        assert "; %s: " % worst in line


# --- @last:OUTCOME and report --nodes ----------------------------------------

LAST = {"node1": "ok", "node2": "failed", "node3": "unreachable", "node4": "changed"}


def last_log(tmp_path):
    log = tmp_path / "svcctl.log"
    write_log(log, run_of("r1", "2026-11-20T00:00:00+00:00",
                          {"node%d" % i: "failed" for i in range(1, 6)})
              + run_of("r2", "2026-11-21T00:00:00+00:00", LAST))
    log.chmod(0o600)
    return log


def chosen(*argv):
    """The nodes a command line would run on, and what it said on stderr."""
    err = io.StringIO()
    args = svcctl.read_command_line(list(argv))
    request = svcctl.make_request(args, list(argv), io.StringIO(), None, err)
    return str(request.nodes), err.getvalue()


def test_last_names_the_nodes_of_an_outcome_in_the_last_run(tmp_path, monkeypatch):
    log = str(last_log(tmp_path))
    nodes, said = chosen("restart", "demo", "@last:failed", "--log", log)
    assert nodes == "node2"
    assert said == "svcctl: @last:failed = node2 (1), from run r2 of " \
                   "2026-11-21T00:00:00+00:00\n"
    assert chosen("restart", "demo", "-w", "@last:problems", "--log", log)[0] \
        == "node[2-3]"
    # operators as ClusterShell applies them, left to right, @last an operand
    assert chosen("restart", "demo", "node[1-5]!@last:problems,node9", "--log",
                  log)[0] == "node[1,4-5,9]"
    assert chosen("restart", "demo", "node[1-4]", "-x", "@last:unreachable",
                  "--log", log)[0] == "node[1-2,4]"
    assert chosen("restart", "demo", "@last:changed,@last:all", "--log", log)[0] \
        == "node[1-4]"
    # the site's log when no --log is typed
    conf = tmp_path / "svcctl.conf"
    conf.write_text("log = %s\n" % log)
    monkeypatch.setenv("SVCCTL_CONF", str(conf))
    assert chosen("restart", "demo", "@last:failed")[0] == "node2"
    # with -c: -n and -x
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("services:\n  demo: {nodes: 'node[1-9]'}\n")
    assert chosen("-c", str(cluster), "restart", "-n", "@last:problems", "-x",
                  "@last:unreachable")[0] == "node2"


def test_last_counts_in_the_node_bound(tmp_path):
    log = str(last_log(tmp_path))
    code, out, err = main_of("restart", "demo", "node9", "-x", "@last:all", "--log", log,
                             "--max-nodes", "4", "--dry-run")
    assert code == 2 and "more than 4 nodes in all" in err.splitlines()[-1]


def main_of(*argv):
    out, err = io.StringIO(), io.StringIO()
    return svcctl.main(list(argv), out, err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv,message", [
    (["@last:failed"], "svcctl: @last:failed: no log to read the last run from "
                       "(--log FILE, or svcctl.conf's log)"),
    (["@last:failed", "--log", "{dir}/none.log"],
     "svcctl: @last:failed: {dir}/none.log: cannot read: No such file or directory"),
    (["@last:failed", "--log", "{dir}/empty.log"],
     "svcctl: @last:failed: {dir}/empty.log: no svcctl run in this log"),
    (["@last:great", "--log", "{dir}/svcctl.log"],
     "svcctl: @last:great: unknown outcome great (one of: ok, changed, "),
    (["--hostfile", "{dir}/hosts", "--log", "{dir}/svcctl.log"],
     "svcctl: @last:failed: @last is taken on the command line only"),
])
def test_last_without_a_run_to_read_is_one_line(tmp_path, argv, message):
    last_log(tmp_path)
    (tmp_path / "empty.log").write_text("")
    (tmp_path / "hosts").write_text("node1 @last:failed\n")
    code, out, err = main_of("restart", "demo", *[a.format(dir=tmp_path) for a in argv])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(message.format(dir=tmp_path)), err


def test_report_nodes_prints_only_the_folded_nodeset(tmp_path):
    log = str(last_log(tmp_path))
    assert main_of("report", log, "--nodes", "failed,unreachable") == (0, "node[2-3]\n", "")
    assert main_of("report", log, "--nodes", "problems", "--run", "r1") \
        == (0, "node[1-5]\n", "")
    assert main_of("report", log, "--nodes", "timeout") == (1, "", "")
    code, _, err = main_of("report", log, "--nodes", "great")
    assert code == 2 and err.startswith("svcctl: unknown outcome great")


def folded_history_log(tmp_path):
    """34 nodes, 3 runs, 3 stories: 29 fine throughout, 3 failing since run
    r2, 2 that failed in r2 only (they differ from the 3 in one run)."""
    outcomes = [{"node%d" % i: "ok" for i in range(1, 35)} for _ in range(3)]
    for i in (3, 7, 30):
        outcomes[1]["node%d" % i] = outcomes[2]["node%d" % i] = "failed"
    for i in (4, 5):
        outcomes[1]["node%d" % i] = "failed"
    records = [record for n, run in enumerate(outcomes)
               for record in run_of("r%d" % (n + 1), "2026-11-2%dT00:00:00+00:00" % n, run)]
    return records


def test_history_folds_nodes_with_the_same_story(tmp_path):
    records = folded_history_log(tmp_path)
    code, out, _ = history_of(tmp_path, records, "-v")
    assert code == 0
    assert out.splitlines()[1:] == [
        "node[1-2,6,8-29,31-34] (29)  \u2713\u2713\u2713",
        "node[3,7,30] (3)  \u2713\u2717\u2717  failed since 2026-11-21T00:00:00+00:00 "
        "(run r2, start demo.service by root)",
        "node[4-5] (2)  \u2713\u2717\u2713  last problem 2026-11-21T00:00:00+00:00 in run r2"]
    code, out, _ = history_of(tmp_path, records, "-L")
    assert len(out.splitlines()) == 1 + 5 and "node30  \u2713\u2717\u2717  failed since" in out


def test_report_memory_is_bounded_by_the_run_not_the_log(tmp_path, monkeypatch):
    """The first pass kept every line's run id; a forged run had no cap."""
    log = tmp_path / "svcctl.log"
    line = json.dumps(logged(run_id="old", node="node1")) + "\n"
    log.write_text(line * 60000 + "".join(
        json.dumps(logged(run_id="last", node="node%d" % i)) + "\n" for i in range(30)))
    monkeypatch.setattr(svcctl, "RUN_LINES_MAX", 20)
    import tracemalloc
    tracemalloc.start()
    report, skipped = svcctl.report_from_log(str(log))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert report.run_id == "last" and len(report.nodes) == 20
    assert skipped.count == 10 and "more than 20 lines in run last" in skipped[0]
    assert peak < 1024 * 1024, peak      # every id kept: ~3 MB
