"""A big result log for `svcctl report` and `--history`: RUNS runs of NODES
nodes, one every 10 minutes up to now, a few stories of failures. Then, for
each svcctl.py given, the time and peak RSS (VmHWM) of one run's replay and a
7-day history, each in its own process.

    python3 bench/biglog.py LOG --nodes 1000 --runs 1500 [svcctl.py ...]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

MEASURE = r"""
import io, sys, time
sys.path.insert(0, sys.argv[1])
import svcctl
started = time.monotonic()
code = svcctl.main(sys.argv[3:], io.StringIO(), io.StringIO())
took = time.monotonic() - started
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print("%s %.1f s, peak RSS %d MB" % (sys.argv[2], took, int(peak) // 1024))
"""


def write_log(path: str, nodes: int, runs: int) -> None:
    now = time.time()
    with open(path, "w") as out:
        for run in range(runs):
            when = datetime.fromtimestamp(now - (runs - run) * 600, timezone.utc)
            head = {"schema": 1, "time": when.isoformat(timespec="seconds"),
                    "run_id": "run%06d" % run, "user": "root",
                    "command": "svcctl status demo node[1-%d]" % nodes,
                    "action": "status", "units": ["demo.service"], "subject": "",
                    "services": [], "notes": [], "interrupted_by": None, "exit_code": 0,
                    "elapsed": 1.0}
            for n in range(1, nodes + 1):
                bad = n % 50 == 0 and run % (n % 7 + 2) == 0    # a few stories
                out.write(json.dumps(dict(
                    head, node="node%d" % n, reason="", duration=0.3, unit="demo.service",
                    outcome="failed" if bad else "ok", before=None,
                    after={"LoadState": "loaded", "ActiveState": "failed" if bad
                           else "active", "SubState": "failed" if bad else "running",
                           "UnitFileState": "enabled"}, rc=None,
                    message="demo.service: failed" if bad else "",
                    answer="failed" if bad else "active", service=None, declared=None,
                    drift=False, journal=None)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1500)
    parser.add_argument("svcctl", nargs="*", default=["svcctl.py"])
    args = parser.parse_intermixed_args()
    if not os.path.exists(args.log):
        write_log(args.log, args.nodes, args.runs)
    print("%s: %d MB" % (args.log, os.path.getsize(args.log) >> 20))
    for program in args.svcctl:
        where = os.path.dirname(os.path.abspath(program))
        for what, argv in (("replay", ["report", args.log]),
                           ("history 7d", ["report", args.log, "--history", "--since",
                                           "7d", "--html", args.log + ".html"])):
            subprocess.run([sys.executable, "-c", MEASURE, where,
                            "%s %s:" % (program, what)] + argv, check=True)


if __name__ == "__main__":
    main()
