"""The command line, in-process: usage errors run nothing, exit codes, dry run."""
import io
import os
import subprocess
import sys
import tempfile
import time

import pytest
from hypothesis import given, settings, strategies as st

import svcctl


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    try:
        code = svcctl.main(list(argv), out, err)
    except SystemExit as exc:      # argparse's own usage errors and --help
        code = exc.code
    return code, out.getvalue(), err.getvalue(), time.monotonic() - start


@pytest.mark.parametrize("argv,message", [
    (["start", "demo;reboot", "node1"], "svcctl: invalid unit name: demo;reboot\n"),
    (["start", "demo", "node[1-"], None),
    (["start", "demo", "--", "-oProxyCommand=x"], "svcctl: invalid NodeSet: "
                                                   "-oProxyCommand=x\n"),
    (["start", "demo", "node1", "-f", "0"], "svcctl: fanout must be from 1 to 100000, not 0\n"),
    (["start", "demo", "node1", "-u", "-3"], None),
    (["start", "demo", "node1", "--now"], "svcctl: --now goes with enable, disable, mask\n"),
    (["start", "demo", "node1", "--max-fail", "1"], "svcctl: --max-fail goes with --batch\n"),
    (["start", "demo", "node1", "--batch", "x"], None),
    (["start", "demo", "node1", "-l", "-oProxyCommand=x"], None),
    (["frobnicate", "demo", "node1"], None),
    (["start", "dеmo", "node1"], None),
    (["start", "demo", "node1", "-f--"], "svcctl: -f--: -- is not a value (it ends the "
                                          "options)\n"),
    (["start", "demo", "node1", "--log=--"], None),
    (["--", "status", "demo", "hang1", "-x--"], "svcctl: -x--: -- is not a value (it "
                                                 "ends the options)\n"),
    (["start", "demo", "node1", "-x=--"], None),
    (["start", "demo", "node1", "-O--"], None),
    (["start", "demo", "node1", "-o", "--"], None),
])
def test_usage_errors_exit_2_with_one_line(argv, message):
    # hang1 would take seconds to time out: a fast answer proves no contact.
    code, out, err, elapsed = run(*argv + ["hang1"])
    check_usage_error(code, out, err, elapsed, message)


@pytest.mark.parametrize("argv,message", [
    (["start", "demo"], "svcctl: start needs a NodeSet\n"),
    (["start"], "svcctl: start needs UNIT[,UNIT...] and a NodeSet\n"),
    (["start", "demo", "node1", "-x", "node1"], "svcctl: no node to run on: node1\n"),
    (["start", "demo", "@nosuchsource:x"], None),
])
def test_missing_targets(argv, message):
    check_usage_error(*run(*argv), message)


@pytest.mark.parametrize("action", ["start", "stop", "status", "try-restart"])
def test_too_many_units_for_one_command_run_nothing(action):
    """A script over what one argument may be (ssh would not even start, and
    each node would read "unreachable"): said, before any contact."""
    fitting = ",".join("u%04d.service" % i for i in range(100))
    assert len(svcctl.remote_command(svcctl.Protocol(svcctl.ACTIONS[action], "m"),
                                     [svcctl.Step(u) for u in fitting.split(",")])) < 20000
    assert run("--dry-run", action, fitting, "hang1")[0] == 0
    many = ",".join("systemd-fsck@dev-disk-by\\x2duuid-%04d.service" % i for i in range(1500))
    code, out, err, elapsed = run(action, many, "hang1")
    check_usage_error(code, out, err, elapsed, None)
    assert err.startswith("svcctl: too many units for one command: its script would be ")
    assert err.endswith(" bytes, over the 131071 an argument may be; act on fewer at a "
                        "time\n")
    # a rolling run is measured on its first node: every batch sends the same
    assert run(action, many, "node[1-4]", "--batch", "1", "--dry-run")[0] == 2


def check_usage_error(code, out, err, elapsed, message):
    assert code == 2
    assert out == ""
    assert err.startswith("svcctl: ")
    if message:
        assert err == message
    else:
        assert err.count("\n") == 1
    assert elapsed < 2


def test_dry_run_contacts_nothing():
    code, out, err, elapsed = run("--dry-run", "-l", "ops", "stop", "demo,web", "hang1",
                                  "down1", "--sudo", "-v")
    assert code == 0 and err == ""
    assert elapsed < 2
    assert out.startswith("stop: dry run, nothing contacted\nnodes: down1,hang1 (2)\n")
    assert "user=ops" in out
    assert "a demo.service sudo -n systemctl stop -- demo.service; " in out
    assert "a web.service sudo -n systemctl stop -- web.service; " in out


def test_version_and_help(capsys):
    assert run("--version")[0] == 0
    assert capsys.readouterr().out == "svcctl %s\n" % svcctl.__version__
    assert run("--help")[0] == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "exit codes:" in out


