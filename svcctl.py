#!/usr/bin/env python3
"""svcctl: systemctl for a whole cluster.

    svcctl [options] ACTION UNIT[,UNIT...] NODESET [NODESET...]
    svcctl [options] daemon-reload NODESET [NODESET...]
    svcctl [options] ping NODESET [NODESET...]
    svcctl [options] -c FILE ACTION|apply [SERVICE...]
    svcctl report LOGFILE [--run ID] [--html FILE]

Runs one systemd action on every node of a ClusterShell NodeSet over SSH, one
SSH connection per node, and prints one grouped answer in which every targeted
node is accounted for: ok, changed, failed, not found, masked, denied,
timed out or unreachable.

Each node runs a short POSIX sh script that reads the unit's state with
`systemctl show`, performs the action, and reads the state again, so svcctl
knows what changed (Ansible's CHANGED/ok) in a single round trip. Nodes need
only sshd and systemctl.

Exit codes (the most severe condition met wins, in this order):

    130  interrupted (SIGINT); 143 terminated (SIGTERM); partial results printed
      4  some node unreachable or timed out
      1  the action failed on some node (failed, not found, masked, denied,
         error, skipped), or the result log could not be written
      3  a query (status, is-active, is-enabled, is-failed, ping) answered
         "no" on some node, like systemctl's own LSB code 3
      0  success on every node
      2  usage error: bad option, unit name, NodeSet, clush.conf, cluster file
         or topology; nothing was run

The file reads top to bottom: model, input validation, remote command,
execution (the only code that talks to the ClusterShell Task), results,
plans (which nodes run which steps, wave after wave), rendering, result log,
cluster file, command line.
"""

import argparse
import configparser
import fcntl
import functools
import getpass
import html
import json
import os
import re
import resource
import secrets
import shlex
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from string import Template
from typing import Dict, Generator, Iterable, List, Optional, Sequence, Tuple

from ClusterShell.Defaults import config_paths
from ClusterShell.Event import EventHandler
from ClusterShell.NodeSet import NodeSet, NodeSetException, std_group_resolver
from ClusterShell.NodeUtils import GroupResolverError, GroupSourceError
from ClusterShell.Propagation import RouteResolvingError
from ClusterShell.RangeSet import RangeSet
from ClusterShell.Task import task_self
from ClusterShell.Topology import TopologyError

__version__ = "0.1.0"
PROG = "svcctl"

# =============================================================================
# Model
# =============================================================================

# Outcome of one unit on one node, from best to worst. A node's outcome is the
# worst of its units'. The exit code follows the worst outcome of the run.
OUTCOMES = ("ok", "changed", "negative", "drift", "skipped", "not-found", "masked",
            "denied", "failed", "error", "timeout", "unreachable",
            "interrupted")
PROBLEMS = frozenset(OUTCOMES[OUTCOMES.index("skipped"):])
NOTEWORTHY = PROBLEMS | {"negative", "drift"}     # what --quiet still shows
SEVERITY = {name: rank for rank, name in enumerate(OUTCOMES)}

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NEGATIVE = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_FOR_OUTCOME = {
    "ok": EXIT_OK, "changed": EXIT_OK, "negative": EXIT_NEGATIVE, "drift": EXIT_NEGATIVE,
    "skipped": EXIT_FAILED, "not-found": EXIT_FAILED, "masked": EXIT_FAILED,
    "denied": EXIT_FAILED, "failed": EXIT_FAILED, "error": EXIT_FAILED,
    "timeout": EXIT_UNREACHABLE, "unreachable": EXIT_UNREACHABLE,
    "interrupted": EXIT_INTERRUPTED,
}


@dataclass(frozen=True)
class Action:
    """What a svcctl action runs and how its result is judged."""
    name: str
    kind: str                       # "change", "query" or "node" (no unit)
    systemctl: Tuple[str, ...]      # systemctl arguments before "--"
    always_changes: bool = False    # restart & co. change even when states match


def _actions() -> Dict[str, Action]:
    change = ("start", "stop", "try-restart", "enable", "disable", "mask",
              "unmask", "reset-failed")
    table = {name: Action(name, "change", (name,)) for name in change}
    for name in ("restart", "reload", "reload-or-restart"):
        table[name] = Action(name, "change", (name,), always_changes=True)
    for name in ("is-active", "is-enabled", "is-failed"):
        table[name] = Action(name, "query", (name,))
    table["status"] = Action("status", "query", ("status", "--no-pager"))
    table["daemon-reload"] = Action("daemon-reload", "node", ("daemon-reload",))
    table["ping"] = Action("ping", "node", ("is-system-running",))
    # cluster file only: make each unit match its declared state
    table["apply"] = Action("apply", "change", ())
    return table


# Tearing-down actions run a cluster file's services in reverse dependency order.
REVERSE_ACTIONS = frozenset(("stop", "disable", "mask"))


ACTIONS = _actions()
STATE_KEYS = ("LoadState", "ActiveState", "SubState", "UnitFileState")


@dataclass(frozen=True)
class UnitState:
    """A unit's state as `systemctl show` reports it."""
    load: str = ""
    active: str = ""
    sub: str = ""
    file: str = ""

    @classmethod
    def from_properties(cls, props: Dict[str, str]) -> Optional["UnitState"]:
        if "LoadState" not in props:
            return None
        return cls(props.get("LoadState", ""), props.get("ActiveState", ""),
                   props.get("SubState", ""), props.get("UnitFileState", ""))

    def describe(self) -> str:
        """One normalised line: `active (running), enabled`."""
        if self.load in ("not-found", "masked", "bad-setting", "error"):
            return self.load
        text = "%s (%s)" % (self.active, self.sub) if self.sub else self.active
        return "%s, %s" % (text, self.file) if self.file else text

    def as_dict(self) -> Dict[str, str]:
        return dict(zip(STATE_KEYS, (self.load, self.active, self.sub, self.file)))


@dataclass
class UnitResult:
    """One unit on one node."""
    unit: str
    outcome: str
    before: Optional[UnitState] = None
    after: Optional[UnitState] = None
    rc: Optional[int] = None
    message: str = ""               # the action's own output, sanitised
    answer: str = ""                # first line of a query's answer

    def as_dict(self) -> dict:
        return {"unit": self.unit, "outcome": self.outcome,
                "before": self.before.as_dict() if self.before else None,
                "after": self.after.as_dict() if self.after else None,
                "rc": self.rc, "message": self.message}


@dataclass
class NodeResult:
    """Everything svcctl learned about one node in one run."""
    node: str
    units: List[UnitResult]
    reason: str = ""                # why the node as a whole was not reached
    duration: Optional[float] = None

    @property
    def outcome(self) -> str:
        return max((u.outcome for u in self.units), key=SEVERITY.__getitem__)


@dataclass
class Report:
    """The result of a whole run, the one source for every output format."""
    action: str
    units: List[str]
    nodes: List[NodeResult]
    started: float
    elapsed: float
    command: str = ""
    user: str = ""
    run_id: str = ""
    interrupted_by: str = ""        # "SIGINT", "SIGTERM" or ""
    notes: List[str] = field(default_factory=list)
    services: List[dict] = field(default_factory=list)   # cluster file views
    subject: str = ""               # what the run acted on, when not units

    @functools.cached_property
    def outcomes(self) -> Dict[str, NodeSet]:
        """Each outcome's NodeSet, folded once, when the report is final."""
        groups: Dict[str, List[str]] = {}
        for result in self.nodes:
            groups.setdefault(result.outcome, []).append(result.node)
        return {name: fold(groups[name])
                for name in OUTCOMES if name in groups}

    def exit_code(self) -> int:
        if self.interrupted_by == "SIGTERM":
            return EXIT_TERMINATED
        if self.interrupted_by:
            return EXIT_INTERRUPTED
        codes = {EXIT_FOR_OUTCOME[r.outcome] for r in self.nodes}
        for code in (EXIT_UNREACHABLE, EXIT_FAILED, EXIT_NEGATIVE):
            if code in codes:
                return code
        return EXIT_OK


@dataclass(frozen=True)
class Step:
    """One unit to act on, in a node's remote script."""
    unit: str
    requires: Tuple[int, ...] = ()  # earlier steps that must have succeeded here
    state: Optional[str] = None     # apply: "running" or "stopped"
    enabled: Optional[bool] = None  # apply: enablement, None to leave alone


_NUMBERED_RE = re.compile(r"([A-Za-z0-9._:-]*?)(\d+)([A-Za-z._:-]*)", re.ASCII)


def fold(names: Iterable[str]) -> NodeSet:
    """NodeSet.fromlist, ten times faster on thousands of names: names are
    grouped by their last number into one pattern per prefix and suffix, so
    ClusterShell parses a few patterns instead of every name."""
    ranges: Dict[Tuple[str, str], RangeSet] = {}
    others: List[str] = []
    for name in names:
        match = _NUMBERED_RE.fullmatch(name)
        if match:
            ranges.setdefault((match.group(1), match.group(3)), RangeSet()).add(
                match.group(2))
        else:
            others.append(name)
    nodes = NodeSet.fromlist(others)
    for (prefix, suffix), numbers in ranges.items():
        nodes.update(NodeSet("%s[%s]%s" % (prefix, numbers, suffix)))
    return nodes


class UsageError(Exception):
    """Bad input: reported as `svcctl: message`, exit 2, nothing run."""


# =============================================================================
# Input validation
# =============================================================================

UNIT_SUFFIXES = ("service", "socket", "device", "mount", "automount", "swap",
                 "target", "path", "timer", "slice", "scope")
# systemd's unit-name rules, ASCII only (look-alike letters are refused).
_UNIT_RE = re.compile(r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(%s)"
                      % "|".join(UNIT_SUFFIXES), re.ASCII)
_NODE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:-]*", re.ASCII)
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*", re.ASCII)
UNIT_NAME_MAX = 255


