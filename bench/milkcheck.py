#!/usr/bin/env python3
"""MilkCheck (CEA's dependency-aware service manager, github.com/cea-hpc/milkcheck)
in the benchmark: install it, write the a <- b <- c chain, build its command line.

MilkCheck is not on PyPI and is never copied into this repository: the bench
caller gets its source at bench time with the search tool's `fetch` on
github:cea-hpc/milkcheck, which leaves a bare git dir such as
/work/.mirror/cea-hpc+milkcheck/repo, and passes that path (or any source
tree holding setup.py) as `src` or in the environment as MILKCHECK_SRC.

    python = install("/tmp/mc")                  # venv python with MilkCheck
    confdir = write_chain_config("/tmp/mc/chain", "node[1-8]")
    argv = command(python, confdir, "start", "-F /run/svcctl-testcluster/ssh_config", 64)

How the argv works: MilkCheck runs every action through ClusterShell's
`task_self()` (its ActionManager keeps that task and calls `task.shell()` on it)
and reads no ClusterShell config of its own (clush.conf is clush's). So this
file is also a tiny launcher, run by the venv python: it sets `ssh_options`,
`ssh_path` and `connect_timeout` on `task_self()`, makes `fanout` MilkCheck's
default (MilkCheck sets the task's fanout itself, from its milkcheck.conf,
before each action), ignores any site /etc/milkcheck/milkcheck.conf, then
calls MilkCheck's own `CommandLine().execute()`. MilkCheck's code is unchanged.

    python bench/milkcheck.py run [--ssh-options S] [--ssh-path P] [--fanout N]
                                  [--connect-timeout T] -- MILKCHECK-ARGS...
    python3 bench/milkcheck.py selftest [--src DIR] [--nodes 'n[1-4]']

`selftest` needs no cluster: a fake ssh runs the command locally with a fake
systemctl that logs its calls; it checks the dependency order, the ssh
options on every ssh command line, the fanout, and counts connections.

Exit codes are MilkCheck's: 0 ok, 3 warning, 6 a service failed (its
dependents are then DEP_ERROR and not run), 9 bad usage or config.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
ACTIONS = ("start", "stop", "status")
CHAIN = (("a", None), ("b", "a"), ("c", "b"))        # service, what it requires


def install(workdir, src=None):
    """Make a venv in WORKDIR/venv (with system site-packages, for ClusterShell
    and PyYAML) holding MilkCheck from SRC or $MILKCHECK_SRC: a git dir (bare
    or not; HEAD is exported with `git archive`) or a source tree. Reuses an
    existing install. Returns the venv's python."""
    venv = os.path.join(workdir, "venv")
    python = os.path.join(venv, "bin", "python")
    check = [python, "-c", "import MilkCheck, ClusterShell, yaml"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    src = src or os.environ.get("MILKCHECK_SRC")
    if not src or not os.path.isdir(src):
        raise RuntimeError("MilkCheck source not found (%r): fetch github:cea-hpc/milkcheck "
                           "and pass its path as src or MILKCHECK_SRC" % src)
    tree = os.path.join(workdir, "src")
    if not os.path.exists(os.path.join(src, "setup.py")):      # a git dir: export HEAD
        shutil.rmtree(tree, ignore_errors=True)
        os.makedirs(tree)
        archive = subprocess.run(["git", "--git-dir", _git_dir(src), "archive", "HEAD"],
                                 stdout=subprocess.PIPE, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        src = tree
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    # pip builds it in an isolated env, with setuptools and wheel from PyPI;
    # offline, a .pth file pointing at lib/ does the same for `import MilkCheck`
    pip = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", src],
                         capture_output=True, text=True)
    if pip.returncode:
        site = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))[0]
        with open(os.path.join(site, "milkcheck-src.pth"), "w") as pth:
            pth.write(os.path.join(os.path.abspath(src), "lib") + "\n")
    subprocess.run(check, check=True)
    return python


def _git_dir(path):
    return os.path.join(path, ".git") if os.path.isdir(os.path.join(path, ".git")) else path


