#!/usr/bin/env python3
"""svcctl benchmarks: side by side with clush, pdsh, Ansible and MilkCheck,
in one run.

    python3 bench/run.py [--nodes 32,240] [--gateways 2] [--reps 3]
                         [--milkcheck SRC] [--skip-ansible] [--skip-scale]

Boots (or reuses) the test cluster of tests/cluster.py at each size, then
times the same work done by each tool on the same nodes with the same ssh
settings and fanout, the tools taking turns within each round, and prints the
median of the rounds and the ratios; counts the systemctl processes each tool
starts on a node, and the admin host's CPU per node. With --gateways G, at the
largest size the same runs go through G gateway nodes (ClusterShell's tree
mode) too. With --milkcheck SRC (a MilkCheck source tree or git dir, see
bench/milkcheck.py), the cluster-file chain is timed against MilkCheck. Then
the pure paths on synthetic data (parse, judge, group, render at 1,000 to
100,000 nodes; fold() against NodeSet.fromlist; the HTML page; a history of
1,000 runs x 1,000 nodes) and start-up. Run as root, by hand; not part of the
test suite. Its output is bench/latest.md.
"""

import argparse
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLUSTER = os.path.join(ROOT, "tests", "cluster.py")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)


def installed(program):
    """The console script itself, as pip installed it beside this Python: not
    a wrapper in PATH (a pyenv shim is a bash script that runs pyenv, about
    0.1 s of CPU at each call, which pdsh, a binary, does not pay)."""
    beside = os.path.join(os.path.dirname(sys.executable), program)
    return beside if os.access(beside, os.X_OK) else os.path.realpath(
        shutil.which(program) or program)


SVCCTL, CLUSH = installed("svcctl"), installed("clush")
FAN = ["-f", "64"]


def sh(argv, env, check=False, **kw):
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw)
    if check and proc.returncode:
        sys.exit("bench: %s failed:\n%s%s" % (argv, proc.stdout, proc.stderr))
    return proc


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compare(commands, reps, before=None, codes=(0, 3), rounds=False):
    """Median wall time and median admin-host CPU (the command and all its
    children: ssh) of each (argv, env) over `reps` rounds. The commands take
    turns within each round, each round starting one further down the list,
    so that a slower moment of the machine weighs on all of them alike;
    `before` runs, untimed, before each one. `rounds`: also each command's
    time in each round, for ratios round by round (see `ratio`)."""
    times = [[] for _ in commands]
    cpus = [[] for _ in commands]
    for round_ in range(reps):
        for step in range(len(commands)):
            index = (round_ + step) % len(commands)
            argv, env = commands[index]
            if before:
                before()
            cpu = children_cpu()
            start = time.perf_counter()
            proc = sh(argv, env)
            times[index].append(time.perf_counter() - start)
            cpus[index].append(children_cpu() - cpu)
            if proc.returncode not in codes:
                sys.exit("bench: %s exited %d:\n%s%s" % (
                    " ".join(argv), proc.returncode, proc.stdout[-2000:],
                    proc.stderr[-2000:]))
    results = [(statistics.median(t), statistics.median(c)) for t, c in zip(times, cpus)]
    return (results, times) if rounds else results


def ratio(mine, theirs):
    """The median of the rounds' ratios: this VM's speed moves by 20 % from
    one minute to the next, and a round's commands run seconds apart."""
    return statistics.median(a / b for a, b in zip(mine, theirs))


def boot(count):
    proc = subprocess.run([sys.executable, CLUSTER, "up", "-n", str(count)],
                          stdout=subprocess.PIPE, text=True, check=True)
    cfgdir = re.search(r"CLUSTERSHELL_CFGDIR=(\S+)", proc.stdout).group(1)
    env = dict(os.environ, CLUSTERSHELL_CFGDIR=cfgdir, NO_COLOR="1")
    return env, os.path.join(os.path.dirname(cfgdir), "ssh_config"), cfgdir


def ensure_tools(want_ansible):
    if not shutil.which("pdsh"):
        subprocess.run(["apt-get", "install", "-y", "-q", "pdsh"], check=True,
                       stdout=subprocess.DEVNULL)
    if want_ansible and not shutil.which("ansible"):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "ansible-core"],
                       check=True)


def table(title, header, rows):
    print("\n### %s\n" % title)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


# --- on the real nodes ---------------------------------------------------------