def normalise_unit(name: str) -> str:
    """Validate one unit name; a name without a known suffix gets `.service`."""
    if not name:
        raise UsageError("empty unit name")
    full = name
    if name.rsplit(".", 1)[-1] not in UNIT_SUFFIXES or "." not in name:
        full = name + ".service"
    if len(full) > UNIT_NAME_MAX or not _UNIT_RE.fullmatch(full):
        raise UsageError("invalid unit name: %s" % printable(name))
    return full


def parse_units(text: str) -> List[str]:
    """`demo,web@1` -> ['demo.service', 'web@1.service'], no duplicates."""
    units: List[str] = []
    for name in text.split(","):
        unit = normalise_unit(name.strip())
        if unit not in units:
            units.append(unit)
    return units


def parse_nodes(patterns: Sequence[str], exclude: Sequence[str] = (),
               resolver=None) -> NodeSet:
    """Union of NodeSet patterns minus exclusions; never empty, names checked."""
    try:
        nodes = NodeSet(resolver=resolver)
        for pattern in patterns:
            nodes.update(NodeSet(pattern, resolver=resolver))
        for pattern in exclude:
            nodes.difference_update(NodeSet(pattern, resolver=resolver))
    except (NodeSetException, GroupResolverError, GroupSourceError) as exc:
        raise UsageError("invalid NodeSet: %s" % printable(str(exc)))
    if not nodes:
        raise UsageError("no node to run on: %s" % printable(" ".join(patterns)))
    for node in nodes:
        # A node name becomes an ssh argument: one starting with '-' would be
        # read as an option (-oProxyCommand=...).
        if len(node) > 253 or not _NODE_RE.fullmatch(node):
            raise UsageError("invalid node name: %s" % printable(node))
    return nodes


def check_user(user: Optional[str]) -> Optional[str]:
    if user is not None and not _USER_RE.fullmatch(user):
        raise UsageError("invalid user name: %s" % printable(user))
    return user


def check_ssh_options(options: Optional[str]) -> Optional[str]:
    if options is None:
        return None
    try:
        shlex.split(options)
    except ValueError as exc:
        raise UsageError("invalid ssh options %s: %s" % (printable(options), exc))
    if "\x00" in options:
        raise UsageError("invalid ssh options: NUL byte")
    return options


_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_TAB_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str, keep_tabs: bool = False) -> str:
    """Neutralise control characters (escape sequences, NUL, newlines...), so
    that what a user typed or a node printed stays on its one line."""
    pattern = _CONTROL_BUT_TAB_RE if keep_tabs else _CONTROL_RE
    return pattern.sub(lambda m: "\\x%02x" % ord(m.group())
                       if ord(m.group()) < 256 else "\\u%04x" % ord(m.group()), text)


@dataclass
class Settings:
    """Connection settings: clush.conf [Main], then the command line."""
    fanout: int = 64
    connect_timeout: float = 10.0
    command_timeout: float = 300.0
    ssh_user: Optional[str] = None
    ssh_path: Optional[str] = None
    ssh_options: Optional[str] = None


def read_clush_conf(paths: Optional[Sequence[str]] = None) -> Settings:
    """Read clush.conf's [Main] keys the way clush does (confdir included).

    clush's command_timeout of 0 means "never"; svcctl keeps its own bound
    then, so that a cron run always ends (`-u 0` disables it explicitly).
    """
    parser = configparser.ConfigParser()
    try:
        parsed = parser.read(paths if paths is not None
                             else config_paths("clush.conf"))
        if parsed and parser.has_option("Main", "confdir"):
            cfgdir = os.path.dirname(parsed[-1])
            for confdir in shlex.split(parser.get("Main", "confdir")):
                confdir = Template(confdir).safe_substitute(CFGDIR=cfgdir)
                if os.path.isdir(confdir):
                    parser.read(sorted(
                        os.path.join(confdir, name) for name in os.listdir(confdir)
                        if name.endswith(".conf")))
        settings = Settings()
        if not parser.has_section("Main"):
            return settings
        main = parser["Main"]
        if "fanout" in main:
            settings.fanout = check_fanout(main.getint("fanout"))
        if "connect_timeout" in main:
            settings.connect_timeout = check_timeout(main.getfloat("connect_timeout"))
        if main.getfloat("command_timeout", fallback=0) > 0:
            settings.command_timeout = main.getfloat("command_timeout")
        settings.ssh_user = check_user(main.get("ssh_user") or None)
        settings.ssh_path = main.get("ssh_path") or None
        settings.ssh_options = check_ssh_options(main.get("ssh_options") or None)
        return settings
    except (configparser.Error, ValueError, UsageError) as exc:
        raise UsageError("clush.conf: %s" % printable(str(exc)))


def check_fanout(value: int) -> int:
    if value < 1:
        raise UsageError("fanout must be at least 1, not %d" % value)
    return value


def check_timeout(value: float) -> float:
    if not value >= 0 or value == float("inf"):
        raise UsageError("a timeout must be a number of seconds >= 0")
    return value


# =============================================================================
# Remote command
# =============================================================================

# The remote side is one line of POSIX sh. Every line svcctl itself prints
# starts with a marker carrying a random per-run nonce, so nothing a unit
# prints can be mistaken for svcctl's framing. The units' states are read in
# one `systemctl show` before and one after, folded onto a marker line
# (unquoted $(...) joins the Key=Value lines; none of these values has a
# space; `set -f` stops globbing):
#   MARK state before LoadState=loaded ActiveState=inactive ... LoadState=...
#   MARK unit demo.service
#   ...the action's own output, stdout and stderr...
#   MARK rc 0
#   MARK state after LoadState=loaded ActiveState=active ...
#   MARK end
# A query needs no action at all: its answer is read from the state after.
# Few systemctl calls and few lines per node keep the run as fast as clush.
_REMOTE_PRELUDE = (
    "set -f; LC_ALL=C; SYSTEMD_PAGER=cat; SYSTEMD_COLORS=0; "
    "export LC_ALL SYSTEMD_PAGER SYSTEMD_COLORS; m=%(marker)s; "
    "s() { systemctl show -p %(keys)s -- \"$@\" 2>&1; }; "
    "a() { u=$1; shift; echo \"$m unit $u\"; \"$@\" </dev/null 2>&1; r=$?; "
    "echo \"$m rc $r\"; }; "
)
# apply (cluster file): read one unit's state, act only where it differs from
# the declared one (p UNIT running|stopped|- yes|no|-), state on the markers:
#   MARK unit UNIT before K=V...   ...output...   MARK rc N after K=V...
_REMOTE_APPLY = (
    "x=%(sudo)s; "
    "p() { u=$1; b=$(echo $(s \"$u\")); echo \"$m unit $u before $b\"; r=0; "
    "case \" $b \" in *\" ActiveState=active \"*|*\" ActiveState=reloading \"*|"
    "*\" ActiveState=activating \"*) on=1;; *) on=0;; esac; "
    "case \" $b \" in *\" UnitFileState=enabled \"*) en=1;; *) en=0;; esac; "
    "c() { $x systemctl \"$@\" -- \"$u\" </dev/null 2>&1 || r=$?; }; "
    "if [ \"$2$on\" = running0 ]; then c start; fi; "
    "if [ \"$2$on\" = stopped1 ]; then c stop; fi; "
    "if [ \"$3$en\" = yes0 ]; then c enable; fi; "
    "if [ \"$3$en\" = no1 ]; then c disable; fi; "
    "echo \"$m rc $r after\" $(s \"$u\"); }; "
)


def new_marker() -> str:
    return "@@svcctl-" + secrets.token_hex(6)


def runs_per_unit(action: Action, verbose: bool) -> bool:
    """Does the action run a command per unit? Queries are answered from the
    state read once, except `status -v`, which shows systemctl's own text."""
    return action.kind == "change" or (action.name == "status" and verbose)


def needs_before(action: Action) -> bool:
    """Restart & co. change whatever the state was: no need to read it first
    (each `systemctl show` costs a few ms per unit on every node)."""
    return action.kind == "change" and not action.always_changes


def build_remote_command(action: Action, steps: Sequence, marker: str,
                         sudo: bool = False, now: bool = False,
                         verbose: bool = False) -> str:
    """The exact command line sent to a node: `steps` are unit names or Steps.

    Step i leaves its exit code in $sI; a step whose requirements did not all
    succeed on this node is not run and says `skipped`."""
    steps = [Step(step) if isinstance(step, str) else step for step in steps]
    argv = (["sudo", "-n"] if sudo and action.kind == "change" else []) \
        + ["systemctl"] + list(action.systemctl)
    if now and action.name in ("enable", "disable"):
        argv.append("--now")
    script = _REMOTE_PRELUDE % {"marker": marker, "keys": ",".join(STATE_KEYS)}
    if action.kind == "node":
        return script + "a %s %s; echo \"$m end\"" % (action.name, " ".join(argv))
    units = " ".join(shlex.quote(step.unit) for step in steps)
    if action.name == "apply":
        script += _REMOTE_APPLY % {"sudo": "'sudo -n'" if sudo else "''"}
    elif needs_before(action):
        script += "echo \"$m state before\" $(s %s); " % units
    if runs_per_unit(action, verbose) or action.name == "apply":
        for index, step in enumerate(steps):
            unit = shlex.quote(step.unit)
            if action.name == "apply":
                command = "p %s %s %s" % (unit, step.state or "-", {
                    True: "yes", False: "no", None: "-"}[step.enabled])
            else:
                command = "a %s %s -- %s" % (unit, " ".join(argv), unit)
            command += "; s%d=$r" % index
            if step.requires:
                needed = "".join("$s%d" % i for i in step.requires)
                command = "if [ \"%s\" = %s ]; then %s; else echo \"$m unit\" %s " \
                    "skipped; s%d=1; fi" % (needed, "0" * len(step.requires), command,
                                            unit, index)
            script += command + "; "
    if action.name != "apply":
        script += "echo \"$m state after\" $(s %s); " % units
    return script + "echo \"$m end\""


# =============================================================================
# Execution: the only code that talks to the ClusterShell Task
# =============================================================================

OUTPUT_CAP = 1 << 20    # bytes kept per node; framing lines are always kept