def test_version_alone_is_answered_before_the_parser_is_built(capsys, monkeypatch):
    """Building the parser is a tenth of svcctl's start: `--version` alone
    does without it, and says what the parser's --version says."""
    with pytest.raises(SystemExit) as parsed:
        svcctl.build_parser().parse_args(["--version"])
    by_parser = capsys.readouterr().out
    monkeypatch.setattr(svcctl, "build_parser", None)      # not called
    assert run("--version")[0] == parsed.value.code == 0
    assert capsys.readouterr().out == by_parser == "svcctl %s\n" % svcctl.__version__


def test_version_imports_only_what_every_run_needs():
    """What only some commands need is imported where it is used (start-up
    is measured against clush's)."""
    code = ("import sys; before = set(sys.modules); import svcctl\n"
            "try: svcctl.main(['--version'])\nexcept SystemExit: pass\n"
            "sys.stderr.write(' '.join(set(sys.modules) - before))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=os.path.dirname(svcctl.__file__), check=True)
    assert proc.stdout == "svcctl %s\n" % svcctl.__version__
    loaded = set(proc.stderr.split())
    assert "svcctl" in loaded and "ClusterShell.NodeSet" in loaded
    assert not loaded & {"datetime", "ClusterShell.Task", "yaml", "hashlib", "http.server",
                         "secrets", "syslog"}


def test_version_alone_is_answered_before_anything_is_imported():
    """`svcctl --version` (the console script, or svcctl.py) costs only the
    interpreter's start; an output that fails is said as for any run."""
    proc = subprocess.run([sys.executable, "-X", "importtime", svcctl.__file__, "--version"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout == "svcctl %s\n" % svcctl.__version__
    imported = proc.stderr.split("| site\n", 1)[1]        # after the interpreter's own
    assert "ClusterShell" not in imported and "argparse" not in imported, imported
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, svcctl.__file__, "--version"], stdout=full,
                              stderr=subprocess.PIPE, text=True)
    assert (proc.returncode, proc.stderr) == (1, "svcctl: cannot write the output: No "
                                                 "space left on device\n")


def test_options_after_positionals():
    code, out, _, _ = run("start", "demo", "node[1-3]", "--dry-run", "-x", "node2")
    assert code == 0 and "nodes: node[1,3] (2)" in out


def test_clush_conf_errors_are_usage_errors(tmp_path, monkeypatch):
    (tmp_path / "clush.conf").write_text("[Main]\nfanout: lots\n")
    monkeypatch.setenv("CLUSTERSHELL_CFGDIR", str(tmp_path))
    code, out, err, _ = run("--dry-run", "start", "demo", "node1")
    assert code == 2 and err.startswith("svcctl: clush.conf: ")


def test_clush_conf_is_honoured_command_line_wins(tmp_path, monkeypatch):
    (tmp_path / "clush.conf").write_text(
        "[Main]\nfanout: 3\nssh_user: ops\nconnect_timeout: 4\n")
    monkeypatch.setenv("CLUSTERSHELL_CFGDIR", str(tmp_path))
    code, out, _, _ = run("--dry-run", "start", "demo", "node1", "-f", "5")
    assert code == 0
    assert "user=ops fanout=5 connect_timeout=4 command_timeout=300" in out


def test_persist_adds_control_options(monkeypatch):
    tmp_path = tempfile.mkdtemp(dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", tmp_path)
    code, out, _, _ = run("--dry-run", "--persist", "start", "demo", "node1")
    assert code == 0
    assert "-oControlMaster=auto -oControlPath=%s/svcctl/%%C -oControlPersist=600" \
        % tmp_path in out
    assert os.listdir(tmp_path) == []           # a dry run creates nothing


def test_persist_skips_a_socket_path_too_long(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/tmp/" + "x" * 80)
    code, out, err, _ = run("--dry-run", "--persist", "start", "demo", "node1")
    assert code == 0 and "-oControlPath=/tmp/svcctl-%d/%%C" % os.getuid() in out


# --- systemctl's and clush's habits ------------------------------------------

@pytest.mark.parametrize("argv,hint", [
    (["status", "-l", "httpd", "node1", "node2"], "-l after the ACTION: systemctl's -l "
                                                  "(--full) is what svcctl always does"),
    (["status", "-lhttpd", "node1", "node2"], "-l after the ACTION"),
    (["--user", "status", "demo", "node1"], "--user: svcctl acts on the system manager"),
    (["status", "demo", "node1", "--no-block"], "--no-block: svcctl waits for each job"),
    (["status", "-H", "node1", "demo"], "-H: svcctl reaches the nodes itself"),
    (["list-units", "-t", "service", "node1"], "-t is clush's connect timeout in seconds"),
    (["enable", "-f", "demo", "node1"], "-f is clush's fanout, a number of nodes"),
    (["status", "demo", "node1", "-o", "json"], "invalid ssh options json"),
    (["-c", "x.yaml", "status", "-n", "50"], "-n takes a NodeSet (MilkCheck's -n)"),
    (["status", "-w", "node1", "demo", "node2"], "the nodes are given by -w"),
    (["show", "demo", "node1"], "show needs -p"),
    (["status", "demo", "node1", "--failed"], "--failed goes with list-units"),
    (["frobnicate", "demo", "node1"], "unknown ACTION frobnicate"),
])
def test_habits_are_never_misread(argv, hint):
    """A habit from systemctl or clush does what was meant or stops with one
    line saying what to type; it never runs something else."""
    code, out, err, elapsed = run(*argv)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert hint in err
    assert elapsed < 2


@pytest.mark.parametrize("argv,expected", [
    (["--dry-run", "status", "demo", "node1", "--no-pager", "--full"], "nodes: node1 (1)"),
    (["--dry-run", "-l", "ops", "status", "demo", "node1"], "user=ops"),
    (["--dry-run", "--login", "ops", "status", "demo", "node1"], "user=ops"),
    (["--dry-run", "-w", "node[1-4]", "-x", "node2", "status", "demo"],
     "nodes: node[1,3-4] (3)"),
    (["--dry-run", "-b", "status", "demo", "node1"], "nodes: node1 (1)"),
    (["--dry-run", "-v", "status", "/home", "node1"], "$(l home.mount)"),
    (["--dry-run", "-v", "list-units", "--failed", "node1"], "list-units --plain --no-legend "
                                                       "--no-pager --full --state=failed"),
    (["--dry-run", "-v", "list-units", "demo*", "node1"], "--full -- '\"'\"'demo*'\"'\"';"),
    (["--dry-run", "-v", "show", "demo", "node1", "-p", "ExecStart,Environment"],
     "systemctl show -p ExecStart,Environment -- demo.service"),
    (["--dry-run", "-v", "cat", "demo", "node1", "--diff"], "systemctl cat -- demo.service"),
    (["--dry-run", "-o", "-oKexAlgorithms=curve25519-sha256", "status", "demo", "node1"],
     "options=-oKexAlgorithms=curve25519-sha256\n"),
    (["--dry-run", "status", "demo", "node1", "--ssh-options", "-F /x -oA=b"],
     "options=-F /x -oA=b\n"),
])
def test_habits_that_do_what_was_meant(argv, expected):
    code, out, err, _ = run(*argv)
    assert code == 0, err
    assert expected in out


def test_hostfile_from_stdin():
    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(b"node1\n# a comment\nnode3 node[5-6]#x\n"))
    code = svcctl.main(["--dry-run", "is-active", "demo", "--hostfile", "-"], out, err,
                       stdin)
    assert code == 0, err.getvalue()
    assert "nodes: node[1,3,5-6] (4)" in out.getvalue()


@pytest.mark.parametrize("body", [b"node1\xff\n", b"\xc3(\n"])
def test_hostfile_from_stdin_that_is_not_utf8_is_one_line(body):
    proc = subprocess.run([sys.executable, svcctl.__file__, "--dry-run", "is-active", "demo",
                           "--hostfile", "-"], input=body, capture_output=True,
                          env=dict(os.environ, LC_ALL="C", PYTHONIOENCODING="utf-8"))
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.startswith(b"svcctl: --hostfile -: cannot read: 'utf-8' codec")
    assert proc.stderr.count(b"\n") == 1


@pytest.mark.parametrize("stdin", [True, False])
def test_a_one_line_hostfile_is_refused_in_little_memory(tmp_path, stdin):
    """8 MiB of `a,a,a,...` on one line peaked at 1.7 GB before it was refused."""
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"a," * (4 << 20))
    # VmHWM: this process's own peak (getrusage's counts the parent's, if larger)
    code = ("import re, sys, svcctl\ncode = svcctl.main(sys.argv[1:])\nprint(code, re.search("
            "r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1))\n")
    with open(hosts, "rb") as handle:
        proc = subprocess.run([sys.executable, "-c", code, "--dry-run", "is-active", "demo",
                               "--hostfile", "-" if stdin else str(hosts)],
                              stdin=handle, capture_output=True, text=True, timeout=60,
                              cwd=os.path.dirname(svcctl.__file__))
    exit_code, peak_kib = map(int, proc.stdout.split())
    assert exit_code == 2 and "more than 100000 nodes" in proc.stderr
    assert peak_kib < 120 * 1024


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 400), st.sampled_from([" ", "\n", "\t", "  # c\n",
                                                                 ",", "!", "^"])),
                min_size=1, max_size=12))