class Cluster:
    """The booted cluster at one size and the commands each tool runs there."""

    def __init__(self, count):
        self.count = count
        self.env, self.ssh_config, self.cfgdir = boot(count)
        self.nodes = "node[1-%d]" % count
        self.pdsh_env = dict(self.env, PDSH_RCMD_TYPE="ssh", PDSH_SSH_ARGS=(
            "-F %s -oBatchMode=yes -oConnectTimeout=5 %%h" % self.ssh_config))

    def on(self, command, nodes=None):
        """Untimed setup, with the cheaper key exchange: half the wait at 240
        nodes. (clush -o replaces clush.conf's ssh options, which hold the -F.)"""
        sh([CLUSH, "-f", "64", "-o", "-F %s -oBatchMode=yes "
            "-oKexAlgorithms=curve25519-sha256" % self.ssh_config,
            "-w", nodes or self.nodes, command], self.env)

    def clush(self, command, nodes=None):
        return [CLUSH, "-b", "-S", "-f", "64", "-w", nodes or self.nodes, command]

    def pdsh(self, command):
        return ["sh", "-c", "pdsh -f 64 -w %s '%s' | dshbak -c" % (self.nodes, command)]


# (name, state to set before, svcctl argv, the same work as one shell line)
WORK = [
    ("start (from stopped)", "systemctl stop demo", ["start", "demo"],
     "systemctl start demo; systemctl is-active demo"),
    # cron's case: the unit is up, the start starts nothing (no grace paid)
    ("start (already running)", "systemctl start demo", ["start", "demo"],
     "systemctl start demo; systemctl is-active demo"),
    ("stop (from running)", "systemctl reset-failed demo; systemctl start demo",
     ["stop", "demo"], "systemctl stop demo; systemctl is-active demo"),
    ("restart", "systemctl reset-failed demo; systemctl start demo", ["restart", "demo"],
     "systemctl restart demo; systemctl is-active demo"),
    # a Type=notify unit (most real daemons): start returns once it is up, no grace
    ("start notify (from stopped)", "systemctl stop demo-notify", ["start", "demo-notify"],
     "systemctl start demo-notify; systemctl is-active demo-notify"),
    ("stop notify (from running)", "systemctl start demo-notify", ["stop", "demo-notify"],
     "systemctl stop demo-notify; systemctl is-active demo-notify"),
    ("restart notify", "systemctl start demo-notify", ["restart", "demo-notify"],
     "systemctl restart demo-notify; systemctl is-active demo-notify"),
    ("start notify (already running)", "systemctl start demo-notify",
     ["start", "demo-notify"], "systemctl start demo-notify; systemctl is-active demo-notify"),
    # Type=forking (sshd, nginx): start returns once the daemon forked, no grace
    ("start forking (from stopped)", "systemctl stop demo-forking",
     ["start", "demo-forking"],
     "systemctl start demo-forking; systemctl is-active demo-forking"),
    ("stop forking (from running)", "systemctl start demo-forking",
     ["stop", "demo-forking"],
     "systemctl stop demo-forking; systemctl is-active demo-forking"),
    # after a configuration push: restart what runs (svcctl reads the runs first)
    ("try-restart (running)", "systemctl reset-failed demo; systemctl start demo",
     ["try-restart", "demo"], "systemctl try-restart demo; systemctl is-active demo"),
    ("enable", "systemctl disable demo", ["enable", "demo"],
     "systemctl enable demo; systemctl is-enabled demo"),
    ("status", "systemctl start demo", ["status", "demo"],
     "systemctl status --no-pager demo"),
    ("is-active", "systemctl start demo", ["is-active", "demo"],
     "systemctl is-active demo"),
]


# at the larger sizes: a simple and a notify unit started and restarted (and the
# notify one stopped), a query
LARGER_WORK = ("start (from stopped)", "restart", "start notify (from stopped)",
               "stop notify (from running)", "restart notify", "status")