def write_chain_config(directory, nodes, template="demo@"):
    """Write DIRECTORY/chain.yaml: services a, b, c on NODES (a NodeSet string),
    b requiring a and c requiring b, each with start/stop/status actions on
    the systemd unit TEMPLATE<name> (demo@<name>). MilkCheck starts a on all nodes, then b,
    then c; stops in reverse (its default reverse_actions is [stop]); runs
    status in the start order. Returns DIRECTORY, for `milkcheck -c`."""
    os.makedirs(directory, exist_ok=True)
    lines = ["services:"]
    for name, requires in CHAIN:
        unit = template + name
        lines += ["  %s:" % name, "    target: '%s'" % nodes]
        if requires:
            lines.append("    require: [%s]" % requires)
        lines += ["    actions:",
                  "      start: {cmd: systemctl start %s}" % unit,
                  "      stop: {cmd: systemctl stop %s}" % unit,
                  "      status: {cmd: systemctl is-active %s}" % unit]
    with open(os.path.join(directory, "chain.yaml"), "w") as out:
        out.write("\n".join(lines) + "\n")
    return directory


def command(python, configdir, action, ssh_options=None, fanout=64, connect_timeout=5,
            ssh_path=None):
    """argv running ACTION (start, stop or status) on the whole chain of
    CONFIGDIR through MilkCheck, with these ssh options and fanout (svcctl's
    clush.conf in the test cluster: `-F .../ssh_config`, 64, connect_timeout 5)."""
    if action not in ACTIONS:
        raise ValueError("action: one of %s" % ", ".join(ACTIONS))
    argv = [python, HERE, "run", "--fanout", str(fanout),
            "--connect-timeout", str(connect_timeout)]
    if ssh_options:
        argv += ["--ssh-options", ssh_options]
    if ssh_path:
        argv += ["--ssh-path", ssh_path]
    return argv + ["--", "-c", configdir, action]


def run(argv):
    """The launcher: ClusterShell task defaults, then MilkCheck's CLI."""
    import argparse
    parser = argparse.ArgumentParser(prog="milkcheck.py run")
    parser.add_argument("--ssh-options")
    parser.add_argument("--ssh-path")
    parser.add_argument("--fanout", type=int, default=64)
    parser.add_argument("--connect-timeout", type=float, default=5)
    parser.add_argument("args", nargs="*")
    opts = parser.parse_args(argv)
    from ClusterShell.Task import task_self
    task = task_self()       # the same task MilkCheck's ActionManager will use
    for key in ("ssh_options", "ssh_path"):
        if getattr(opts, key):
            task.set_info(key, getattr(opts, key))
    task.set_info("connect_timeout", opts.connect_timeout)
    from MilkCheck.config import ConfigParser
    ConfigParser.CONFIG_PATH = os.devnull           # no site milkcheck.conf
    ConfigParser.DEFAULT_FIELDS = dict(ConfigParser.DEFAULT_FIELDS,
                                       fanout={"value": opts.fanout, "type": int})
    from MilkCheck.UI.Cli import CommandLine
    return CommandLine().execute(opts.args)


# --- selftest: fake nodes, no cluster ------------------------------------------

FAKE_SSH = r'''#!%(python)s
# fake ssh: log argv, then run the remote command locally as node HOST
import json, os, subprocess, sys, time
host, cmd = sys.argv[-2], sys.argv[-1]
log = os.environ["FAKE_LOG"]
t0 = time.time()
env = dict(os.environ, FAKE_NODE=host,
           PATH=os.environ["FAKE_BIN"] + os.pathsep + os.environ["PATH"])
rc = subprocess.call(["/bin/sh", "-c", cmd], env=env)
with open(log, "a") as out:
    out.write(json.dumps({"ssh": sys.argv, "host": host, "t0": t0, "t1": time.time()}) + "\n")
sys.exit(rc)
'''

FAKE_SYSTEMCTL = r'''#!%(python)s
# fake systemctl VERB UNIT: state in FAKE_STATE/NODE/UNIT, calls logged
import json, os, sys, time
verb, unit = sys.argv[1], sys.argv[2]
node = os.environ["FAKE_NODE"]
state = os.path.join(os.environ["FAKE_STATE"], node, unit)
os.makedirs(os.path.dirname(state), exist_ok=True)
time.sleep(0.1)                                          # a unit takes a moment
with open(os.environ["FAKE_LOG"], "a") as out:
    out.write(json.dumps({"node": node, "verb": verb, "unit": unit, "t": time.time()}) + "\n")
if verb == "start":
    open(state, "w").close()
elif verb == "stop" and os.path.exists(state):
    os.unlink(state)
elif verb == "is-active":
    active = os.path.exists(state)
    print("active" if active else "inactive")
    sys.exit(0 if active else 3)
'''