def test_hostfile_words_count_every_operand(words):
    """Whatever the separators and operators, a hostfile is refused exactly
    when its operands together name more than --max-nodes."""
    text = "".join("h%dx[1-%d]%s" % (n, size, sep) for n, (size, sep) in enumerate(words))
    text = text.rstrip(",!^")
    total = sum(size for size, _ in words)
    out, err = io.StringIO(), io.StringIO()
    code = svcctl.main(["--dry-run", "is-active", "demo", "--hostfile", "-", "--max-nodes",
                        "1000"], out, err, io.TextIOWrapper(io.BytesIO(text.encode())))
    assert code == (2 if total > 1000 else 0), err.getvalue()
    if code:
        assert "more than 1000 nodes, every operand counted" in err.getvalue()


def test_pick():
    code, out, _, _ = run("--dry-run", "is-active", "demo", "-w", "node[1-100]",
                          "--pick", "7")
    assert code == 0 and " (7)\n" in out


def test_with_source_names_the_group_source():
    assert svcctl.with_source("@web,node1!@db", "site") == "@site:web,node1!@site:db"
    assert svcctl.with_source("@other:web,@*", "site") == "@other:web,@site:*"


# --- site defaults -----------------------------------------------------------

def test_site_config_then_override_then_command_line(tmp_path, monkeypatch):
    conf = tmp_path / "svcctl.conf"
    conf.write_text("# site defaults\n[svcctl]\nfanout = 7\nuser: ops\n"
                    "command_timeout = 60\n")
    monkeypatch.setenv("SVCCTL_CONF", str(conf))
    code, out, err, _ = run("--dry-run", "status", "demo", "node1")
    assert code == 0, err
    assert "user=ops fanout=7" in out and "command_timeout=60" in out
    code, out, _, _ = run("--dry-run", "status", "demo", "node1", "-O", "fanout=9")
    assert "fanout=9" in out
    code, out, _, _ = run("--dry-run", "status", "demo", "node1", "-O", "fanout=9",
                          "-f", "3")
    assert "fanout=3" in out