def actions(cluster, reps, works):
    rows, cpu_rows = [], []
    for name, setup, ours, line in works:
        results, times = compare([([SVCCTL] + ours + [cluster.nodes] + FAN, cluster.env),
                                  (cluster.clush(line), cluster.env),
                                  (cluster.pdsh(line), cluster.pdsh_env)],
                                 reps, lambda: cluster.on(setup), codes=(0, 1, 3),
                                 rounds=True)
        (t_ours, c_ours), (t_clush, c_clush), (t_pdsh, c_pdsh) = results
        rows.append([name, "%.2f s" % t_ours, "%.2f s" % t_clush, "%.2f s" % t_pdsh,
                     "**%.2f**" % ratio(times[0], times[1]),
                     "**%.2f**" % ratio(times[0], times[2])])
        cpu_rows.append([name] + ["%.1f ms" % (1000 * c / cluster.count)
                                  for c in (c_ours, c_clush, c_pdsh)])
    cluster.on("systemctl disable --now demo; systemctl stop demo-notify demo-forking; "
               "systemctl reset-failed")
    table("%d nodes: svcctl vs clush -b -S vs pdsh | dshbak -c (median of %d; targets: "
          "svcctl/clush <= 1, svcctl/pdsh <= 1.10; ratios: the median of the rounds' "
          "ratios)" % (cluster.count, reps),
          ["work", "svcctl", "clush", "pdsh", "svcctl/clush", "svcctl/pdsh"], rows)
    table("%d nodes: admin host CPU per node (the tool and its ssh children)"
          % cluster.count, ["work", "svcctl", "clush", "pdsh"], cpu_rows)


COUNTER = ("#!/bin/sh\necho . >> /run/svcctl-bench-count\n"
           "exec /usr/bin/systemctl \"$@\"\n")


def remote_processes(cluster):
    """systemctl processes per node for one run of each work, counted on the
    nodes by a wrapper put first in root's PATH for the count only."""
    nodes = "node[1-4]"
    cluster.on("printf '%s' '%s' > /usr/local/sbin/systemctl && chmod +x "
               "/usr/local/sbin/systemctl" % ("%s", COUNTER.replace("'", "'\\''")), nodes)
    rows = []
    try:
        for name, setup, ours, line in WORK:
            counts = []
            for argv in ([SVCCTL] + ours + [nodes], cluster.clush(line, nodes)):
                cluster.on(setup, nodes)
                cluster.on("rm -f /run/svcctl-bench-count", nodes)
                sh(argv, cluster.env)
                proc = sh([CLUSH, "-w", nodes, "wc -l < /run/svcctl-bench-count"],
                          cluster.env)
                counts.append(sorted({line.split(": ")[-1].strip()
                                      for line in proc.stdout.splitlines()}))
            rows.append([name, "/".join(counts[0]), "/".join(counts[1])])
    finally:
        cluster.on("rm -f /usr/local/sbin/systemctl /run/svcctl-bench-count; "
                   "systemctl disable --now demo; systemctl stop demo-notify demo-forking",
                   nodes)
    table("systemctl processes per node in one run (targets for svcctl: 2 for a "
          "change, 1 for a query)", ["work", "svcctl", "clush (same work)"], rows)


def ssh_logins(env, nodes):
    """sshd's count of accepted logins per node (the counting login included)."""
    proc = sh([CLUSH, "-w", nodes, "journalctl _COMM=sshd -o cat | "
               "grep -c 'Accepted publickey'"], env)
    return dict(line.split(": ") for line in proc.stdout.splitlines())


def connections(cluster, reps):
    runtime = tempfile.mkdtemp(dir="/tmp")
    penv = dict(cluster.env, XDG_RUNTIME_DIR=runtime)
    persist = [SVCCTL, "is-active", "demo", cluster.nodes, "--persist", "--persist-for",
               "120"] + FAN
    cluster.on("systemctl start demo")
    sh(persist, penv)
    (t_warm, _), (t_cold, _) = compare([(persist, penv), ([SVCCTL, "is-active", "demo",
                                                           cluster.nodes] + FAN,
                                                          cluster.env)], reps)
    sh(["sh", "-c", "for s in %s/svcctl/*; do ssh -o ControlPath=$s -O exit x "
        "2>/dev/null; done" % runtime], cluster.env)
    table("%d nodes: connection reuse (--persist), is-active" % cluster.count,
          ["cold", "warm (--persist)", "warm/cold (target <= 0.25)"],
          [["%.2f s" % t_cold, "%.2f s" % t_warm, "**%.2f**" % (t_warm / t_cold)]])
    before = ssh_logins(cluster.env, cluster.nodes)
    sh([SVCCTL, "restart", "demo", cluster.nodes] + FAN, cluster.env)
    after = ssh_logins(cluster.env, cluster.nodes)
    per_node = sorted({int(after[n]) - int(before[n]) - 1 for n in after})
    cluster.on("systemctl stop demo; systemctl reset-failed")
    table("%d nodes: ssh connections per node in one svcctl run" % cluster.count,
          ["connections per node (target: exactly 1)"], [[str(per_node)]])


