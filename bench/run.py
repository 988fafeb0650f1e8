#!/usr/bin/env python3
"""svcctl benchmarks: side by side with clush, pdsh and Ansible, in one run.

    python3 bench/run.py [--nodes 8,32] [--reps 5] [--skip-ansible] [--skip-scale]

Boots (or reuses) the test cluster of tests/cluster.py, then times the same
work done by each tool on the same nodes with the same ssh settings and fanout,
takes the median of several repetitions, and prints tables of raw times and
ratios. Then the pure path (parse, classify, group, render) on synthetic
results for 1,000 to 100,000 nodes, and start-up times. Run as root, by hand:
it is not part of the test suite.
"""

import argparse
import os
import platform
import re
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


def sh(argv, env, check=False, **kw):
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw)
    if check and proc.returncode:
        sys.exit("bench: %s failed:\n%s%s" % (argv, proc.stdout, proc.stderr))
    return proc


def compare(commands, reps, before=None):
    """Median wall time of each (argv, env) over `reps` rounds. The commands
    take turns within each round, so that a slower moment of the machine
    weighs on all of them alike; `before` runs, untimed, before each one."""
    times = [[] for _ in commands]
    for _ in range(reps):
        for index, (argv, env) in enumerate(commands):
            if before:
                before()
            start = time.perf_counter()
            proc = sh(argv, env)
            times[index].append(time.perf_counter() - start)
            if proc.returncode not in (0, 3):
                sys.exit("bench: %s exited %d:\n%s%s" % (
                    " ".join(argv), proc.returncode, proc.stdout[-2000:],
                    proc.stderr[-2000:]))
    return [statistics.median(t) for t in times]


def timed(argv, env, reps, before=None):
    return compare([(argv, env)], reps, before)[0]


def boot(count):
    proc = subprocess.run([sys.executable, CLUSTER, "up", "-n", str(count)],
                          stdout=subprocess.PIPE, text=True, check=True)
    cfgdir = re.search(r"CLUSTERSHELL_CFGDIR=(\S+)", proc.stdout).group(1)
    env = dict(os.environ, CLUSTERSHELL_CFGDIR=cfgdir, NO_COLOR="1")
    return env, os.path.join(os.path.dirname(cfgdir), "ssh_config")


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


def ssh_logins(env, nodes):
    """sshd's count of accepted logins per node (the counting login included)."""
    proc = sh(["clush", "-w", nodes, "journalctl _COMM=sshd -o cat | "
               "grep -c 'Accepted publickey'"], env)
    return dict(line.split(": ") for line in proc.stdout.splitlines())