def selftest(src=None, nodes="n[1-4]", fanout=2, workdir=None):
    """Run start, status, stop, status on fake NODES and check what happened."""
    import json
    work = workdir or tempfile.mkdtemp(prefix="mc-selftest-")
    python = install(os.path.join(work, "install"), src)
    fake = os.path.join(work, "fake")
    os.makedirs(os.path.join(fake, "bin"), exist_ok=True)
    ssh = os.path.join(fake, "ssh")
    for path, text in ((ssh, FAKE_SSH), (os.path.join(fake, "bin", "systemctl"),
                                         FAKE_SYSTEMCTL)):
        with open(path, "w") as out:
            out.write(text % {"python": sys.executable})
        os.chmod(path, 0o755)
    confdir = write_chain_config(os.path.join(work, "chain"), nodes)
    options = "-F /run/svcctl-testcluster/ssh_config -oLogLevel=ERROR"
    env = dict(os.environ, FAKE_BIN=os.path.join(fake, "bin"),
               FAKE_STATE=os.path.join(fake, "state"))
    shutil.rmtree(env["FAKE_STATE"], ignore_errors=True)    # every unit inactive
    failures = []
    for step, (action, want_rc) in enumerate((("status", 6), ("start", 0), ("status", 0),
                                               ("stop", 0), ("status", 6))):
        log = env["FAKE_LOG"] = os.path.join(work, "log.%d.%s" % (step, action))
        if os.path.exists(log):
            os.unlink(log)
        argv = command(python, confdir, action, options, fanout, ssh_path=ssh)
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        records = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
        sshs = [r for r in records if "ssh" in r]
        calls = sorted((r for r in records if "verb" in r), key=lambda r: r["t"])
        print("== milkcheck %s: rc %d, %.2f s\n$ %s\n%s%s" % (
            action, proc.returncode, elapsed, " ".join(argv), proc.stdout, proc.stderr))
        per_node = {}
        for r in calls:
            per_node.setdefault(r["node"], []).append(r["unit"][-1])
        conns = {}
        for r in sshs:
            conns[r["host"]] = conns.get(r["host"], 0) + 1
        # most ssh processes alive at once
        edges = sorted([(r["t0"], 1) for r in sshs] + [(r["t1"], -1) for r in sshs])
        alive = peak = 0
        for _, delta in edges:
            alive += delta
            peak = max(peak, alive)
        print("units per node, in order: %s" % {n: "".join(u) for n, u in sorted(per_node.items())})
        print("ssh connections per node: %s; at most %d at once (fanout %d)" % (
            sorted(set(conns.values())), peak, fanout))
        if sshs:
            print("an ssh argv: %s" % sshs[0]["ssh"])
        order = "cba" if action == "stop" else "abc"
        if action == "status" and want_rc:
            order = "a"        # a inactive: b and c are DEP_ERROR, never run
        checks = [
            (proc.returncode == want_rc, "exit code %d, wanted %d" % (proc.returncode, want_rc)),
            (all("".join(u) == order for u in per_node.values()) and len(per_node) == len(conns),
             "order per node is not %s" % order),
            (all(" ".join(r["ssh"][1:]).startswith(options) for r in sshs),
             "ssh options missing"),
            (peak <= fanout, "more than %d ssh at once" % fanout),
        ]
        # service-level barrier: each service ends on all nodes before the next begins
        for first, then in zip(order, order[1:]):
            t_first = [r["t"] for r in calls if r["unit"].endswith(first)]
            t_then = [r["t"] for r in calls if r["unit"].endswith(then)]
            checks.append((max(t_first) < min(t_then), "%s overlaps %s" % (then, first)))
        for ok, why in checks:
            if not ok:
                failures.append("%s: %s" % (action, why))
        print()
    print("selftest: %s (in %s)" % ("FAILED: " + "; ".join(failures) if failures else "ok", work))
    return 1 if failures else 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        sys.exit(run(sys.argv[2:]))        # launcher options -- milkcheck's own
    if len(sys.argv) > 1 and sys.argv[1] == "selftest":
        import argparse
        parser = argparse.ArgumentParser(prog="milkcheck.py selftest")
        parser.add_argument("--src", help="MilkCheck source (default: $MILKCHECK_SRC)")
        parser.add_argument("--nodes", default="n[1-4]")
        parser.add_argument("--fanout", type=int, default=2)
        parser.add_argument("--workdir")
        opts = parser.parse_args(sys.argv[2:])
        sys.exit(selftest(opts.src, opts.nodes, opts.fanout, opts.workdir))
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