def ansible(cluster, reps):
    inventory = tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False)
    inventory.write("[all]\n" + "\n".join("node%d" % i for i in range(1, cluster.count + 1))
                    + "\n[all:vars]\nansible_user=root\nansible_python_interpreter="
                    "/usr/bin/python3\nansible_ssh_common_args='-F %s'\n" % cluster.ssh_config)
    inventory.close()
    env = dict(cluster.env, ANSIBLE_HOST_KEY_CHECKING="False",
               ANSIBLE_STDOUT_CALLBACK="minimal", ANSIBLE_LOCALHOST_WARNING="False")
    (t_ans, _), (t_ours, _) = compare(
        [([installed("ansible"), "all", "-i", inventory.name, "-f", "64", "-m", "systemd",
           "-a", "name=demo state=started"], env),
         ([SVCCTL, "start", "demo", cluster.nodes] + FAN, cluster.env)],
        max(3, reps // 2), lambda: cluster.on("systemctl stop demo"))
    os.unlink(inventory.name)
    table("%d nodes: svcctl vs Ansible ad-hoc `-m systemd state=started`" % cluster.count,
          ["svcctl", "ansible", "ansible/svcctl"],
          [["%.2f s" % t_ours, "%.2f s" % t_ans, "**%.1f**" % (t_ans / t_ours)]])


def chain_steps(t):
    """The chain's steps as one clush command each, units t+a, t+b, t+c."""
    units = " ".join(t + name for name in "abc")
    start = "systemctl start %sa && systemctl start %sb && systemctl start %sc; " \
        "systemctl is-active %s" % (t, t, t, units)
    return [("start", start), ("apply", start),
            ("status", "systemctl is-active " + units),
            ("stop", "systemctl stop %sc; systemctl stop %sb; systemctl stop %sa; "
                     "systemctl is-active %s" % (t, t, t, units))]


def chain(cluster, reps, milkcheck_src, template="demo@"):
    """Three services in a three-level chain: svcctl -c, one clush command,
    MilkCheck (status is timed after start: MilkCheck's status follows the
    requirements and stops at the first one down). demo@ units are
    Type=simple (svcctl pays its start grace), demo-notify@ Type=notify."""
    path = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    path.write("services:\n  a: {unit: %sa, nodes: '%s'}\n"
               "  b: {unit: %sb, nodes: '%s', requires: a}\n"
               "  c: {unit: %sc, nodes: '%s', requires: b}\n"
               % (template, cluster.nodes, template, cluster.nodes, template, cluster.nodes))
    path.close()
    mc = None
    if milkcheck_src:
        import milkcheck
        python = milkcheck.install("/tmp/svcctl-bench-milkcheck", milkcheck_src)
        confdir = milkcheck.write_chain_config(tempfile.mkdtemp(), cluster.nodes, template)
        mc = lambda step: milkcheck.command(python, confdir, step,
                                            "-F %s" % cluster.ssh_config, 64)
    units = " ".join(template + name for name in "abc")
    setup = {"start": "systemctl stop " + units, "status": "systemctl start " + units,
             "stop": "systemctl start " + units, "apply": "systemctl stop " + units}
    rows = []
    for step, line in chain_steps(template):
        commands = [([SVCCTL, "-c", path.name, step] + FAN, cluster.env),
                    ([CLUSH, "-b", "-f", "64", "-w", cluster.nodes, line], cluster.env)]
        if mc and step != "apply":      # MilkCheck has no apply
            commands.append((mc(step), cluster.env))
        results, times = compare(commands, reps, lambda: cluster.on(setup[step]),
                                 rounds=True)
        row = [step + (" (from stopped)" if step == "apply" else "")] + [
            "%.2f s" % t for t, _ in results] + ["-"] * (mc is not None and step == "apply")
        row.append("**%.2f**" % ratio(times[0], times[1]))
        if mc:
            row.append("**%.2f**" % ratio(times[2], times[0]) if len(results) > 2 else "-")
        rows.append(row)
    cluster.on("systemctl stop " + units)
    os.unlink(path.name)
    header = ["step", "svcctl -c", "one clush command"] + (["MilkCheck"] if mc else []) + [
        "svcctl/clush (target <= 1.0)"] + (["MilkCheck/svcctl (target >= 3)"] if mc else [])
    table("%d nodes: cluster file, 3 services in a 3-level chain (%s units, Type=%s)"
          % (cluster.count, template, "notify" if "notify" in template else "simple"),
          header, rows)


def console(cluster, reps):
    """The same run from the CLI and from `svcctl gui`'s API (POST /api/runs,
    then polled every 20 ms as a script would), taking turns: the console
    is a front end on the same engine, not a slower path."""
    import http.client
    import json
    from urllib.parse import parse_qs, urlsplit
    proc = subprocess.Popen([SVCCTL, "gui", "--listen", "127.0.0.1:0"], env=cluster.env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = urlsplit(proc.stdout.readline().strip())
    headers = {"Host": "127.0.0.1:%d" % url.port, "Content-Type": "application/json",
               "Authorization": "Bearer " + parse_qs(url.query)["token"][0]}

    def call(method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=60)
        conn.request(method, path, json.dumps(body) if body else None, headers)
        reply = json.loads(conn.getresponse().read())
        conn.close()
        return reply

    def from_console(argv):
        run = call("POST", "/api/runs", {"argv": argv, "confirmed": True})
        since = 0
        while True:
            view = call("GET", "/api/runs/%s?since=%d" % (run["id"], since))
            if view["done"]:
                return
            since = view.get("next", since)
            time.sleep(0.02)
    rows = []
    for name, setup, ours, _ in WORK[:3]:
        argv = ours + [cluster.nodes] + FAN
        times = [[], []]
        ways = [lambda: sh([SVCCTL] + argv, cluster.env), lambda: from_console(argv)]
        for round_ in range(reps):      # each round started by the other, as in compare()
            for index in ((0, 1) if round_ % 2 == 0 else (1, 0)):
                cluster.on(setup)
                start = time.perf_counter()
                ways[index]()
                times[index].append(time.perf_counter() - start)
        cli, gui = (statistics.median(t) for t in times)
        rows.append([name, "%.2f s" % cli, "%.2f s" % gui,
                     "**%.2f**" % ratio(times[1], times[0])])
    proc.terminate()
    proc.wait()
    cluster.on("systemctl stop demo; systemctl reset-failed")
    table("%d nodes: the same run from the CLI and from the console's API (median of %d)"
          % (cluster.count, reps), ["work", "CLI", "console", "console/CLI (target: "
                                    "within 5 %)"], rows)


def gateways(cluster, count, reps):
    """The same runs directly and through `count` gateway nodes (tree mode)."""
    if cluster.count < 4 * count:
        return
    hostname = platform.node().split(".")[0]
    gws = ["node%d" % i for i in range(1, count + 1)]
    per = (cluster.count - count) // count
    routes = ["%s: %s" % (hostname, ",".join(gws))]
    first = count + 1
    for index, gateway in enumerate(gws):
        last = cluster.count if index == count - 1 else first + per - 1
        routes.append("%s: node[%d-%d]" % (gateway, first, last))
        first = last + 1
    targets = "node[%d-%d]" % (count + 1, cluster.count)
    tree_cfg = tempfile.mkdtemp()
    shutil.copytree(cluster.cfgdir, tree_cfg, dirs_exist_ok=True)
    with open(os.path.join(tree_cfg, "topology.conf"), "w") as handle:
        handle.write("[routes]\n" + "\n".join(routes) + "\n")
    tree = dict(cluster.env, CLUSTERSHELL_CFGDIR=tree_cfg)
    rows = []
    for name, setup, ours, line in (WORK[0], WORK[4]):
        results = compare(
            [([SVCCTL] + ours + [targets] + FAN, cluster.env),
             (cluster.clush(line, targets), cluster.env),
             ([SVCCTL] + ours + [targets] + FAN, tree),
             (cluster.clush(line, targets), tree)],
            reps, lambda: cluster.on(setup, targets), codes=(0, 1, 3))
        n = cluster.count - count
        rows.append([name] + ["%.2f s" % t for t, _ in results] + [
            "**%.2f**" % (results[0][0] / results[1][0]),
            "**%.2f**" % (results[2][0] / results[3][0])] + [
            "%.1f / %.1f ms" % (1000 * results[0][1] / n, 1000 * results[2][1] / n)])
    cluster.on("systemctl stop demo", targets)
    table("%d nodes through %d gateways (%s), %d targets each: direct and tree mode"
          % (cluster.count, count, ", ".join(gws), per),
          ["work", "svcctl direct", "clush direct", "svcctl tree", "clush tree",
           "svcctl/clush direct", "svcctl/clush tree", "svcctl admin CPU/node direct / tree"],
          rows)


def key_exchange(cluster, reps):
    """OpenSSH 9.2's default post-quantum key exchange against curve25519:
    a site's choice, measured (svcctl and clush alike)."""
    # Both tools' ssh options replace clush.conf's, which hold the -F.
    options = "-F %s -oBatchMode=yes -oKexAlgorithms=curve25519-sha256" % cluster.ssh_config
    kex = ["--ssh-options=" + options]
    cluster.on("systemctl start demo")
    base = [SVCCTL, "is-active", "demo", cluster.nodes] + FAN
    clush = [CLUSH, "-b", "-S", "-f", "64", "-w", cluster.nodes]
    results = compare([(base, cluster.env), (base + kex, cluster.env),
                       (clush + ["systemctl is-active demo"], cluster.env),
                       (clush + ["-o", options, "systemctl is-active demo"],
                        cluster.env)], reps)
    cluster.on("systemctl stop demo")
    table("%d nodes: ssh key exchange, is-active (default sntrup761x25519 vs "
          "-oKexAlgorithms=curve25519-sha256)" % cluster.count,
          ["tool", "default", "curve25519", "ratio", "admin CPU/node default / curve25519"],
          [[name, "%.2f s" % a[0], "%.2f s" % b[0], "**%.2f**" % (b[0] / a[0]),
            "%.1f / %.1f ms" % (1000 * a[1] / cluster.count, 1000 * b[1] / cluster.count)]
           for name, a, b in (("svcctl", results[0], results[1]),
                              ("clush", results[2], results[3]))])


def fanout(cluster, reps):
    rows = []
    for value in (8, 16, 32, 64, 128):
        (t, _), = compare([([SVCCTL, "is-active", "demo", cluster.nodes, "-f", str(value)],
                            cluster.env)], reps)
        rows.append([str(value), "%.2f s" % t])
    table("%d nodes: fanout (is-active)" % cluster.count, ["fanout", "svcctl"], rows)


def cluster_runs(count, reps, args, sizes):
    """Everything at the smallest size; start and status at the larger ones
    (and, at the largest, through gateways), so that a run of 32, 128 and 240
    nodes stays well under 30 minutes on 2 cores."""
    cluster = Cluster(count)
    smallest = count == min(sizes)
    if not smallest:
        reps = max(2, reps - 1)     # larger runs are steadier, and long
    actions(cluster, reps, WORK if smallest else [
        work for work in WORK if work[0] in LARGER_WORK])
    if smallest:
        remote_processes(cluster)
        connections(cluster, reps)
        if not args.skip_ansible:
            ansible(cluster, reps)
        chain(cluster, reps, args.milkcheck)
        chain(cluster, reps, args.milkcheck, "demo-notify@")
        console(cluster, reps)
        key_exchange(cluster, reps)
        fanout(cluster, reps)
    if count == max(sizes) and args.gateways:
        gateways(cluster, args.gateways, reps)


# --- pure paths, synthetic data -------------------------------------------------

def python(code, *argv):
    proc = subprocess.run([sys.executable, "-c", code] + [str(a) for a in argv],
                          capture_output=True, text=True, check=True)
    return proc.stdout.split()


PRELUDE = r'''
import json, resource, sys, time, tracemalloc
sys.path.insert(0, %(root)r); sys.path.insert(0, %(tests)r)
import svcctl
from framing import ACTIVE, INACTIVE, FAILED, MARKER, end, frame
''' % {"root": ROOT, "tests": os.path.join(ROOT, "tests")}

PURE = PRELUDE + r'''
from ClusterShell.MsgTree import MsgTree
n, what = int(sys.argv[1]), sys.argv[2]
ok = frame("demo.service", INACTIVE, ACTIVE) + end()
bad = frame("demo.service", INACTIVE, FAILED, 1, ["Job failed."]) + end()
raws = {"node%d" % i: svcctl.RawResult(stdout=list(bad if i % 97 == 0 else ok), rc=0)
        for i in range(n)}
protocol = svcctl.Protocol(svcctl.ACTIONS["start"], MARKER)
steps = [svcctl.Step("demo.service")]
def work():
  if what == "svcctl":     # what a run does once the replies are in; JSON as written
    nodes = [svcctl.read_reply(protocol, k, r, steps) for k, r in raws.items()]
    report = svcctl.Report("start", ["demo.service"], nodes, 0, 1.0)
    return svcctl.render_text(report), sum(len(c) for c in svcctl.json_chunks(report))
  tree = MsgTree()     # what clush -b / clubak do: gather, then fold
  for k, r in raws.items():
      for line in r.stdout:
          tree.add(k, line)
  return "\n".join(str(svcctl.NodeSet.fromlist(keys)) + "\n" + bytes(msg).decode()
                   for msg, keys in tree.walk())
start = time.perf_counter()
work()                     # timed alone: tracemalloc slows Python down
elapsed = time.perf_counter() - start
svcctl._judged_reply.cache_clear()
tracemalloc.start()
work()
print("%.3f %.1f" % (elapsed, tracemalloc.get_traced_memory()[1] / 1e6))
'''

FOLD = PRELUDE + r'''
import random
from ClusterShell.NodeSet import NodeSet, RESOLVER_NOGROUP
n, shape = int(sys.argv[1]), sys.argv[2]
random.seed(7)
names = {
  "plain": ["node%d" % i for i in range(n)],
  "padded": ["node%05d" % i for i in range(n)],
  "rack-node": ["r%dn%d" % (i // 1000, i % 1000) for i in range(n)],
  "fqdn, gaps": ["cn%d.cluster.example.org" % i for i in random.sample(range(2 * n), n)],
  "constant suffix": ["node%05d-ib0" % i for i in range(n)],
}[shape]
random.shuffle(names)
start = time.perf_counter()
ours = str(svcctl.fold(names))
middle = time.perf_counter()
theirs = str(NodeSet.fromlist(names, resolver=RESOLVER_NOGROUP))
end_ = time.perf_counter()
assert ours == theirs
print("%.3f %.3f" % (middle - start, end_ - middle))
'''

HTML = PRELUDE + r'''
ok = frame("demo.service", INACTIVE, ACTIVE) + end()
protocol = svcctl.Protocol(svcctl.ACTIONS["start"], MARKER)
nodes = [svcctl.read_reply(protocol, "node%d" % i, svcctl.RawResult(stdout=list(ok), rc=0),
                           [svcctl.Step("demo.service")]) for i in range(10000)]
report = svcctl.Report("start", ["demo.service"], nodes, 0, 1.0)
groups = {"@rack%d" % r: svcctl.NodeSet("node[%d-%d]" % (100 * r, 100 * r + 99))
          for r in range(100)}
start = time.perf_counter()
page = svcctl.render_html(report, groups)
print("%.3f %.2f" % (time.perf_counter() - start, len(page.encode()) / 2**20))
'''

HISTORY = PRELUDE + r'''
import tempfile
runs, count = int(sys.argv[1]), int(sys.argv[2])
ok = frame("demo.service", INACTIVE, ACTIVE) + end()
bad = frame("demo.service", INACTIVE, FAILED, 1, ["Job failed."]) + end()
protocol = svcctl.Protocol(svcctl.ACTIONS["start"], MARKER)
path = tempfile.mktemp()
for run in range(runs):
    nodes = [svcctl.read_reply(protocol, "node%d" % i, svcctl.RawResult(
        stdout=list(bad if (i + run) % 53 == 0 else ok), rc=0), [svcctl.Step("demo.service")])
        for i in range(count)]
    report = svcctl.Report("start", ["demo.service"], nodes, 1.7e9 + run * 600, 1.0,
                           run_id="run%06d" % run, user="root")
    svcctl.append_log(path, svcctl.log_lines(report))
size = __import__("os").path.getsize(path) / 2**20
start = time.perf_counter()
history, skipped = svcctl.read_history(path)
read = time.perf_counter() - start
text = svcctl.render_history_text(history)
page = svcctl.render_history_html(history)
total = time.perf_counter() - start
print("%.1f %.2f %.2f %.2f" % (size, read, total, len(page.encode()) / 2**20))
'''


def scale_runs():
    rows = []
    for n in (1000, 10000, 100000):
        ours = python(PURE, n, "svcctl")
        tree = python(PURE, n, "msgtree")
        rows.append(["{:,}".format(n), "%s s" % ours[0], "%s MB" % ours[1],
                     "%s s" % tree[0], "%s MB" % tree[1]])
    table("pure path: parse + judge + group + text + JSON, synthetic results (targets: "
          "10,000 < 0.3 s; 100,000 < 2 s and < 200 MB)",
          ["nodes", "svcctl time", "svcctl peak mem", "ClusterShell MsgTree gather time",
           "MsgTree peak mem"], rows)
    rows = []
    for shape in ("plain", "padded", "rack-node", "fqdn, gaps", "constant suffix"):
        ours, theirs = python(FOLD, 100000, shape)
        rows.append([shape, "%s s" % ours, "%s s" % theirs,
                     "**%.2f**" % (float(ours) / max(float(theirs), 1e-6))])
    table("fold() vs NodeSet.fromlist, 100,000 shuffled names, same result (target: <= 1)",
          ["shape", "fold", "fromlist", "fold/fromlist"], rows)
    page = python(HTML)
    table("HTML page of 10,000 nodes in 100 groups (target: < 1 s, < 2 MB)",
          ["render time", "size"], [["%s s" % page[0], "%s MB" % page[1]]])
    size, read, total, html = python(HISTORY, 1000, 1000)
    table("history of a log of 1,000 runs x 1,000 nodes", ["log size", "read", "read + "
          "text + HTML", "HTML size"], [["%s MB" % size, "%s s" % read, "%s s" % total,
                                          "%s MB" % html]])
    env = dict(os.environ)
    names = ["svcctl --version", "svcctl --dry-run start demo node[1-10000]",
             "clush --version"]
    times = compare([([SVCCTL, "--version"], env),
                     ([SVCCTL, "--dry-run", "start", "demo", "node[1-10000]"], env),
                     ([CLUSH, "--version"], env)], 30)
    imports = []
    for module in ("svcctl", "ClusterShell.CLI.Clush"):
        best = []
        for _ in range(5):      # the first may compile the module; the best of 5
            proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                                   "import " + module], capture_output=True, text=True,
                                  cwd="/")
            best.append(int(proc.stderr.strip().splitlines()[-1].split("|")[1]) / 1000)
        imports.append(min(best))
    rows = [[name, "%.3f s" % t, "%.0f ms" % (cpu * 1000)] for name, (t, cpu)
            in zip(names, times)]
    rows.append(["svcctl --version / clush --version", "**%.2f**" % (times[0][0] / times[2][0]),
                 "**%.2f**" % (times[0][1] / times[2][1])])
    rows.append(["import svcctl / import clush's CLI (python -X importtime)",
                 "%.1f ms / %.1f ms = **%.2f**" % (imports[0], imports[1],
                                                  imports[0] / imports[1]), ""])
    table("start-up (median of 30, interleaved; target: svcctl --version <= 0.6 x clush "
          "--version)", ["command", "time", "CPU"], rows)



def compiled_svcctl():
    """svcctl's bytecode on disk, as clush's is (pip compiles what it
    installs): an editable install under PYTHONDONTWRITEBYTECODE=1 compiled
    its 7,000 lines at every start, 80 ms of CPU a run."""
    path = sh([sys.executable, "-c", "import svcctl; print(svcctl.__file__)"],
              os.environ).stdout.strip()
    import py_compile
    py_compile.compile(path, doraise=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="32,240")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--milkcheck", metavar="SRC", default=os.environ.get("MILKCHECK_SRC"))
    parser.add_argument("--skip-ansible", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    ensure_tools(not args.skip_ansible)
    compiled_svcctl()
    started = time.monotonic()
    print("## svcctl benchmarks, %s\n\nmachine: %s, %d cores, Python %s, %s; svcctl %s"
          % (time.strftime("%Y-%m-%d"), platform.machine(), os.cpu_count(),
             platform.python_version(), sh([CLUSH, "--version"], os.environ).stdout.strip(),
             sh([SVCCTL, "--version"], os.environ).stdout.strip()))
    sizes = [int(x) for x in args.nodes.split(",")]
    for count in sizes:
        cluster_runs(count, args.reps, args, sizes)
    if not args.skip_scale:
        scale_runs()
    print("\nbench: %.0f s in all" % (time.monotonic() - started))


if __name__ == "__main__":
    main()