@pytest.mark.parametrize("body,message", [
    ("fanout = 7\nfanut = 3\n", "svcctl.conf:2: unknown key fanut (known: fanout, "),
    ("fanout = lots\n", "svcctl.conf:1: fanout: invalid literal"),
    ("sudo = maybe\n", "svcctl.conf:1: sudo: yes or no, not maybe"),
    ("command_timeout = inf\n", "svcctl.conf:1: command_timeout: a timeout must be"),
    ("just words\n", "svcctl.conf:1: expected KEY = VALUE"),
    ("user = root;id\n", "svcctl.conf:1: user: invalid user name"),
])
def test_site_config_errors_name_file_and_line(tmp_path, monkeypatch, body, message):
    conf = tmp_path / "svcctl.conf"
    conf.write_text(body)
    monkeypatch.setenv("SVCCTL_CONF", str(conf))
    code, out, err, _ = run("--dry-run", "status", "demo", "node1")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert message in err


def test_override_errors():
    code, _, err, _ = run("--dry-run", "status", "demo", "node1", "-O", "colour=red")
    assert code == 2 and "-O: unknown key colour" in err


def test_default_cluster_file(tmp_path, monkeypatch):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("services:\n  demo: {nodes: 'node[1-2]'}\n")
    conf = tmp_path / "svcctl.conf"
    conf.write_text("cluster_file = %s\n" % cluster)
    monkeypatch.setenv("SVCCTL_CONF", str(conf))
    code, out, err, _ = run("-c", "--check-config")
    assert code == 0 and out == "%s: ok, 1 services, 0 groups\n" % cluster, err
    code, out, err, _ = run("-c", "status", "--dry-run")
    assert code == 0 and "nodes: node[1-2] (2)" in out, err
    monkeypatch.delenv("SVCCTL_CONF")
    code, _, err, _ = run("-c", "status", "--dry-run")
    assert code == 2 and err.startswith("svcctl: /etc/svcctl/cluster.yaml: cannot read")