@dataclass
class RawResult:
    """What came back from one node: output lines, ssh's stderr, exit code."""
    stdout: List[bytes] = field(default_factory=list)
    stderr: List[bytes] = field(default_factory=list)
    rc: Optional[int] = None        # None: timed out, interrupted or not run
    timed_out: bool = False
    error: str = ""                 # why it could not be reached (routing)
    kept: int = 0
    dropped: int = 0
    started: Optional[float] = None
    ended: Optional[float] = None


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while nodes were running."""

    def __init__(self, signame: str):
        super().__init__(signame)
        self.signame = signame


class _Collector(EventHandler):
    """Keeps each node's output (bounded) and exit code as they arrive."""

    def __init__(self, raw: Dict[str, RawResult], marker: bytes,
                 progress: Optional["Progress"]):
        super().__init__()
        self.raw = raw
        self.marker = marker
        self.progress = progress

    def ev_pickup(self, worker, node):
        self.raw[node].started = time.monotonic()

    def ev_read(self, worker, node, sname, msg):
        result = self.raw[node]
        if sname == worker.SNAME_STDERR:
            if len(result.stderr) < 20:
                result.stderr.append(bytes(msg)[:4096])
            return
        msg = bytes(msg)
        # A node printing megabytes must not exhaust memory; framing survives.
        if result.kept + len(msg) > OUTPUT_CAP and not msg.startswith(self.marker):
            result.dropped += 1
            return
        result.kept += len(msg)
        result.stdout.append(msg)

    def ev_hup(self, worker, node, rc):
        result = self.raw[node]
        result.rc = rc
        result.ended = time.monotonic()
        if self.progress:
            self.progress.node_done(rc != 0)

    def ev_close(self, worker, timedout):
        if timedout:
            for node in worker.iter_keys_timeout():
                self.raw[node].timed_out = True

    def ev_timer(self, timer):
        if self.progress:
            self.progress.draw()