def cluster_runs(count, reps, with_ansible):
    env, ssh_config = boot(count)
    nodes = "node[1-%d]" % count
    svcctl = shutil.which("svcctl") or "svcctl"
    fan = ["-f", "64"]

    def stop_demo():
        sh(["clush", "-w", nodes, "systemctl stop demo"], env)

    def start_demo():
        # reset-failed also resets systemd's start rate limit, which dozens of
        # restarts in a row would hit (StartLimitBurst)
        sh(["clush", "-w", nodes, "systemctl reset-failed demo; systemctl start demo"], env)

    pdsh_env = dict(env, PDSH_RCMD_TYPE="ssh",
                    PDSH_SSH_ARGS="-F %s -oBatchMode=yes -oConnectTimeout=5 %%h" % ssh_config)

    def pdsh(cmd):
        return ["sh", "-c", "pdsh -f 64 -w %s '%s' | dshbak -c" % (nodes, cmd)]

    work = [
        ("start (from stopped)", stop_demo,
         [svcctl, "start", "demo", nodes] + fan,
         ["clush", "-b", "-S", "-f", "64", "-w", nodes,
          "systemctl start demo; systemctl is-active demo"],
         pdsh("systemctl start demo; systemctl is-active demo")),
        ("status", start_demo,
         [svcctl, "status", "demo", nodes] + fan,
         ["clush", "-b", "-S", "-f", "64", "-w", nodes,
          "systemctl status --no-pager demo"],
         pdsh("systemctl status --no-pager demo")),
        ("restart", start_demo,
         [svcctl, "restart", "demo", nodes] + fan,
         ["clush", "-b", "-S", "-f", "64", "-w", nodes,
          "systemctl restart demo; systemctl is-active demo"],
         pdsh("systemctl restart demo; systemctl is-active demo")),
    ]
    rows = []
    for name, before, ours, clush, pdsh_cmd in work:
        t_ours, t_clush, t_pdsh = compare(
            [(ours, env), (clush, env), (pdsh_cmd, pdsh_env)], reps, before)
        rows.append([name, "%.2f s" % t_ours, "%.2f s" % t_clush, "%.2f s" % t_pdsh,
                     "**%.2f**" % (t_ours / t_clush), "%.2f" % (t_ours / t_pdsh)])
    table("%d nodes: svcctl vs clush -b -S vs pdsh | dshbak -c (median of %d)"
          % (count, reps), ["work", "svcctl", "clush", "pdsh", "svcctl/clush",
                            "svcctl/pdsh"], rows)
    results = {"start": rows[0]}

    if with_ansible:
        inventory = tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False)
        inventory.write("[all]\n" + "\n".join("node%d" % i for i in range(1, count + 1))
                        + "\n[all:vars]\nansible_user=root\nansible_python_interpreter="
                        "/usr/bin/python3\nansible_ssh_common_args='-F %s'\n" % ssh_config)
        inventory.close()
        ans_env = dict(env, ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_STDOUT_CALLBACK="minimal",
                       ANSIBLE_LOCALHOST_WARNING="False")
        t_ans, t_ours = compare(
            [(["ansible", "all", "-i", inventory.name, "-f", "64", "-m", "systemd",
               "-a", "name=demo state=started"], ans_env),
             ([svcctl, "start", "demo", nodes] + fan, env)], max(3, reps // 2), stop_demo)
        table("%d nodes: svcctl vs Ansible ad-hoc `-m systemd state=started`" % count,
              ["svcctl", "ansible", "ansible/svcctl (target >= 5)"],
              [["%.2f s" % t_ours, "%.2f s" % t_ans, "**%.1f**" % (t_ans / t_ours)]])
        os.unlink(inventory.name)

    # connection reuse: a warm --persist run against a cold run
    runtime = tempfile.mkdtemp(dir="/tmp")
    penv = dict(env, XDG_RUNTIME_DIR=runtime)
    persist = [svcctl, "is-active", "demo", nodes, "--persist", "--persist-for", "120"] + fan
    sh(persist, penv)
    t_warm, t_cold = compare([(persist, penv),
                              ([svcctl, "is-active", "demo", nodes] + fan, env)], reps)
    sh(["sh", "-c", "for s in %s/svcctl-*/*; do ssh -o ControlPath=$s -O exit x "
        "2>/dev/null; done" % runtime], env)
    table("%d nodes: connection reuse (--persist), is-active" % count,
          ["cold", "warm (--persist)", "warm/cold (target <= 0.25)"],
          [["%.2f s" % t_cold, "%.2f s" % t_warm, "**%.2f**" % (t_warm / t_cold)]])

    # ssh connections per node for one run, counted in every node's sshd log
    before = ssh_logins(env, nodes)
    sh([svcctl, "restart", "demo", nodes] + fan, env)
    after = ssh_logins(env, nodes)
    per_node = sorted({int(after[n]) - int(before[n]) - 1 for n in after})
    table("%d nodes: ssh connections per node in one svcctl run" % count,
          ["connections per node (target: exactly 1)"], [[str(per_node)]])

    # the MilkCheck benchmark: three services, three-level chain, one file
    chain = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    chain.write("services:\n  a: {unit: demo@a, nodes: '%s'}\n"
                "  b: {unit: demo@b, nodes: '%s', requires: a}\n"
                "  c: {unit: demo@c, nodes: '%s', requires: b}\n" % (nodes, nodes, nodes))
    chain.close()
    steps = [("start", "systemctl start demo@a && systemctl start demo@b && "
                       "systemctl start demo@c; systemctl is-active demo@a demo@b demo@c"),
             ("stop", "systemctl stop demo@c; systemctl stop demo@b; systemctl stop demo@a; "
                      "systemctl is-active demo@a demo@b demo@c"),
             ("status", "systemctl is-active demo@a demo@b demo@c")]
    rows = []
    for name, command in steps:
        t_ours, t_clush = compare([([svcctl, "-c", chain.name, name] + fan, env),
                                   (["clush", "-b", "-f", "64", "-w", nodes, command], env)],
                                  reps)
        rows.append([name, "%.2f s" % t_ours, "%.2f s" % t_clush,
                     "**%.2f**" % (t_ours / t_clush)])
    os.unlink(chain.name)
    table("%d nodes: cluster file, 3 services in a 3-level chain vs one clush command "
          "(target <= 1.1)" % count, ["step", "svcctl -c", "clush", "ratio"], rows)

    if count >= 32:
        rows = []
        for fanout in (4, 8, 16, 32, 64):
            t = timed([svcctl, "is-active", "demo", nodes, "-f", str(fanout)], env, reps)
            rows.append([str(fanout), "%.2f s" % t])
        table("%d nodes: fanout (is-active)" % count, ["fanout", "svcctl"], rows)
    return results


def scale_runs():
    """The pure path on synthetic results, in a fresh process per size."""
    code = r'''
import json, resource, sys, time, tracemalloc
sys.path.insert(0, %(root)r); sys.path.insert(0, %(tests)r)
import svcctl
from framing import ACTIVE, INACTIVE, FAILED, MARKER, end, frame
from ClusterShell.MsgTree import MsgTree
n, what = int(sys.argv[1]), sys.argv[2]
ok = frame("demo.service", INACTIVE, ACTIVE) + end()
bad = frame("demo.service", INACTIVE, FAILED, 1, ["Job failed."]) + end()
raws = {"node%%d" %% i: svcctl.RawResult(stdout=list(bad if i %% 97 == 0 else ok), rc=0)
        for i in range(n)}
def work():
  if what == "svcctl":
    action = svcctl.ACTIONS["start"]
    nodes = [svcctl.node_result(k, r, action, ["demo.service"], MARKER, 10, False)
             for k, r in raws.items()]
    report = svcctl.Report("start", ["demo.service"], nodes, 0, 1.0)
    return svcctl.render_text(report), json.dumps(svcctl.report_dict(report))
  tree = MsgTree()     # what clush -b / clubak do: gather, then fold
  for k, r in raws.items():
      for line in r.stdout:
          tree.add(k, line)
  out = []
  for msg, keys in tree.walk():
      out += [str(svcctl.NodeSet.fromlist(keys)), bytes(msg).decode()]
  return "\n".join(out)
start = time.perf_counter()
work()                     # timed alone: tracemalloc slows Python down
elapsed = time.perf_counter() - start
tracemalloc.start()
work()
peak = tracemalloc.get_traced_memory()[1]
print("%%.3f %%.1f" %% (elapsed, peak / 1e6))
''' % {"root": ROOT, "tests": os.path.join(ROOT, "tests")}
    rows = []
    for n in (1000, 10000, 100000):
        ours = subprocess.run([sys.executable, "-c", code, str(n), "svcctl"],
                              capture_output=True, text=True, check=True).stdout.split()
        tree = subprocess.run([sys.executable, "-c", code, str(n), "msgtree"],
                              capture_output=True, text=True, check=True).stdout.split()
        rows.append(["{:,}".format(n), "%s s" % ours[0], "%s MB" % ours[1],
                     "%s s" % tree[0], "%s MB" % tree[1]])
    table("pure path: parse + classify + group + text + JSON, synthetic results "
          "(target at 10,000: < 0.5 s, < 200 MB)",
          ["nodes", "svcctl time", "svcctl peak mem", "MsgTree gather time",
           "MsgTree peak mem"], rows)

    html_code = r'''
import sys, time
sys.path.insert(0, %(root)r); sys.path.insert(0, %(tests)r)
import svcctl
from framing import ACTIVE, INACTIVE, MARKER, end, frame
ok = frame("demo.service", INACTIVE, ACTIVE) + end()
nodes = [svcctl.node_result("node%%d" %% i, svcctl.RawResult(stdout=list(ok), rc=0),
         svcctl.ACTIONS["start"], ["demo.service"], MARKER, 10, False) for i in range(10000)]
report = svcctl.Report("start", ["demo.service"], nodes, 0, 1.0)
start = time.perf_counter()
page = svcctl.render_html(report)
print("%%.3f %%.2f" %% (time.perf_counter() - start, len(page.encode()) / 2**20))
''' % {"root": ROOT, "tests": os.path.join(ROOT, "tests")}
    html = subprocess.run([sys.executable, "-c", html_code], capture_output=True,
                          text=True, check=True).stdout.split()
    table("HTML report of 10,000 nodes (target: < 1 s, < 2 MB)", ["render time", "size"],
          [["%s s" % html[0], "%s MB" % html[1]]])

    svcctl = shutil.which("svcctl") or "svcctl"
    env = dict(os.environ)
    names = ["svcctl --version", "svcctl --dry-run start demo node[1-10000]",
             "clush --version"]
    times = compare([([svcctl, "--version"], env),
                     ([svcctl, "--dry-run", "start", "demo", "node[1-10000]"], env),
                     (["clush", "--version"], env)], 9)
    rows = [[name, "%.3f s" % t] for name, t in zip(names, times)]
    table("start-up (median of 9)", ["command", "time"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="8,32")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--skip-ansible", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    ensure_tools(not args.skip_ansible)
    print("## svcctl benchmarks, %s\n\nmachine: %s, %d cores, Python %s, %s" % (
        time.strftime("%Y-%m-%d"), platform.machine(), os.cpu_count(),
        platform.python_version(), sh(["clush", "--version"], os.environ).stdout.strip()))
    for count in [int(x) for x in args.nodes.split(",")]:
        cluster_runs(count, args.reps, not args.skip_ansible)
    if not args.skip_scale:
        scale_runs()


if __name__ == "__main__":
    main()