@pytest.mark.parametrize("env,tty,expected", [
    ({}, True, True), ({}, False, False), ({"NO_COLOR": "1"}, True, False),
    ({"TERM": "dumb"}, True, False), ({"CLICOLOR_FORCE": "1"}, False, True),
    ({"CLICOLOR_FORCE": "0"}, False, False),
])
def test_colour_follows_the_environment(monkeypatch, env, tty, expected):
    for name in ("NO_COLOR", "TERM", "CLICOLOR_FORCE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    class Stream:
        def isatty(self):
            return tty
    assert svcctl.use_color("auto", Stream()) is expected


@pytest.mark.parametrize("argv", [["--log", ""], ["--html", ""]])
def test_empty_output_paths_are_refused(argv):
    """`--log "$LOG"` with LOG unset in a crontab: say so, do not run."""
    code, out, err, _ = run("is-active", "demo", "hang1", *argv)
    assert code == 2 and "needs a file name" in err


def test_exit_code_precedence_with_outputs():
    assert svcctl.worse_exit(3, 1) == 1 and svcctl.worse_exit(1, 3) == 1
    assert svcctl.worse_exit(4, 1) == 4 and svcctl.worse_exit(0, 1) == 1
    assert svcctl.worse_exit(130, 4) == 130


# --- found in review ---------------------------------------------------------

def two_sources(tmp_path):
    """A ClusterShell config whose default source and `slurm` both have web."""
    cfg = tmp_path / "cs"
    (cfg / "groups.d").mkdir(parents=True)
    (cfg / "groups.conf").write_text("[Main]\ndefault: site\nautodir: $CFGDIR/groups.d\n")
    (cfg / "groups.d" / "site.yaml").write_text("site:\n  web: 'node[1-2]'\n")
    (cfg / "groups.d" / "slurm.yaml").write_text("slurm:\n  web: 'node[5-6]'\n")
    cluster = tmp_path / "c.yaml"
    cluster.write_text("services:\n  db: {nodes: 'node[1-6]'}\n")
    return dict(os.environ, CLUSTERSHELL_CFGDIR=str(cfg)), str(cluster)


@pytest.mark.parametrize("argv,nodes", [
    (["-X", "web"], "node[3-6] (4)"), (["-s", "slurm", "-x", "@web"], "node[1-4] (4)"),
    (["-s", "slurm", "-n", "@web"], "node[5-6] (2)"), (["-x", " @web"], "node[3-6] (4)"),
])
def test_cluster_file_nodes_follow_x_and_s(tmp_path, argv, nodes):
    """-X GROUP and -s SOURCE restrict a cluster file's nodes as they do the
    command line's: never silently ignored."""
    env, cluster = two_sources(tmp_path)
    proc = subprocess.run([sys.executable, svcctl.__file__, "-c", cluster, "restart",
                           "--dry-run"] + argv, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "nodes: %s\n" % nodes in proc.stdout


def test_pick_does_not_go_with_a_cluster_file(tmp_path):
    env, cluster = two_sources(tmp_path)
    code, _, err, _ = run("-c", cluster, "restart", "--pick", "1", "--dry-run")
    assert code == 2 and "--pick do not go with it" in err


def test_the_readme_site_config_reads_as_written(tmp_path, monkeypatch):
    readme = open(os.path.join(os.path.dirname(svcctl.__file__), "README.md")).read()
    conf = readme.split("```ini\n", 1)[1].split("```", 1)[0]
    (tmp_path / "svcctl.conf").write_text(conf)
    monkeypatch.setenv("SVCCTL_CONF", str(tmp_path / "svcctl.conf"))
    args = svcctl.read_command_line(["status", "demo", "node1"])
    assert args.log == "/var/log/svcctl.log" and args.fanout == 32
    assert args.cluster_file == "/etc/svcctl/cluster.yaml" and args.sudo is False


def test_site_keys_apply_only_where_they_fit(tmp_path, monkeypatch):
    (tmp_path / "svcctl.conf").write_text("log = %s/audit.log\nhtml = %s/page.html\n"
                                          "batch = 25%%\nmax_fail = 1\nsyslog = yes\n"
                                          % (tmp_path, tmp_path))
    monkeypatch.setenv("SVCCTL_CONF", str(tmp_path / "svcctl.conf"))
    cluster = tmp_path / "c.yaml"
    cluster.write_text("services:\n  db: {nodes: 'node[1-2]'}\n")
    assert run("-c", str(cluster), "status", "--dry-run")[0] == 0
    assert run("-c", str(cluster), "--check-config")[0] == 0
    assert not (tmp_path / "page.html").exists()
    args = svcctl.read_command_line(["status", "demo", "node1"])
    assert args.batch == "25%" and args.max_fail == "1"
    monkeypatch.setenv("SVCCTL_CONF", str(tmp_path / "other.conf"))
    (tmp_path / "other.conf").write_text("max_fail = 1\n")
    assert svcctl.read_command_line(["status", "demo", "node1"]).max_fail is None
    assert run("status", "demo", "node1", "--max-fail", "1", "--dry-run")[0] == 2


# key: (its svcctl.conf text, what it reads as, the option typed, what that reads as)
SITE_AND_TYPED = {
    "fanout": ("7", 7, ["-f", "9"], 9),
    "connect_timeout": ("7", 7.0, ["-t", "9"], 9.0),
    "command_timeout": ("70", 70.0, ["-u", "90"], 90.0),
    "user": ("ops", "ops", ["-l", "adm"], "adm"),
    "ssh_options": ("-oA=b", "-oA=b", ["-o", "-oC=d"], "-oC=d"),
    "sudo": ("no", False, ["--sudo"], True),
    "persist": ("no", False, ["--persist"], True),
    "persist_for": ("60", 60, ["--persist-for", "90"], 90),
    "settle": ("2", 2.0, ["--settle", "3"], 3.0),
    "batch": ("2", "2", ["--batch", "3"], "3"),
    "batch_wait": ("1", 1.0, ["--batch-wait", "2"], 2.0),
    "max_fail": ("1", "1", ["--max-fail", "4"], "4"),
    "max_nodes": ("500", 500, ["--max-nodes", "600"], 600),
    "groupsource": ("site", "site", ["-s", "other"], "other"),
    "log": ("/tmp/a.log", "/tmp/a.log", ["--log", "/tmp/b.log"], "/tmp/b.log"),
    "html": ("/tmp/a.html", "/tmp/a.html", ["--html", "/tmp/b.html"], "/tmp/b.html"),
    "syslog": ("no", False, ["--syslog"], True),
    "color": ("never", "never", ["--color", "always"], "always"),
    "cluster_file": ("/tmp/c.yaml", "/tmp/c.yaml", ["-O", "cluster_file=/tmp/d.yaml"],
                     "/tmp/d.yaml"),
    "confirm_nodes": ("20", 20, ["-O", "confirm_nodes=30"], 30),
}


def test_every_site_key_has_a_case():
    assert set(SITE_AND_TYPED) == set(svcctl.SITE_KEYS)


@settings(max_examples=150, deadline=None)
@given(st.sets(st.sampled_from(sorted(SITE_AND_TYPED))), st.sampled_from(sorted(SITE_AND_TYPED)),
       st.booleans())
def test_site_keys_apply_unless_that_very_key_is_typed(site_keys, typed, as_override):
    """A site's max_fail was dropped whenever --batch was typed: a site key
    applies unless the command line (or -O) sets that very key."""
    site_keys = site_keys | {"batch"}       # max_fail goes with a batch
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "svcctl.conf")
        with open(conf, "w") as handle:
            handle.write("".join("%s = %s\n" % (k, SITE_AND_TYPED[k][0]) for k in site_keys))
        text, _, argv, value = SITE_AND_TYPED[typed]
        if as_override and argv[0] != "-O":
            argv = ["-O", "%s=%s" % (typed, argv[-1] if len(argv) == 2 else "yes")]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SVCCTL_CONF", conf)
            args = svcctl.read_command_line(argv + ["start", "demo", "node1"])
    for key in site_keys - {typed}:
        assert getattr(args, svcctl.SITE_KEYS[key][0]) == SITE_AND_TYPED[key][1], key
    assert getattr(args, svcctl.SITE_KEYS[typed][0]) == value


def test_overrides_are_typed_options_for_report_and_check_config(tmp_path, monkeypatch):
    """-O html= was silently ignored by report and --check-config: -O is the
    option typed (a site file's html stays for runs)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("services:\n  db: {nodes: 'node[1-2]'}\n")
    assert run("-c", "c.yaml", "--check-config", "-O", "html=page.html")[0] == 0
    assert (tmp_path / "page.html").exists()
    log = tmp_path / "run.log"
    log.write_bytes(svcctl.log_lines(svcctl.Report(
        "status", ["demo.service"], [svcctl.NodeResult("node1", [svcctl.UnitResult(
            "demo.service", "ok", answer="active")])], 0, 1.0, run_id="r1")))
    assert run("report", str(log), "-O", "html=report.html")[0] == 0
    assert (tmp_path / "report.html").exists()
    code, _, err, _ = run("report", str(log), "-O", "log=other.log")
    assert code == 2 and "--log and --syslog do not go with it" in err


def test_a_site_settle_never_refuses_a_query(tmp_path, monkeypatch):
    (tmp_path / "svcctl.conf").write_text("settle = 5\n")
    monkeypatch.setenv("SVCCTL_CONF", str(tmp_path / "svcctl.conf"))
    for action in ("status", "is-active", "stop", "show -p MainPID"):
        code, _, err, _ = run("--dry-run", *action.split(), "demo", "node1", "-u", "2")
        assert code == 0, (action, err)
    code, _, err, _ = run("--dry-run", "start", "demo", "node1", "-u", "2")
    assert code == 2 and "--settle 5 must be shorter" in err


@pytest.mark.parametrize("line,value", [
    ('ssh_options = -oProxyCommand="nc %h 22 #x"  # the bastion', '-oProxyCommand="nc %h 22 #x"'),
    ("ssh_options = -oProxyCommand='nc %h 22 #x'", "-oProxyCommand='nc %h 22 #x'"),
    ("ssh_options = -oA=b#c # a comment", "-oA=b#c"),
    ("ssh_options = -oA=b\t# a comment", "-oA=b"),
])
def test_a_comment_is_cut_only_where_sh_would(tmp_path, monkeypatch, line, value):
    (tmp_path / "svcctl.conf").write_text("# site\n%s\n" % line)
    monkeypatch.setenv("SVCCTL_CONF", str(tmp_path / "svcctl.conf"))
    assert svcctl.read_command_line(["status", "demo", "node1"]).ssh_options == value
    override = svcctl.read_command_line(["status", "demo", "node1", "-O",
                                         "ssh_options=-oProxyCommand=nc %h 22 #x"])
    assert override.ssh_options == "-oProxyCommand=nc %h 22 #x"


@pytest.mark.parametrize("argv", [
    ["-c", "c.yaml", "-l", "admin", "status", "--dry-run"],
    ["--connect", "5", "-l", "root", "status", "demo", "node1", "--dry-run"],
    ["-vl", "root", "status", "demo", "node1", "--dry-run"],
])
def test_login_before_the_action_is_never_refused(tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("services:\n  db: {nodes: 'node[1-2]'}\n")
    code, out, err, _ = run(*argv)
    assert code == 0 and "user=" in out, err


@pytest.mark.parametrize("argv,hint", [
    (["restart", "-vl", "httpd", "sshd", "node1"], "-l after the ACTION"),
    (["list-units", "-a", "@web"], "list-units -a: -a is clush's all nodes"),
    (["daemon-reload", "httpd.service", "node1"], "daemon-reload takes no unit"),
    (["list-units", "--failed", "--state", "running", "node1"], "--failed is --state failed"),
    (["report", "x.log", "--since", "1d"], "--since goes with --history"),
])
def test_more_habits_stop_with_a_hint(argv, hint):
    code, out, err, _ = run(*argv)
    assert code == 2 and out == "" and hint in err, err


def test_dates_without_a_zone_are_utc(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    assert svcctl.parse_age("2023-11-14T00:00") == svcctl.parse_age("2023-11-14 00:00") \
        == svcctl.parse_age("2023-11-14") == 1699920000.0


# Words a tired or hostile hand may type: svcctl's own options, values that
# look like options, the end-of-options marker, in any order.
_WORDS = sorted({o for a in svcctl.build_parser()._actions for o in a.option_strings}
                - {"-h", "--help", "--version"}) + [
    "--", "-", "=--", "x", "0", "-1", "node1", "demo", "status", "start", "@all",
    "-oA=b", "KEY=VALUE", "fanout=2"]


_WORD = st.sampled_from(_WORDS) | st.builds(
    lambda a, b: a + b, st.sampled_from(_WORDS), st.sampled_from(["--", "=--", "=", "x"]))


@given(st.lists(_WORD, max_size=4), st.lists(_WORD, max_size=3))
@settings(max_examples=400, deadline=None)
def test_no_command_line_raises(before, after):
    """Whatever the words around a valid command, svcctl answers with an exit
    code: a traceback is a bug (argparse turns `-f--` into a list, for one)."""
    words = ["--dry-run"] + before + ["status", "demo", "hang1"] + after
    code, out, err, _ = run(*words)
    assert code in (0, 2, 3), (words, err)
    if code == 2 and err:
        assert err.count("\n") == 1 and err.startswith("svcctl: ") or err.startswith(
            "usage:"), (words, err)


# --- outputs, sources and settle: checked before anything runs ----------------

@pytest.mark.parametrize("argv,message", [
    (["--log", "{tmp}/no/such/dir.log"], "--log {tmp}/no/such/dir.log: no directory "
                                         "{tmp}/no/such\n"),
    (["--log", "{tmp}/link.log"], "--log {tmp}/link.log: it is a symbolic link\n"),
    (["--log", "{tmp}/shared.log"], "--log {tmp}/shared.log: writable by group or "
                                    "others (mode 0666)\n"),
    (["--html", "{tmp}"], "--html {tmp}: not a regular file\n"),
    (["--html", "/dev/null"], "--html /dev/null: not a regular file\n"),
    (["--log", "{tmp}/a", "--html", "{tmp}/../{name}/a"], "--html {tmp}/../{name}/a is "
                                                          "also --log: it would be "
                                                          "overwritten\n"),
    (["--hostfile", "{tmp}/hosts", "--html", "{tmp}/hosts"], "--html {tmp}/hosts is also "
                                                             "--hostfile: it would be "
                                                             "overwritten\n"),
    (["--settle", "600"], "--settle 600 must be shorter than the command timeout "
                          "(-u 300)\n"),
    (["--settle", "5", "-u", "5"], "--settle 5 must be shorter than the command timeout "
                                   "(-u 5)\n"),
    (["-s", "a b"], "argument -s/--groupsource: -s takes a group source name, not a b "
                    "(see svcctl --help)\n"),
    (["-r", "-s", "nosuch"], "-r: no group source nosuch (there are: "),
])
def test_what_would_fail_at_the_end_is_refused_first(tmp_path, argv, message):
    """A crontab's missing log directory, a planted link, a page that would
    replace its own log: said at once, exit 2, nothing run (hang1 would take
    seconds), instead of after every node was restarted."""
    (tmp_path / "link.log").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "shared.log").write_text("")
    (tmp_path / "shared.log").chmod(0o666)
    (tmp_path / "hosts").write_text("hang1\n")
    fill = lambda text: text.format(tmp=tmp_path, name=tmp_path.name)
    code, out, err, elapsed = run(*["start", "demo", "hang1"] + [fill(a) for a in argv])
    check_usage_error(code, out, err, elapsed, None)
    assert err.startswith("svcctl: " + fill(message))
    assert not (tmp_path / "elsewhere").exists()


def test_an_output_never_replaces_an_input(tmp_path):
    cluster = tmp_path / "c.yaml"
    cluster.write_text("services:\n  db: {nodes: 'node[1-2]'}\n")
    code, out, err, _ = run("-c", str(cluster), "--check-config", "--html", str(cluster))
    assert (code, err) == (2, "svcctl: --html %s is also -c: it would be overwritten\n"
                           % cluster)
    assert cluster.read_text() == "services:\n  db: {nodes: 'node[1-2]'}\n"
    code, out, err, _ = run("-c", str(cluster), "--check-config", "--html", "/dev/full")
    assert code == 2 and err == "svcctl: --html /dev/full: not a regular file\n"
    page = tmp_path / "page.html"
    code, out, err, _ = run("-c", str(cluster), "--check-config", "--html", str(page))
    assert code == 0 and page.read_text().startswith("<!DOCTYPE html>")


def test_a_broken_groups_conf_is_one_line_before_the_run(tmp_path):
    """ClusterShell's configparser error was a traceback, and with -r came
    after the action had run."""
    (tmp_path / "groups.conf").write_text("garbage, no section\n")
    env = dict(os.environ, CLUSTERSHELL_CFGDIR=str(tmp_path))
    for argv in (["status", "demo", "-a"], ["-r", "start", "demo", "hang1"],
                 ["start", "demo", "@web"]):
        proc = subprocess.run([sys.executable, svcctl.__file__] + argv, env=env,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and proc.stdout == "", (argv, proc.stderr)
        assert proc.stderr.startswith("svcctl: ") and proc.stderr.count("\n") == 1
        assert "File contains no section headers" in proc.stderr


def test_regroup_falls_back_to_names_when_the_source_fails_later():
    display = svcctl.Display(regroup="nosuch-source")
    assert display.nodes(svcctl.NodeSet("node[1-3]")) == "node[1-3]"


def test_a_path_that_is_not_utf8_is_a_unit_as_systemd_escapes_it():
    assert svcctl.unit_from_path("/srv/caf\udce9") == "srv-caf\\xe9.mount"
    assert svcctl.main(["--dry-run", "status", "/a\udcff", "node1"],
                       io.StringIO(), io.StringIO()) == 0


@pytest.mark.parametrize("redirect,code,err", [
    (">/dev/full", 1, "svcctl: cannot write the output: No space left on device\n"),
    (">&-", 0, ""),
    ("<&- --hostfile -", 2, "svcctl: --hostfile -: no node in it\n"),
])
def test_closed_or_full_standard_streams_are_no_traceback(redirect, code, err):
    command = "%s %s --dry-run is-active demo %s" % (
        sys.executable, svcctl.__file__, "" if "hostfile" in redirect else "node1")
    proc = subprocess.run(["sh", "-c", command + " " + redirect], capture_output=True,
                          text=True, timeout=30)
    assert (proc.returncode, proc.stderr) == (code, err)


def test_dry_run_of_batches_is_the_plan_in_words():
    code, out, err, _ = run("--dry-run", "restart", "demo,web", "node[1-5]", "--batch", "2",
                            "--max-fail", "1", "--batch-wait", "5")
    assert code == 0, err
    assert out.split("\n", 3)[3] == (
        "batch 1 of 3:\n"
        "  restart demo.service,web.service on node[1-2] (2)\n"
        "batch 2 of 3, 5 s after the batch before, unless more than 1 node failed before:\n"
        "  restart demo.service,web.service on node[3-4] (2)\n"
        "batch 3 of 3, 5 s after the batch before, unless more than 1 node failed before:\n"
        "  restart demo.service,web.service on node5 (1)\n")
    code, out, _, _ = run("--dry-run", "enable", "--now", "demo", "node[1-2]")
    # (the ssh options line before it is the site's: CI's cluster sets some)
    assert out.endswith("\nenable --now demo.service on node[1-2] (2)\n")


# --- svcctl journal: every option checked, quoted words on the node ----------

@pytest.mark.parametrize("words,sent", [
    ([], "journalctl --no-pager -o json --output-fields=MESSAGE -r -n 10 -u demo.service;"),
    (["--lines", "3", "--since", "7d", "--until", "2026-12-01 10:00", "--boot"],
     "journalctl --no-pager -o json --output-fields=MESSAGE -r -n 3 --since=-7d "
     "'\"'\"'--until=2026-12-01 10:00'"
     "\"'\"' --boot -u demo.service;"),
    (["--grep", "a;b|c $(id)", "--priority", "err..warning", "--raw"],
     "journalctl --no-pager -o short-iso -r -n 10 '\"'\"'--grep=a;b|c $(id)'\"'\"' "
     "--priority=err..warning -u demo.service;"),
])
def test_journal_sends_checked_quoted_words(words, sent):
    code, out, err, _ = run("--dry-run", "-v", "journal", "demo", "node1", *words)
    assert code == 0, err
    assert sent in out


@pytest.mark.parametrize("words,message", [
    (["--priority", "loud"], "svcctl: invalid priority: loud (emerg alert crit err "
     "warning notice info debug, 0-7, or a range err..warning)\n"),
    (["--since", "now; reboot"], "svcctl: invalid time for --since: now; reboot\n"),
    (["--grep", "a\nb"], "svcctl: invalid --grep pattern: a\\x0ab\n"),
    (["--lines", "0"], "svcctl: --lines takes 1 to 10000, not 0\n"),
    (["--mask", "--raw"], "svcctl: --mask and --raw: give one of them\n"),
    (["--compare", "node[1-2]"], "svcctl: --compare node[1-2]: nodes in both sets: node1\n"),
])
def test_journal_refuses_bad_options_before_anything_runs(words, message):
    code, out, err, _ = run("journal", "demo", "node1", *words)
    assert (code, out, err) == (2, "", message)


def test_journal_options_go_with_journal_only():
    code, _, err, _ = run("start", "demo", "node1", "--grep", "x")
    assert (code, err) == (2, "svcctl: --grep goes with journal\n")
    code, _, err, _ = run("start", "demo", "node1", "--since", "7d")
    assert (code, err) == (2, "svcctl: --since goes with journal, report --history\n")