class Progress:
    """A live `done/total` line on stderr, only on a terminal."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total = total
        self.done = 0
        self.errors = 0
        self.stream = stream
        self.shown = False

    def node_done(self, error: bool) -> None:
        self.done += 1
        self.errors += error

    def draw(self) -> None:
        self.shown = True
        self.stream.write("\r%s: %d/%d nodes done, %d with errors \x1b[K"
                          % (PROG, self.done, self.total, self.errors))
        self.stream.flush()

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


FD_WANTED = 8192     # like clush's fd_max: each running ssh holds ~3 fds


def raise_fd_limit() -> None:
    """A fanout above the soft open-file limit would fail: raise it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_WANTED if hard == resource.RLIM_INFINITY else min(FD_WANTED, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def execute(jobs: Sequence[Tuple[str, NodeSet]], settings: Settings, marker: str,
            show_progress: bool = False) -> Tuple[Dict[str, RawResult], str]:
    """Run each (command, nodes) job at once through ClusterShell; return the
    raw results of every node (unfinished ones included) and the signal that
    interrupted the run, if any."""
    raw = {node: RawResult() for _, nodes in jobs for node in nodes}
    raise_fd_limit()
    task = task_self()
    task.set_info("fanout", settings.fanout)
    task.set_info("connect_timeout", settings.connect_timeout)
    task.set_info("ssh_user", settings.ssh_user)
    task.set_info("ssh_path", settings.ssh_path)
    task.set_info("ssh_options", settings.ssh_options)
    # svcctl keeps its own bounded buffers: no second copy in MsgTrees.
    task.set_default("stdout_msgtree", False)
    task.set_default("stderr_msgtree", False)
    progress = Progress(len(raw)) if show_progress else None
    collector = _Collector(raw, marker.encode(), progress)
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    interrupted, unroutable = "", ""
    try:
        for command, nodes in jobs:
            task.shell(command, nodes=str(nodes), handler=collector, stderr=True,
                       timeout=settings.command_timeout or None)
        if progress:
            task.timer(1.0, collector, interval=0.25, autoclose=True)
        task.run()
    except KeyboardInterrupt:
        interrupted = "SIGINT"
    except Interrupted as exc:
        interrupted = exc.signame
    except RouteResolvingError as exc:
        # tree mode: a gateway failed and no other route is left
        unroutable = "no route (gateway unreachable?): %s" % printable(str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
        if interrupted or unroutable:
            task.abort(kill=True)   # kills the ssh processes still running
        if progress:
            progress.clear()
    for result in raw.values():
        if unroutable and result.rc is None and not result.timed_out:
            result.error = unroutable
    return raw, interrupted


# =============================================================================
# Results: parse each node's output and classify it
# =============================================================================

_DENIED_RE = re.compile(r"Access denied|Interactive authentication required|"
                        r"^sudo: |not in the sudoers|Permission denied", re.M)


def decode(line: bytes) -> str:
    """Bytes from a node -> safe text: invalid UTF-8 replaced, controls escaped."""
    return printable(line.decode("utf-8", "replace"), keep_tabs=True)


@dataclass
class Framed:
    """A node's output, split along svcctl's markers."""
    sections: Dict[str, dict]       # unit -> before/after tokens, output, rc
    before: Optional[List[bytes]] = None    # `state before` tokens, all units
    after: Optional[List[bytes]] = None     # `state after` tokens, all units
    complete: bool = False


def parse_output(lines: Iterable[bytes], marker: str) -> Framed:
    """Split a node's framed output; anything before the first marker (a
    login banner) and anything not framed by this run's marker is output."""
    prefix = marker.encode() + b" "
    framed = Framed({})
    current: Optional[dict] = None
    for line in lines:
        if not line.startswith(prefix):
            if current is not None and "rc" not in current:
                current["output"].append(line)
            continue
        words = line[len(prefix):].split(b" ")
        tail = words[3:] if len(words) > 2 else None
        if words[0] == b"unit" and len(words) > 1:
            current = {"before": tail, "after": None, "output": []}
            if words[2:] == [b"skipped"]:
                current.update(before=None, rc=None, skipped=True)
            framed.sections[words[1].decode("ascii", "replace")] = current
        elif words[0] == b"rc" and current is not None and len(words) > 1:
            current["rc"] = int(words[1]) if words[1].isdigit() else None
            current["after"] = tail
        elif words[0] == b"state" and len(words) > 1:
            setattr(framed, "before" if words[1] == b"before" else "after", words[2:])
        elif words[0] == b"end":
            framed.complete = True
    return framed


def state_blocks(tokens: Optional[List[bytes]]) -> Tuple[List[Optional[UnitState]], str]:
    """`systemctl show` of several units, folded onto one line, back into one
    state per unit (a block ends where a key comes again); and any text that
    is not Key=Value (systemctl's own error, e.g. no D-Bus)."""
    blocks: List[Dict[str, str]] = []
    other: List[str] = []
    for token in decode(b" ".join(tokens)).split(" ") if tokens else ():
        key, sep, value = token.partition("=")
        if not sep or key not in STATE_KEYS:
            other.append(token)
            continue
        if not blocks or key in blocks[-1]:
            blocks.append({})
        blocks[-1][key] = value
    return [UnitState.from_properties(block) for block in blocks], " ".join(other)


# A query's answer, read from the state: (what systemctl would print, yes?)
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "alias", "indirect",
                  "generated", "transient")


def query_answer(action: Action, state: UnitState) -> Tuple[str, bool]:
    if action.name == "is-enabled":
        return state.file or state.load, state.file in ENABLED_STATES
    if action.name == "is-failed":
        return state.active, state.active == "failed"
    answer = state.describe() if action.name == "status" else state.active
    return answer, state.active in ("active", "reloading")


# Where a successful action leaves a unit, to judge a change when the node
# did not live to read the state after (it timed out on a later unit).
_ALREADY_THERE = {
    "start": lambda s: s.active in ("active", "reloading"),
    "stop": lambda s: s.active in ("inactive", "failed"),
    "try-restart": lambda s: s.active not in ("active", "reloading"),
    "enable": lambda s: s.file == "enabled",
    "disable": lambda s: s.file != "enabled",
    "mask": lambda s: s.load == "masked",
    "unmask": lambda s: s.load != "masked",
    "reset-failed": lambda s: s.active != "failed",
}


def classify_unit(action: Action, unit: str, before: Optional[UnitState],
                  after: Optional[UnitState], rc: Optional[int], message: str,
                  problem: str = "") -> UnitResult:
    """One unit's outcome, from its states around the action (read -> act ->
    read) and the action's exit code and output. `problem`: text where a
    state should have been (systemctl show failed)."""
    result = UnitResult(unit, "error", before, after, rc, message,
                        message.split("\n", 1)[0])
    if action.kind == "node":
        result.outcome = "ok" if rc == 0 else (
            "negative" if action.name == "ping" and result.answer else "failed")
    elif after is None and problem == "cut short":
        if rc == 0:
            there = _ALREADY_THERE.get(action.name)
            result.outcome = "ok" if there and before and there(before) else "changed"
            result.message = "state after not read: the node did not finish"
        else:
            result.outcome = _failure(before, after, message)
    elif after is None or (before is None and needs_before(action)):
        # systemctl show itself failed (no systemd, no D-Bus): say why.
        result.message = "\n".join(filter(None, [problem, message])) or "no state read"
    elif after.load == "not-found" and (before is None or before.load == "not-found"):
        result.outcome = "not-found"
    elif action.kind == "query":
        result.answer, yes = query_answer(action, after)
        result.outcome = "ok" if yes else "negative"
    elif rc != 0:
        result.outcome = _failure(before, after, message)
    elif action.always_changes:
        result.outcome = "changed"
    else:
        moved = (before.load, before.active, before.file) != \
                (after.load, after.active, after.file)
        was_active = before.active in ("active", "reloading")
        # A start that succeeds on an inactive unit ran it, even a oneshot
        # that is inactive again by the time the state is read back.
        always = action.always_changes or (
            action.name == "try-restart" and was_active) or (
            action.name == "start" and not was_active)
        result.outcome = "changed" if moved or always else "ok"
    return result


def _failure(before: Optional[UnitState], after: Optional[UnitState],
             message: str) -> str:
    if any(s and s.load == "masked" for s in (before, after)) and "masked" in message:
        return "masked"
    return "denied" if _DENIED_RE.search(message) else "failed"


def _nth(states: List[Optional[UnitState]], index: int) -> Optional[UnitState]:
    return states[index] if index < len(states) else None


def classify_units(action: Action, names: Sequence[str], framed: Framed,
                   verbose: bool) -> Dict[str, UnitResult]:
    """The units whose result came back whole, classified."""
    befores, before_text = state_blocks(framed.before)
    afters, after_text = state_blocks(framed.after)
    done: Dict[str, UnitResult] = {}
    for index, name in enumerate(names):
        section = framed.sections.get(name, {})
        output = "\n".join(decode(line) for line in section.get("output", [])).strip()
        if section.get("skipped"):
            done[name] = UnitResult(name, "skipped",
                                    message="a service it requires failed on this node")
        elif action.kind == "node" or action.name == "apply":
            if "rc" in section:
                before, problem = state_blocks(section["before"])
                after, problem2 = state_blocks(section["after"])
                done[name] = classify_unit(
                    action, name, _nth(before, 0), _nth(after, 0), section["rc"],
                    output, problem or problem2)
        elif "rc" in section or (framed.after is not None
                                 and not runs_per_unit(action, verbose)):
            # no state after: the unit acted, then the node was cut short
            cut = framed.after is None
            done[name] = classify_unit(
                action, name, _nth(befores, index), None if cut else _nth(afters, index),
                section.get("rc"), output, "cut short" if cut else before_text or after_text)
    return done


def _ssh_reason(stderr: List[bytes], rc: Optional[int]) -> str:
    """ssh's own reason, without the per-node host part so that nodes fold."""
    lines = [decode(line).strip() for line in stderr if line.strip()]
    lines = [line for line in lines if not line.startswith("Warning: Permanently")]
    if not lines:
        return "ssh exited with code %s" % rc
    reason = lines[-1]
    reason = re.sub(r"^ssh: connect to host \S+ port \d+: ", "", reason)
    reason = re.sub(r"^ssh: Could not resolve hostname \S+: ", "name unknown: ", reason)
    reason = re.sub(r"^\S+@\S+: ", "", reason)      # user@host: Permission denied
    reason = re.sub(r"^Connection (to \S+ closed by remote host|closed by \S+ port \d+)"
                    r"\.?$", "Connection closed by remote host", reason)
    return reason


def node_result(node: str, raw: RawResult, action: Action, units: Sequence[str],
                marker: str, timeout: float, interrupted: bool,
                verbose: bool = False) -> NodeResult:
    """Classify one node: every requested unit gets an outcome, always."""
    names = [action.name] if action.kind == "node" else list(units)
    framed = parse_output(raw.stdout, marker)
    done = classify_units(action, names, framed, verbose)
    duration = (raw.ended - raw.started) if raw.started and raw.ended else None
    if raw.timed_out:
        missing, reason = "timeout", "timed out after %g s" % timeout
    elif raw.error:
        missing, reason = "unreachable", raw.error
        if raw.stderr:
            reason += "; " + _ssh_reason(raw.stderr, raw.rc)
    elif raw.rc is None:
        missing, reason = ("interrupted", "not finished") if interrupted \
            else ("skipped", "not run")
    elif raw.rc == 255:
        missing = "unreachable"
        reason = _ssh_reason(raw.stderr, raw.rc)
        if framed.sections or framed.before is not None:
            reason = "connection lost: " + reason
    elif not framed.complete:
        missing = "error"
        reason = "remote command ended early (exit code %d): %s" % (
            raw.rc, _ssh_reason(raw.stderr + raw.stdout[-3:], raw.rc))
    else:
        missing, reason = "error", ""
    results = [done.get(name) or UnitResult(name, missing, message=reason)
               for name in names]
    if raw.dropped:
        for result in results:
            result.message += "\n[%s: %d output lines dropped]" % (PROG, raw.dropped)
    whole = reason if all(name not in done for name in names) else ""
    return NodeResult(node, results, whole, duration)


def merge_results(node: str, parts: Sequence[NodeResult]) -> NodeResult:
    """One node's results from several waves, in the order they ran."""
    reasons = {part.reason for part in parts}
    durations = [part.duration for part in parts if part.duration is not None]
    return NodeResult(node, [unit for part in parts for unit in part.units],
                      reasons.pop() if len(reasons) == 1 else "",
                      sum(durations) if durations else None)


# =============================================================================
# Plans: which nodes run which steps, wave after wave
# =============================================================================

@dataclass
class Job:
    """The same steps on a set of nodes: one remote command."""
    nodes: NodeSet
    steps: Tuple[Step, ...]


@dataclass
class Wave:
    """Jobs that run at once, and results decided without contacting a node."""
    jobs: List[Job]
    decided: List[NodeResult] = field(default_factory=list)
    note: str = ""
    pause: float = 0.0              # seconds to wait before the jobs start


# A plan is a generator of waves; after each wave it is sent the wave's
# results ({node: NodeResult}) and the interrupting signal ("" if none), so
# that it can stop a rolling run or skip what depends on a failure.
Plan = Generator[Wave, Tuple[Dict[str, NodeResult], str], None]


def unit_names(action: Action, steps: Sequence[Step]) -> List[str]:
    return [action.name] if action.kind == "node" else [s.unit for s in steps]


def skipped(node: str, names: Sequence[str], reason: str) -> NodeResult:
    return NodeResult(node, [UnitResult(n, "skipped", message=reason) for n in names],
                      reason)


def batch_plan(action: Action, nodes: NodeSet, steps: Tuple[Step, ...],
               batch: Optional[int] = None, max_fail: Optional[int] = None,
               batch_wait: float = 0.0) -> Plan:
    """Every node at once, or a rolling run: `batch` nodes at a time, stopping
    before the next batch once more than `max_fail` nodes failed."""
    names = unit_names(action, steps)
    ordered = list(nodes)
    size = batch or len(ordered) or 1
    failed, interrupted, note = 0, "", ""
    for start in range(0, len(ordered), size):
        chunk = ordered[start:start + size]
        reason = "interrupted before its batch" if interrupted else (
            "--max-fail reached" if max_fail is not None and failed > max_fail else "")
        if reason:
            wave_note = ""
            if reason.startswith("--max-fail") and not note:
                note = wave_note = "stopped after %d failed nodes (--max-fail %d)" % (
                    failed, max_fail)
            yield Wave([], [skipped(n, names, reason) for n in chunk], wave_note)
            continue
        results, interrupted = yield Wave([Job(fold(chunk), steps)],
                                          pause=batch_wait if start else 0.0)
        failed += sum(r.outcome in PROBLEMS for r in results.values())


def run_plan(action: Action, plan: Plan, settings: Settings, marker: str,
             sudo: bool = False, now: bool = False, verbose: bool = False,
             show_progress: bool = False) -> Tuple[List[NodeResult], str, List[str]]:
    """Run a plan wave by wave; return every node's merged result, the
    interrupting signal and the plan's notes."""
    parts: Dict[str, List[NodeResult]] = {}
    interrupted, notes = "", []
    try:
        wave = next(plan)
        while True:
            results: Dict[str, NodeResult] = {}
            for result in wave.decided:
                results[result.node] = result
            if wave.note:
                notes.append(wave.note)
            if wave.jobs and wave.pause:
                try:
                    time.sleep(wave.pause)
                except KeyboardInterrupt:       # Ctrl-C between two batches
                    interrupted = "SIGINT"
            if wave.jobs and interrupted:
                for job in wave.jobs:
                    for node in job.nodes:
                        results[node] = skipped(node, unit_names(action, job.steps),
                                                "interrupted before its batch")
            elif wave.jobs:
                jobs = [(build_remote_command(action, job.steps, marker, sudo, now,
                                              verbose), job.nodes) for job in wave.jobs]
                raw, signame = execute(jobs, settings, marker, show_progress)
                interrupted = interrupted or signame
                for job in wave.jobs:
                    for node in job.nodes:
                        result = node_result(
                            node, raw[node], action, unit_names(action, job.steps),
                            marker, settings.command_timeout, bool(signame), verbose)
                        results[node] = merge_results(node, [results[node], result]) \
                            if node in results else result
            for node, result in results.items():
                parts.setdefault(node, []).append(result)
            wave = plan.send((results, interrupted))
    except StopIteration:
        pass
    order = fold(parts)
    return [merge_results(node, parts[node]) for node in order], interrupted, notes


# =============================================================================
# Rendering
# =============================================================================

SEPARATOR = "-" * 15
COLORS = {"ok": "32", "changed": "33", "negative": "35", "drift": "35",
          "header": "36", "problem": "31"}


def unit_lines(action: Action, result: UnitResult, verbose: bool) -> List[str]:
    """The uniform text of one unit's result, so identical nodes fold."""
    name, outcome = result.unit, result.outcome
    after = result.after.describe() if result.after else ""
    if outcome == "not-found":
        head = "%s: not found" % name
    elif outcome in ("timeout", "unreachable", "interrupted", "skipped") \
            and result.after is None:
        head = "%s: %s" % (name, {"timeout": "timed out", "interrupted":
                                  "not finished"}.get(outcome, outcome))
    elif action.kind == "node":
        head = "%s: %s" % (name, result.answer or ("done" if outcome == "ok"
                                                   else outcome))
    elif action.kind == "query":
        head = "%s: %s" % (name, result.answer)
    elif outcome in ("ok", "changed") and result.after is None:
        head = "%s: %s, was %s (state after not read)" % (
            name, outcome, result.before.describe() if result.before else "not read")
    elif outcome == "changed":
        before = result.before.describe() if result.before else after
        head = "%s: changed, %s" % (name, after) if before == after else \
            "%s: changed, %s -> %s" % (name, before, after)
    elif outcome == "ok":
        head = "%s: ok, %s" % (name, after)
    elif outcome == "masked" or not after:
        head = "%s: %s" % (name, outcome)
    else:
        head = "%s: %s, now %s" % (name, outcome, after)
    lines = [head]
    show_message = verbose or (outcome in PROBLEMS and outcome != "not-found"
                               and action.kind != "query")
    if result.message and show_message and not head.endswith(": " + result.message) \
            and not (action.kind == "node" and result.message == result.answer):
        lines += ["  " + line for line in result.message.split("\n")]
    return lines


def node_lines(action: Action, result: NodeResult, verbose: bool) -> List[str]:
    if result.reason:                   # the node as a whole was not reached
        label = {"timeout": "timed out", "interrupted": "not finished"}.get(
            result.outcome, result.outcome)
        if result.reason.startswith("timed out") or result.reason == "not finished":
            return [result.reason]
        return ["%s: %s" % (label, result.reason)]
    lines: List[str] = []
    for unit in result.units:
        lines += unit_lines(action, unit, verbose)
    return lines


def use_color(choice: str, stream) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def render_text(report: Report, verbose: bool = False, quiet: bool = False,
                color: bool = False) -> str:
    """clubak-style groups (problems last), then a summary naming NodeSets."""
    action = ACTIONS[report.action]

    def paint(code: str, text: str) -> str:
        return "\x1b[%sm%s\x1b[0m" % (COLORS[code], text) if color else text

    groups: Dict[Tuple[str, ...], List[NodeResult]] = {}
    for result in report.nodes:
        groups.setdefault(tuple(node_lines(action, result, verbose)), []).append(result)
    # (worst outcome, nodes, lines) per group: problems last, then by first node
    ordered = sorted(((max((r.outcome for r in results), key=SEVERITY.__getitem__),
                       fold(r.node for r in results), lines)
                      for lines, results in groups.items()),
                     key=lambda group: (SEVERITY[group[0]], group[1][0]))
    out: List[str] = []
    if report.services and report.action == "status":
        # a cluster file's status: one block per service instead of per node
        views = [v for v in report.services if v["drift"] or not quiet]
        out = [paint("drift", line) if line.endswith("<- drift") else line
               for line in render_services(views)]
        ordered = []
    for worst, nodes, lines in ordered:
        if quiet and worst not in NOTEWORTHY:
            continue
        header = str(nodes) + (" (%d)" % len(nodes) if len(nodes) > 1 else "")
        tone = "problem" if worst in PROBLEMS else COLORS.get(worst) and worst
        out += [paint("header", SEPARATOR), paint("header", header),
                paint("header", SEPARATOR)]
        out += [paint(tone, line) if tone else line for line in lines]
    out.append(summary_line(report))
    for name, nodes in report.outcomes.items():
        text = "%s (%d): %s" % (name, len(nodes), nodes)
        tone = "problem" if name in PROBLEMS else name
        out.append(paint(tone, text) if tone in COLORS else text)
    out += ["%s: %s" % (PROG, note) for note in report.notes]
    return "\n".join(out) + "\n"


def summary_line(report: Report) -> str:
    what = report.action + (" " + (report.subject or ",".join(report.units))
                            if report.subject or report.units else "")
    count = len(report.nodes)
    line = "== %s on %d node%s in %.1f s" % (what, count, "s" * (count != 1),
                                             report.elapsed)
    if report.interrupted_by:
        line += ", interrupted by %s" % report.interrupted_by
    return line + " =="


def report_dict(report: Report) -> dict:
    """The JSON document: every node's result and the summary."""
    by_outcome = report.outcomes
    return {
        "svcctl": __version__, "run_id": report.run_id, "action": report.action,
        "units": report.units, "command": report.command, "user": report.user,
        "started": iso_time(report.started), "elapsed": round(report.elapsed, 3),
        "interrupted_by": report.interrupted_by or None,
        "exit_code": report.exit_code(),
        "summary": {name: str(nodes) for name, nodes in by_outcome.items()},
        "counts": {name: len(nodes) for name, nodes in by_outcome.items()},
        "nodes": [{"node": r.node, "outcome": r.outcome, "reason": r.reason,
                   "duration": round(r.duration, 3) if r.duration is not None else None,
                   "units": [u.as_dict() for u in r.units]} for r in report.nodes],
        "notes": report.notes,
        "services": report.services or None,
    }


def iso_time(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")


def render_dry_run(action: Action, nodes: NodeSet, settings: Settings) -> str:
    return ("%s: dry run, nothing contacted\nnodes: %s (%d)\n"
            "ssh: user=%s fanout=%d connect_timeout=%g command_timeout=%g "
            "options=%s\n") % (
        action.name, nodes, len(nodes), settings.ssh_user or "(default)",
        settings.fanout, settings.connect_timeout, settings.command_timeout,
        settings.ssh_options or "(none)")


# Outcome colours from the Okabe-Ito palette (readable with colour-blindness),
# and a symbol for each, so that colour is never the only cue.
HTML_STYLE = {
    "ok": ("#009E73", "\u2713"), "changed": ("#56B4E9", "\u25b2"),
    "negative": ("#F0E442", "\u2212"), "drift": ("#E69F00", "\u2248"),
    "skipped": ("#BBBBBB", "\u2013"), "not-found": ("#CC79A7", "?"),
    "masked": ("#CC79A7", "\u2298"), "denied": ("#D55E00", "!"),
    "failed": ("#D55E00", "\u2717"), "error": ("#D55E00", "\u203c"),
    "timeout": ("#0072B2", "\u231b"), "unreachable": ("#000000", "\u00d7"),
    "interrupted": ("#777777", "\u2026"),
}
_HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>%(title)s</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fdfdfb}
h1{font-size:1.3em;margin:0 0 .3em}
.meta{color:#555;margin-bottom:1em} .meta code{background:#eee;padding:0 .3em}
table{border-collapse:collapse;margin:.5em 0 1em} td,th{padding:.2em .6em;
text-align:left;border-bottom:1px solid #ddd;vertical-align:top}
.grid{display:flex;flex-wrap:wrap;gap:2px;margin:.5em 0 1em}
.grid b{width:15px;height:15px;font:bold 11px/15px sans-serif;text-align:center;
cursor:pointer;border-radius:2px;-webkit-print-color-adjust:exact;print-color-adjust:exact}
.sw{display:inline-block;width:15px;height:15px;text-align:center;font:bold 11px/15px \
sans-serif;border-radius:2px;-webkit-print-color-adjust:exact;print-color-adjust:exact}
%(classes)s
pre{background:#f4f4f0;padding:.8em;overflow:auto;max-height:40em}
#detail{min-height:3em;white-space:pre-wrap}
.drift{background:#fbe3c0}
@media print{pre{max-height:none}}
</style></head><body>
<h1>%(title)s</h1>
<div class="meta">%(meta)s</div>
<table><tr><th></th><th>outcome</th><th>nodes</th><th>NodeSet</th></tr>%(summary)s</table>
%(services)s
<h2>Nodes</h2>
<div class="grid" id="grid">%(cells)s</div>
<pre id="detail">Click or hover a node to see its result.</pre>
<h2>Grouped results</h2>
<pre>%(text)s</pre>
<script>
document.getElementById("grid").addEventListener("click", function (e) {
  if (e.target.title) document.getElementById("detail").textContent = e.target.title;
});
</script>
</body></html>
"""


def render_html(report: Report) -> str:
    """One self-contained page: no external script, font or request."""
    action = ACTIONS[report.action]
    index = {name: n for n, name in enumerate(OUTCOMES)}
    classes = "".join(".o%d{background:%s;color:%s}.o%d::after{content:'%s'}\n" % (
        index[name], colour, "#fff" if name in ("unreachable", "timeout", "failed",
                                                "denied", "error") else "#000",
        index[name], symbol) for name, (colour, symbol) in HTML_STYLE.items())
    classes += "".join(".s%d{background:%s;color:%s}\n" % (
        index[name], colour, "#fff" if colour in ("#000000", "#0072B2", "#D55E00")
        else "#000") for name, (colour, _) in HTML_STYLE.items())
    cells = "".join('<b class="o%d" title="%s"></b>' % (
        index[r.outcome], html.escape("%s: %s\n%s" % (
            r.node, r.outcome, "\n".join(node_lines(action, r, True))), quote=True))
        for r in report.nodes)
    summary = "".join(
        '<tr><td><span class="sw s%d">%s</span></td><td>%s</td><td>%d</td>'
        "<td><code>%s</code></td></tr>" % (index[name], HTML_STYLE[name][1], name,
                                           len(nodes), html.escape(str(nodes)))
        for name, nodes in report.outcomes.items())
    services = ""
    if report.services:
        rows = "".join(
            "<tr%s><td>%s</td><td><code>%s</code></td><td>%s</td><td>%s</td><td>%s</td></tr>"
            % (' class="drift"' if view["drift"] else "", html.escape(view["service"]),
               html.escape(view["unit"]), html.escape(view["declared"]),
               "<br>".join("%s: <code>%s</code>" % (html.escape(state), html.escape(nodes))
                           for state, nodes in view["states"].items()),
               html.escape(view["drift"]) or "none")
            for view in report.services)
        services = ("<h2>Services</h2><table><tr><th>service</th><th>unit</th>"
                    "<th>declared</th><th>states</th><th>drift</th></tr>%s</table>" % rows)
    title = "svcctl %s: %d node%s, exit %d" % (
        report.action + (" " + (report.subject or ",".join(report.units))
                         if report.subject or report.units else ""),
        len(report.nodes), "s" * (len(report.nodes) != 1), report.exit_code())
    meta = "%s by <b>%s</b>, %.1f s, run %s<br><code>%s</code>" % (
        iso_time(report.started), html.escape(report.user or "?"), report.elapsed,
        html.escape(report.run_id), html.escape(report.command))
    return _HTML_PAGE % {"title": html.escape(title), "meta": meta, "classes": classes,
                         "summary": summary, "services": services, "cells": cells,
                         "text": html.escape(render_text(report))}


def write_file(path: str, text: str) -> None:
    """Replace a file whole (a reader never sees half a report)."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# =============================================================================
# Result log
# =============================================================================

def log_lines(report: Report) -> bytes:
    """One JSON line per node and unit."""
    out = []
    for result in report.nodes:
        for unit in result.units:
            record = {"time": iso_time(report.started), "run_id": report.run_id,
                      "user": report.user, "action": report.action,
                      "node": result.node, "duration": result.duration,
                      "reason": result.reason, "command": report.command,
                      "elapsed": round(report.elapsed, 3)}
            record.update(unit.as_dict())
            out.append(json.dumps(record, sort_keys=True) + "\n")
    return "".join(out).encode()


def append_log(path: str, data: bytes) -> None:
    """Append a run's lines atomically: one locked write, O_APPEND."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


SYSLOG_ADDRESS = "/dev/log"


def syslog_line(report: Report) -> str:
    """One line a run: what, where, each outcome's NodeSet, exit code."""
    outcomes = ", ".join("%s %s (%d)" % (name, nodes, len(nodes))
                         for name, nodes in report.outcomes.items())
    return "%s: %s; exit %d; run %s by %s" % (
        summary_line(report).strip("= "), outcomes, report.exit_code(),
        report.run_id, report.user)


def send_syslog(line: str, failed: bool) -> None:
    """To the local syslog socket, user facility: info, or err on failure."""
    severity = 3 if failed else 6
    packet = "<%d>%s[%d]: %s" % (8 + severity, PROG, os.getpid(), line)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(SYSLOG_ADDRESS)
        sock.send(packet.encode("utf-8", "replace")[:8192])


def _logged_state(record: dict, key: str) -> Optional[UnitState]:
    value = record.get(key)
    return UnitState.from_properties(value) if isinstance(value, dict) else None


def report_from_log(path: str, run_id: Optional[str] = None) -> Report:
    """Rebuild a run's report from its log lines (the last run by default)."""
    runs: Dict[str, List[dict]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                    runs.setdefault(str(record["run_id"]), []).append(record)
                except (ValueError, KeyError, TypeError):
                    continue        # a foreign or damaged line is not ours to judge
    except OSError as exc:
        raise UsageError("%s: cannot read: %s" % (path, exc.strerror))
    if not runs:
        raise UsageError("%s: no svcctl run in this log" % path)
    if run_id is None:
        run_id = list(runs)[-1]
    if run_id not in runs:
        raise UsageError("%s: no run %s in this log" % (path, printable(run_id)))
    records = runs[run_id]
    first = records[0]
    if first.get("action") not in ACTIONS:
        raise UsageError("%s: unknown action in run %s" % (path, run_id))
    nodes: Dict[str, NodeResult] = {}
    units: List[str] = []
    for record in records:
        message = str(record.get("message") or "")
        outcome = record.get("outcome") if record.get("outcome") in SEVERITY else "error"
        unit = UnitResult(str(record.get("unit")), outcome, _logged_state(record, "before"),
                          _logged_state(record, "after"), record.get("rc"), message,
                          message.split("\n", 1)[0])
        if unit.unit not in units and first["action"] not in ("ping", "daemon-reload"):
            units.append(unit.unit)
        node = str(record.get("node"))
        result = nodes.setdefault(node, NodeResult(node, [], str(record.get("reason") or ""),
                                                   record.get("duration")))
        result.units.append(unit)
    try:
        started = datetime.fromisoformat(first["time"]).timestamp()
    except (KeyError, TypeError, ValueError):
        started = 0.0
    return Report(first["action"], units, [nodes[n] for n in fold(nodes)],
                  started, float(first.get("elapsed") or 0), command=str(
                      first.get("command") or ""), user=str(first.get("user") or ""),
                  run_id=run_id)


# =============================================================================
# Cluster file
# =============================================================================
# A YAML file (see cluster.example.yaml) declares groups and services:
#   groups:   {NAME: NODESET, ...}            usable as @NAME in this file
#   services: {NAME: {unit, nodes, state, enabled, requires, after}, ...}

FILE_KEYS = ("groups", "services")
SERVICE_KEYS = ("unit", "nodes", "state", "enabled", "requires", "after")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*", re.ASCII)


@dataclass
class Service:
    """One declared service: its unit, where it runs, what it should be."""
    name: str
    unit: str
    nodes: NodeSet
    state: str = "running"              # "running" or "stopped"
    enabled: Optional[bool] = None      # None: enablement not managed
    requires: Tuple[str, ...] = ()      # strong: skipped where these failed
    after: Tuple[str, ...] = ()         # ordering only
    line: int = 0


@dataclass
class ClusterFile:
    path: str
    groups: Dict[str, NodeSet]
    services: List[Service]             # in dependency order


class _FileGroups:
    """NodeSet resolver: the file's own groups first, then ClusterShell's."""

    def __init__(self, groups: Dict[str, NodeSet], fallback):
        self.groups = groups
        self.fallback = fallback

    def group_nodes(self, group, namespace=None):
        if namespace is None and group in self.groups:
            return list(self.groups[group])
        return self.fallback.group_nodes(group, namespace)

    def __getattr__(self, name):
        return getattr(self.fallback, name)


class _FileReader:
    """Walks the composed YAML tree so that every error names its line."""

    def __init__(self, path: str, yaml):
        self.path = path
        self.yaml = yaml
        self.constructor = yaml.SafeLoader("")
        self.key_line: Dict[int, int] = {}      # id(value node) -> its key's line

    def error(self, node, where: str, message: str) -> UsageError:
        return UsageError("%s:%d: %s: %s" % (self.path, node.start_mark.line + 1,
                                             where, message))

    def mapping(self, node, where: str, allowed: Optional[Sequence[str]] = None) -> dict:
        if not isinstance(node, self.yaml.MappingNode):
            raise self.error(node, where, "must be a mapping")
        out = {}
        for key, value in node.value:
            name = key.value if isinstance(key, self.yaml.ScalarNode) else None
            if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                raise self.error(key, where, "invalid name %s" % printable(repr(name)))
            if name in out:
                raise self.error(key, where, "duplicate key %s" % name)
            if allowed is not None and name not in allowed:
                raise self.error(key, where, "unknown key %s (known: %s)"
                                 % (name, ", ".join(allowed)))
            out[name] = value
            self.key_line[id(value)] = key.start_mark.line + 1
        return out

    def scalar(self, node, where: str, kind, what: str):
        value = self.constructor.construct_object(node) \
            if isinstance(node, self.yaml.ScalarNode) else node
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(node, where, "must be %s" % what)
        return value

    def names(self, node, where: str) -> Tuple[str, ...]:
        items = node.value if isinstance(node, self.yaml.SequenceNode) else [node]
        return tuple(self.scalar(item, where, str, "a service name or a list of them")
                     for item in items)

    def nodeset(self, node, where: str, resolver) -> NodeSet:
        items = node.value if isinstance(node, self.yaml.SequenceNode) else [node]
        patterns = [self.scalar(item, where, str, "a NodeSet") for item in items]
        try:
            return parse_nodes(patterns, resolver=resolver)
        except UsageError as exc:
            raise self.error(node, where, str(exc))


def load_cluster_file(path: str) -> ClusterFile:
    """Load and validate a cluster file; any error is one UsageError naming
    the file, the line and the key. Nothing is contacted."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError("%s: cannot read: %s" % (path, getattr(exc, "strerror", exc)))
    import yaml     # here, not at the top: only cluster files need it (start-up time)
    reader = _FileReader(path, yaml)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UsageError("%s:%s: YAML: %s" % (path, mark.line + 1 if mark else "?",
                                               getattr(exc, "problem", exc)))
    if root is None:
        raise UsageError("%s: empty file" % path)
    top = reader.mapping(root, "top level", FILE_KEYS)
    groups: Dict[str, NodeSet] = {}
    resolver = _FileGroups(groups, std_group_resolver())
    if "groups" in top:
        for name, value in reader.mapping(top["groups"], "groups").items():
            # a group may use ClusterShell's groups and those defined above it
            groups[name] = reader.nodeset(value, "groups.%s" % name, resolver)
    if "services" not in top:
        raise reader.error(root, "top level", "no services")
    services: Dict[str, Service] = {}
    for name, value in reader.mapping(top["services"], "services").items():
        where = "services." + name
        keys = reader.mapping(value, where, SERVICE_KEYS)
        if "nodes" not in keys:
            raise reader.error(value, where, "nodes is required")
        unit_text = reader.scalar(keys["unit"], where + ".unit", str, "a unit name") \
            if "unit" in keys else name
        try:
            unit = normalise_unit(unit_text)
        except UsageError as exc:
            raise reader.error(keys.get("unit", value), where + ".unit", str(exc))
        service = Service(name, unit, reader.nodeset(keys["nodes"], where + ".nodes",
                                                     resolver),
                          line=reader.key_line[id(value)])
        if "state" in keys:
            service.state = reader.scalar(keys["state"], where + ".state", str,
                                          "running or stopped")
            if service.state not in ("running", "stopped"):
                raise reader.error(keys["state"], where + ".state",
                                   "must be running or stopped, not %s"
                                   % printable(service.state))
        if "enabled" in keys:
            service.enabled = reader.scalar(keys["enabled"], where + ".enabled", bool,
                                            "true or false")
        for key in ("requires", "after"):
            if key in keys:
                setattr(service, key, reader.names(keys[key], "%s.%s" % (where, key)))
        for other in services.values():
            if other.unit == unit and other.nodes & service.nodes:
                raise reader.error(value, where, "unit %s is already declared by "
                                   "service %s on %s" % (unit, other.name,
                                                         other.nodes & service.nodes))
        services[name] = service
    for service in services.values():
        for dep in service.requires + service.after:
            if dep not in services or dep == service.name:
                raise UsageError("%s:%d: services.%s: %s %s" % (
                    path, service.line, service.name,
                    "depends on itself" if dep == service.name else "unknown service",
                    printable(dep)))
    return ClusterFile(path, groups, dependency_order(path, services))


def dependency_order(path: str, services: Dict[str, Service]) -> List[Service]:
    """Services with each one after what it requires or follows; cycles refused."""
    order: List[Service] = []
    state: Dict[str, str] = {}

    def visit(service: Service, chain: List[str]) -> None:
        if state.get(service.name) == "done":
            return
        if state.get(service.name) == "open":
            cycle = chain[chain.index(service.name):] + [service.name]
            raise UsageError("%s:%d: services.%s: dependency cycle: %s" % (
                path, service.line, service.name, " -> ".join(cycle)))
        state[service.name] = "open"
        for dep in service.requires + service.after:
            visit(services[dep], chain + [service.name])
        state[service.name] = "done"
        order.append(service)

    for service in services.values():
        visit(service, [])
    return order


def select_services(cluster: ClusterFile, names: Sequence[str], reverse: bool,
                    with_deps: bool = True) -> List[Service]:
    """The named services (all if none) and, unless told not to, what they
    require (or, tearing down, what requires them), in dependency order."""
    known = {s.name for s in cluster.services}
    for name in names:
        if name not in known:
            raise UsageError("%s: unknown service %s" % (cluster.path, printable(name)))
    if not names:
        return list(cluster.services)
    chosen = set(names)
    while with_deps:
        grown = set(chosen)
        for service in cluster.services:
            if reverse and chosen & set(service.requires):
                grown.add(service.name)
            if not reverse and service.name in chosen:
                grown.update(service.requires)
        if grown == chosen:
            break
        chosen = grown
    return [s for s in cluster.services if s.name in chosen]


def file_plan(action: Action, services: Sequence[Service],
              nodes_of: Dict[str, NodeSet]) -> Plan:
    """Waves of one remote script per node. A service runs in the same wave
    as what it depends on when every one of its nodes runs that too (ordered
    in the node's script, skipped there if a requirement failed there);
    otherwise in the next wave, and skipped everywhere if a requirement failed
    anywhere. Tearing-down actions follow the reverse order."""
    reverse = action.name in REVERSE_ACTIONS
    ordered = list(reversed(services)) if reverse else list(services)
    selected = {s.name for s in services}
    deps: Dict[str, List[Tuple[str, bool]]] = {s.name: [] for s in services}
    if action.kind == "change":
        for service in services:
            for dep, strong in [(d, True) for d in service.requires] + \
                    [(d, False) for d in service.after]:
                if dep in selected:
                    first, then = (service.name, dep) if reverse else (dep, service.name)
                    deps[then].append((first, strong))
    wave_of: Dict[str, int] = {}
    for service in ordered:
        wave_of[service.name] = max([0] + [
            wave_of[dep] + (0 if nodes_of[service.name] <= nodes_of[dep] else 1)
            for dep, _ in deps[service.name]])
    failed: set = set()
    interrupted = ""
    for wave in range(max(wave_of.values(), default=-1) + 1):
        members = [s for s in ordered if wave_of[s.name] == wave and nodes_of[s.name]]
        decided: Dict[str, List[UnitResult]] = {}
        runnable = []
        for service in members:
            blocking = [d for d, strong in deps[service.name]
                        if strong and d in failed and wave_of[d] < wave]
            if blocking or interrupted:
                failed.add(service.name)
                reason = "interrupted" if interrupted else \
                    "requires %s, which failed" % ", ".join(blocking)
                for node in nodes_of[service.name]:
                    decided.setdefault(node, []).append(
                        UnitResult(service.unit, "skipped", message=reason))
            else:
                runnable.append(service)
        steps_of: Dict[str, List[Step]] = {}
        for node in fold(n for s in runnable for n in nodes_of[s.name]):
            steps: List[Step] = []
            index_of: Dict[str, int] = {}
            for service in runnable:
                if node in nodes_of[service.name]:
                    requires = tuple(index_of[d] for d, strong in deps[service.name]
                                     if strong and d in index_of)
                    index_of[service.name] = len(steps)
                    steps.append(Step(service.unit, requires, service.state,
                                      service.enabled))
            steps_of[node] = steps
        by_steps: Dict[Tuple[Step, ...], List[str]] = {}
        for node, steps in steps_of.items():
            by_steps.setdefault(tuple(steps), []).append(node)
        jobs = [Job(fold(nodes), steps) for steps, nodes in by_steps.items()]
        results, interrupted = yield Wave(
            jobs, [NodeResult(node, units) for node, units in decided.items()])
        for service in runnable:
            for node in nodes_of[service.name]:
                result = results.get(node)
                if result and any(u.unit == service.unit and u.outcome in PROBLEMS
                                  for u in result.units):
                    failed.add(service.name)


def drifted(service: Service, state: UnitState) -> bool:
    """Does a unit's actual state differ from what the file declares?"""
    if state.load != "loaded":
        return True
    running = state.active in ("active", "reloading", "activating")
    if running != (service.state == "running"):
        return True
    return service.enabled is not None and \
        (state.file in ("enabled", "enabled-runtime")) != service.enabled


def service_views(services: Sequence[Service], nodes_of: Dict[str, NodeSet],
                  results: Sequence[NodeResult], mark_drift: bool) -> List[dict]:
    """Per service: its states grouped by NodeSet and where it drifted. With
    mark_drift (status), each unit's outcome becomes ok or drift."""
    by_node = {r.node: r for r in results}
    views = []
    for service in services:
        states: Dict[str, List[str]] = {}
        drift: List[str] = []
        for node in nodes_of[service.name]:
            unit = next((u for u in by_node[node].units if u.unit == service.unit), None)
            if unit is None:
                continue
            if unit.after is not None:
                text = unit.after.describe()
            else:
                text = unit.outcome + (": " + unit.message.split("\n")[0]
                                       if unit.message else "")
            states.setdefault(text, []).append(node)
            if unit.after is not None and drifted(service, unit.after):
                drift.append(node)
                if mark_drift and unit.outcome in ("ok", "negative"):
                    unit.outcome = "drift"
            elif mark_drift and unit.outcome == "negative":
                unit.outcome = "ok"
        declared = service.state + ("" if service.enabled is None else
                                    ", enabled" if service.enabled else ", disabled")
        views.append({"service": service.name, "unit": service.unit,
                      "nodes": str(nodes_of[service.name]), "declared": declared,
                      "states": {k: str(fold(v)) for k, v in states.items()},
                      "drift": str(fold(drift))})
    return views


def render_services(views: Sequence[dict]) -> List[str]:
    """The cluster-file status: each service, its states by NodeSet, drift."""
    out = []
    for view in views:
        out += [SEPARATOR, "%s: %s on %s, declared %s" % (
            view["service"], view["unit"], view["nodes"], view["declared"]), SEPARATOR]
        drift = NodeSet(view["drift"])
        for state, text in view["states"].items():
            nodes = NodeSet(text)
            count = " (%d)" % len(nodes) if len(nodes) > 1 else ""
            flag = "  <- drift" if nodes & drift else ""
            out.append("%s%s: %s%s" % (nodes, count, state, flag))
    return out


# =============================================================================
# Command line
# =============================================================================

EXAMPLES = """\
examples:
  svcctl start httpd node[1-8]            start httpd.service on 8 nodes
  svcctl status demo,web @web -x node3    two units on group @web but node3
  svcctl restart httpd @web --batch 25%   rolling restart, a quarter at a time
  svcctl is-active sshd @all -q           only the nodes where it is not active
  svcctl ping @all                        which nodes answer
  svcctl --dry-run stop demo node[1-4]    show the remote command, run nothing
  svcctl -c cluster.yaml status           a cluster file: states and drift
  svcctl -c cluster.yaml apply            make the cluster match the file
  svcctl report run.log --html page.html  a logged run as an HTML page

exit codes: 0 ok, 1 failed, 2 usage, 3 query answered no, 4 unreachable or
timed out, 130 interrupted, 143 terminated.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line through svcctl's handler."""

    def error(self, message):
        raise UsageError(message + " (see svcctl --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="systemctl for a whole cluster: run one systemd "
        "action on every node of a NodeSet over SSH and print one grouped answer.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", metavar="ACTION", nargs="?",
                        choices=sorted(ACTIONS) + ["report"],
                        help="one of: %s; or `report LOGFILE` to show a logged run"
                        % ", ".join(sorted(ACTIONS)))
    parser.add_argument("targets", metavar="UNIT[,UNIT...] NODESET", nargs="*",
                        help="units (not for daemon-reload or ping), then NodeSets; "
                        "with -c: service names")
    add = parser.add_argument
    add("-x", "--exclude", action="append", default=[], metavar="NODESET",
        help="exclude these nodes")
    add("-c", "--config", metavar="FILE",
        help="cluster file: act on its services (all, or those named)")
    add("-n", "--nodes", action="append", default=[], metavar="NODESET",
        help="with -c: only these nodes")
    add("--no-deps", action="store_true",
        help="with -c: only the named services, not what they depend on")
    add("--check-config", action="store_true",
        help="with -c: validate the file, contact nothing")
    add("-f", "--fanout", type=int, help="nodes contacted at once (clush.conf, 64)")
    add("-t", "--connect-timeout", type=float, metavar="SECONDS",
        help="ssh connect timeout (clush.conf, 10)")
    add("-u", "--command-timeout", type=float, metavar="SECONDS",
        help="per-node bound for the whole run, 0 for none (default 300)")
    add("-l", "--user", help="ssh login user")
    add("-o", "--ssh-options", metavar="OPTIONS", help="extra ssh options")
    add("--sudo", action="store_true",
        help="run systemctl through `sudo -n` (never prompts for a password)")
    add("--now", action="store_true", help="with enable/disable: also start/stop")
    add("--batch", metavar="COUNT",
        help="rolling: act on COUNT nodes at a time (N or N%%)")
    add("--max-fail", metavar="COUNT",
        help="with --batch: stop before the next batch once more nodes failed")
    add("--batch-wait", type=float, default=0.0, metavar="SECONDS",
        help="with --batch: pause between batches")
    add("--persist", action="store_true",
        help="keep ssh connections open between runs (OpenSSH ControlPersist)")
    add("--persist-for", type=int, default=600, metavar="SECONDS",
        help="with --persist: how long an idle connection stays open (600)")
    add("-q", "--quiet", action="store_true", help="only problems and the summary")
    add("-v", "--verbose", action="store_true", help="show systemctl's own output")
    add("--json", action="store_true", help="print one JSON document")
    add("--log", metavar="FILE", help="append one JSON line per node and unit")
    add("--html", metavar="FILE", help="write a self-contained HTML report")
    add("--syslog", action="store_true", help="send a one-line summary to syslog")
    add("--run", metavar="ID", help="with report: which logged run (default: the last)")
    add("--color", choices=("auto", "always", "never"), default="auto")
    add("--dry-run", action="store_true",
        help="show the nodes and the remote command, contact nothing")
    add("--version", action="version", version="%(prog)s " + __version__)
    return parser


def parse_count(text: Optional[str], total: int, what: str) -> Optional[int]:
    """`N` or `N%` of `total` (at least 1 for a batch)."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)(%?)", text.strip())
    if not match:
        raise UsageError("%s must be N or N%%, not %s" % (what, printable(text)))
    value = int(match.group(1))
    if match.group(2):
        if value > 100:
            raise UsageError("%s cannot exceed 100%%" % what)
        value = total * value // 100
    return value


def persist_options(seconds: int) -> str:
    """ssh options that keep one master connection per node open."""
    directory = os.path.join(os.environ.get("XDG_RUNTIME_DIR") or "/tmp",
                             "svcctl-%d" % os.getuid())
    if len(directory) > 60:     # a unix socket path has ~107 bytes, %C takes 40
        raise UsageError("--persist: socket directory %s is too long" % directory)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if os.stat(directory).st_uid != os.getuid():
        raise UsageError("%s is not ours: refusing to keep sockets there" % directory)
    os.chmod(directory, 0o700)
    return ("-oControlMaster=auto -oControlPath=%s/%%C -oControlPersist=%d"
            % (directory, seconds))


@dataclass
class Request:
    """A validated command line: nothing here can reach a shell unchecked."""
    action: Action
    units: List[str]
    nodes: NodeSet
    settings: Settings
    batch: Optional[int] = None
    max_fail: Optional[int] = None
    services: List[Service] = field(default_factory=list)   # with -c
    nodes_of: Dict[str, NodeSet] = field(default_factory=dict)

    def plan(self, batch_wait: float = 0.0) -> Plan:
        if self.services and self.action.kind != "node":
            return file_plan(self.action, self.services, self.nodes_of)
        steps = tuple(Step(unit) for unit in self.units)
        return batch_plan(self.action, self.nodes, steps, self.batch, self.max_fail,
                          batch_wait)


def connection_settings(args: argparse.Namespace) -> Settings:
    """clush.conf's [Main], then the command line."""
    settings = read_clush_conf()
    if args.fanout is not None:
        settings.fanout = check_fanout(args.fanout)
    if args.connect_timeout is not None:
        settings.connect_timeout = check_timeout(args.connect_timeout)
    if args.command_timeout is not None:
        settings.command_timeout = check_timeout(args.command_timeout)
    if args.user is not None:
        settings.ssh_user = check_user(args.user)
    if args.ssh_options is not None:
        settings.ssh_options = check_ssh_options(args.ssh_options)
    if args.persist:
        if args.persist_for < 1:
            raise UsageError("--persist-for takes a number of seconds >= 1")
        settings.ssh_options = " ".join(filter(None, (
            settings.ssh_options, persist_options(args.persist_for))))
    return settings


def file_request(args: argparse.Namespace, action: Action) -> Request:
    """-c FILE ACTION [SERVICE...]: each service on its own nodes."""
    cluster = load_cluster_file(args.config)
    services = select_services(cluster, args.targets, action.name in REVERSE_ACTIONS,
                               not args.no_deps)
    restrict = parse_nodes(args.nodes) if args.nodes else None
    exclude = parse_nodes(args.exclude) if args.exclude else NodeSet()
    nodes_of = {}
    for service in services:
        nodes = service.nodes & restrict if restrict is not None else NodeSet(service.nodes)
        nodes_of[service.name] = nodes - exclude
    nodes = fold(n for ns in nodes_of.values() for n in ns)
    if not nodes:
        raise UsageError("no node to run on")
    return Request(action, [s.unit for s in services], nodes, connection_settings(args),
                   services=services, nodes_of=nodes_of)


def make_request(args: argparse.Namespace) -> Request:
    action = ACTIONS[args.action]
    if args.now and action.name not in ("enable", "disable"):
        raise UsageError("--now goes with enable or disable")
    if args.config:
        if args.batch or args.max_fail:
            raise UsageError("--batch and --max-fail do not go with -c")
        return file_request(args, action)
    if action.name == "apply" or args.nodes or args.no_deps:
        raise UsageError("apply, -n and --no-deps go with -c FILE")
    targets = list(args.targets)
    units: List[str] = []
    if action.kind != "node":
        if not targets:
            raise UsageError("%s needs UNIT[,UNIT...] and a NodeSet" % action.name)
        units = parse_units(targets.pop(0))
    if not targets:
        raise UsageError("%s needs a NodeSet" % action.name)
    nodes = parse_nodes(targets, args.exclude)
    settings = connection_settings(args)
    batch = parse_count(args.batch, len(nodes), "--batch")
    if batch is not None:
        batch = max(batch, 1)
    max_fail = parse_count(args.max_fail, len(nodes), "--max-fail")
    if max_fail is not None and batch is None:
        raise UsageError("--max-fail goes with --batch")
    check_timeout(args.batch_wait)
    return Request(action, units, nodes, settings, batch, max_fail)


def run(request: Request, args: argparse.Namespace, stderr) -> Report:
    """Run the request's plan; classify every node."""
    marker = new_marker()
    started, clock = time.time(), time.monotonic()
    show_progress = hasattr(stderr, "isatty") and stderr.isatty() and not args.json
    results, interrupted, notes = run_plan(
        request.action, request.plan(args.batch_wait), request.settings, marker,
        args.sudo, args.now, args.verbose, show_progress)
    report = Report(request.action.name, request.units, results, started,
                    time.monotonic() - clock,
                    command=" ".join(shlex.quote(a) for a in [PROG] + sys.argv[1:]),
                    user=getpass.getuser(), run_id=marker.rsplit("-", 1)[-1],
                    interrupted_by=interrupted, notes=notes)
    if request.services:
        count = len(request.services)
        report.subject = "nodes of %s" % args.config if request.action.kind == "node" \
            else "%d service%s of %s" % (count, "s" * (count != 1), args.config)
    if request.services and request.action.kind != "node":
        report.services = service_views(request.services, request.nodes_of, results,
                                        mark_drift=request.action.name == "status")
        if request.action.name == "apply" and report.exit_code() == EXIT_OK and \
                all(r.outcome == "ok" for r in results):
            report.notes.append("nothing to change: the cluster matches %s" % args.config)
    return report


def dry_run(request: Request, args: argparse.Namespace) -> str:
    """Every remote command the run would send, wave by wave; nothing contacted."""
    out = render_dry_run(request.action, request.nodes, request.settings)
    plan = request.plan()
    try:
        wave, number = next(plan), 1
        while True:
            for job in wave.jobs:
                out += "wave %d, %s (%d):\n%s\n" % (
                    number, job.nodes, len(job.nodes), build_remote_command(
                        request.action, job.steps, "@@svcctl-DRYRUN", args.sudo,
                        args.now, args.verbose))
            wave, number = plan.send(({}, "")), number + 1
    except StopIteration:
        return out


def main(argv: Optional[Sequence[str]] = None, stdout=None, stderr=None) -> int:
    """Entry point; returns the exit code (tests call it in-process)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_intermixed_args(argv)
        if args.check_config:
            if not args.config:
                raise UsageError("--check-config goes with -c FILE")
            cluster = load_cluster_file(args.config)
            stdout.write("%s: ok, %d services, %d groups\n" % (
                args.config, len(cluster.services), len(cluster.groups)))
            return EXIT_OK
        if not args.action:
            raise UsageError("ACTION is required")
        if args.action == "report":
            if len(args.targets) != 1:
                raise UsageError("report needs one LOGFILE")
            if args.log or args.syslog:
                raise UsageError("report reads a log: --log and --syslog do not go with it")
            report = report_from_log(args.targets[0], args.run)
        else:
            request = make_request(args)
            if args.dry_run:
                stdout.write(dry_run(request, args))
                return EXIT_OK
            report = run(request, args, stderr)
    except UsageError as exc:
        stderr.write("%s: %s\n" % (PROG, exc))
        return EXIT_USAGE
    except (RouteResolvingError, TopologyError) as exc:
        # a topology.conf that cannot route: a configuration error, nothing run
        stderr.write("%s: topology: %s\n" % (PROG, printable(str(exc))))
        return EXIT_USAGE
    code = EXIT_OK if args.action == "report" else report.exit_code()
    outputs = [(args.log, lambda path: append_log(path, log_lines(report))),
               (args.html, lambda path: write_file(path, render_html(report))),
               (SYSLOG_ADDRESS if args.syslog else None,
                lambda path: send_syslog(syslog_line(report), code != EXIT_OK))]
    for path, write in outputs:
        if path:
            try:
                write(path)
            except OSError as exc:
                stderr.write("%s: cannot write %s: %s\n" % (
                    PROG, printable(path), exc.strerror or exc))
                code = code or EXIT_FAILED
    if args.json:
        stdout.write(json.dumps(report_dict(report), indent=1) + "\n")
    else:
        stdout.write(render_text(report, args.verbose, args.quiet,
                                 use_color(args.color, stdout)))
    stdout.flush()
    return code


def console_main() -> None:
    """Console script: no traceback for Ctrl-C or a closed pipe."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        # `svcctl ... | head`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_FAILED
    sys.exit(code)


if __name__ == "__main__":
    console_main()
