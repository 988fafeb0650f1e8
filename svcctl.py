#!/usr/bin/env python3
"""svcctl: systemctl for a whole cluster.

    svcctl [options] ACTION UNIT[,UNIT...] NODESET [NODESET...]
    svcctl [options] daemon-reload NODESET [NODESET...]
    svcctl [options] ping NODESET [NODESET...]
    svcctl [options] -c FILE ACTION|apply [SERVICE...]
    svcctl report LOGFILE [--run ID] [--html FILE]
    svcctl gui [-c FILE] [--listen ADDR:PORT] [--log FILE]

Runs one systemd action on every node of a ClusterShell NodeSet over SSH, one
SSH connection per node, and prints one grouped answer in which every targeted
node is accounted for: ok, changed, failed, not found, masked, denied,
timed out or unreachable.

Each node runs a short POSIX sh script that reads the units' states with
`systemctl show`, performs the action, and reads the states again, so svcctl
knows what changed (Ansible's CHANGED/ok) in a single round trip. Nodes need
only sshd and systemctl.

Exit codes (the most severe condition met wins, in this order):

    130  interrupted (SIGINT); 143 terminated (SIGTERM); 129 hung up (SIGHUP):
         the finished nodes are reported, the others listed
      4  some node unreachable or timed out
      1  the action failed on some node (failed, not found, masked, denied,
         error, skipped), or a result log or report could not be written
      3  a query (status, is-active, is-enabled, is-failed, ping) answered
         "no" on some node, like systemctl's own LSB code 3; or a cluster
         file's status found drift
      0  success on every node
      2  usage error: bad option, unit name, NodeSet, clush.conf, cluster file
         or topology; nothing was run

The file reads top to bottom: model (the outcome and action tables), input
validation, remote command, execution (the only code that talks to the
ClusterShell Task), results, requests (a whole validated run: prepare()),
plans (which nodes run which steps, wave after wave; start()), rendering,
result log, cluster file, command line, the web console, and the templates of
the HTML pages and the console at the end.
"""

from __future__ import annotations    # type hints cost nothing at start-up

# Start-up is part of every command (`svcctl --version` is measured against
# `clush --version`): what only some commands need is imported where it is
# used, not here: datetime (the log, the history), ClusterShell's Task (a run),
# yaml (cluster files), hashlib, base64, syslog, secrets and http.server (the
# pages, the console). The rest of the start is the interpreter and its site,
# dataclasses and ClusterShell's NodeSet, which every run needs.

import os
import sys

__version__ = "0.2.0"
PROG = "svcctl"

# `svcctl --version` alone, what probes and inventories run, is answered
# before anything else is imported (the console script imports this whole
# module first): the interpreter's start is then all it costs. Any other
# argument, or an output that fails, takes the whole program's way.
if sys.argv[1:] == ["--version"] and os.path.basename(sys.argv[0]) in (PROG, PROG + ".py"):
    try:
        os.write(1, ("%s %s\n" % (PROG, __version__)).encode())
    except OSError:
        pass
    else:
        sys.exit(0)

import argparse
import bisect
import configparser
import errno
import fcntl
import functools
import json
import math
import pwd
import re
import resource
import shlex
import signal
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from string import Template
from typing import (Callable, Dict, Generator, Iterable, List, Optional, Sequence, Set,
                    Tuple)

from ClusterShell.Defaults import config_paths
from ClusterShell.Event import EventHandler
from ClusterShell.NodeSet import (RESOLVER_NOGROUP, NodeSet, NodeSetBase,
                                  NodeSetException, std_group_resolver)
from ClusterShell.NodeUtils import GroupResolverError, GroupSourceError
from ClusterShell.RangeSet import RangeSet, RangeSetND

SCHEMA = 1          # version of the JSON document and of the log lines

# =============================================================================
# Model: what outcomes and actions mean, unit states, results
# =============================================================================


class Regex:
    """A regular expression compiled when first used: dozens of them compiled
    at import would be a good part of svcctl's start-up."""

    def __init__(self, pattern, flags: int = 0):
        self._args = (pattern, flags)

    def __getattr__(self, name: str):
        value = getattr(re.compile(*self._args), name)
        setattr(self, name, value)      # the next calls go straight to it
        return value


@dataclass(frozen=True)
class Outcome:
    """Everything one outcome means. Adding an outcome is one row below."""
    name: str
    exit_code: int          # the run's exit code when it is the worst outcome
    problem: bool           # a failure: counts for --max-fail, skips dependents
    label: str              # how a node that has it as a whole reads
    tty: str                # ANSI colour
    html: str               # Okabe-Ito colour: readable with colour-blindness
    ink: str                # text colour on it
    symbol: str             # so that colour is never the only cue
    meaning: str
    shows_state: bool = True    # the unit's state is shown beside the label
    arrow: bool = False         # shown as `before -> after`
    quiet_message: bool = False  # its message only repeats the label


# From best to worst: a node's outcome is the worst of its units', and the
# run's exit code that of its worst outcome (hence 4 > 1 > 3 > 0).
OUTCOME_TABLE = (
    Outcome("ok", 0, False, "ok", "32", "#009E73", "#000", "\u2713",
            "nothing to do (the state was already right), or a query answered yes"),
    Outcome("changed", 0, False, "changed", "33", "#56B4E9", "#000", "\u25b2",
            "the action changed the unit's state (restart and reload always do)",
            arrow=True),
    Outcome("negative", 3, False, "negative", "35", "#F0E442", "#000", "\u2212",
            "a query (status, is-*, ping) answered no: inactive, disabled, degraded..."),
    Outcome("drift", 3, False, "drift", "35", "#E69F00", "#000", "\u2248",
            "a cluster file's status: the unit is not as the file declares"),
    Outcome("skipped", 1, True, "skipped", "31", "#BBBBBB", "#000", "\u2013",
            "not run: --max-fail reached, a requirement failed, or a signal came first"),
    Outcome("not-found", 1, True, "not found", "31", "#CC79A7", "#000", "?",
            "no such unit on that node", shows_state=False, quiet_message=True),
    Outcome("masked", 1, True, "masked", "31", "#CC79A7", "#000", "\u2298",
            "the unit is masked, the action was refused", shows_state=False),
    Outcome("denied", 1, True, "denied", "31", "#D55E00", "#fff", "!",
            "permission denied (not root, sudo refused or asked for a password)"),
    Outcome("failed", 1, True, "failed", "31", "#D55E00", "#fff", "\u2717",
            "the action failed, or the unit failed once started; systemd's reason is shown"),
    Outcome("error", 1, True, "error", "31", "#D55E00", "#fff", "\u203c",
            "anything else (no systemd, remote shell died, unreadable or too large reply)"),
    Outcome("timeout", 4, True, "timed out", "31", "#0072B2", "#fff", "\u25d4",
            "the node did not finish within --command-timeout"),
    Outcome("unreachable", 4, True, "unreachable", "31", "#000000", "#fff", "\u00d7",
            "ssh could not connect or lost the connection; ssh's own reason is shown"),
    Outcome("interrupted", 130, True, "not finished", "31", "#777777", "#000", "\u2026",
            "a signal (Ctrl-C, SIGTERM, SIGHUP) came first: the node was not finished"),
)
OUTCOMES = {outcome.name: outcome for outcome in OUTCOME_TABLE}
SEVERITY = {outcome.name: rank for rank, outcome in enumerate(OUTCOME_TABLE)}

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NEGATIVE = 3
EXIT_UNREACHABLE = 4
EXIT_FOR_SIGNAL = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}
EXIT_PRECEDENCE = (EXIT_OK, EXIT_NEGATIVE, EXIT_FAILED, EXIT_UNREACHABLE, 129, 130, 143)


def worse_exit(first: int, second: int) -> int:
    """The exit code that says more (4 > 1 > 3 > 0; a signal above all)."""
    return max(first, second, key=EXIT_PRECEDENCE.index)


def worst(outcomes: Iterable[str]) -> str:
    return max(outcomes, key=SEVERITY.__getitem__, default="ok")


# What `systemctl show` is asked for each unit. It prints a unit's
# type-specific properties (Result...) first and the Unit ones after, ending
# with UnitFileState: that key closes a unit's block.
STATE_KEYS = ("LoadState", "ActiveState", "SubState", "UnitFileState", "Result",
              "ExecMainCode", "ExecMainStatus", "NRestarts", "Type")
LAST_STATE_KEY = "UnitFileState"
INVOCATION_KEY = "InvocationID"     # read by start, after its unit's UnitFileState
STATE_VALUE_MAX = 100       # characters of a state value kept (systemd's are words)
_MAIN_CODES = {"1": "exited with status", "2": "killed by signal",
               "3": "dumped core, signal"}


@dataclass(frozen=True)
class UnitState:
    """A unit's state as `systemctl show` reports it."""
    load: str = ""
    active: str = ""
    sub: str = ""
    file: str = ""
    result: str = ""
    main_code: str = ""
    main_status: str = ""
    restarts: str = ""
    type: str = ""                  # a service's Type: when start returns
    # the unit's run (start reads it to tell a new run): neither compared nor logged
    invocation: str = field(default="", compare=False)

    @classmethod
    def from_properties(cls, props: Dict[str, str]) -> Optional["UnitState"]:
        """Each value cut at STATE_VALUE_MAX characters: systemd's are words,
        and a node that prints a megabyte where one belongs must not make its
        log line too long to read back (its node would vanish from the replay)."""
        if "LoadState" not in props:
            return None
        return cls(*(str(props.get(key, ""))[:STATE_VALUE_MAX] for key in STATE_KEYS),
                   invocation=str(props.get(INVOCATION_KEY, ""))[:STATE_VALUE_MAX])

    def as_dict(self) -> Dict[str, str]:
        """The caller's own dict: svcctl.document()'s caller may change it."""
        return dict(self._as_dict())

    @functools.lru_cache(maxsize=4096)      # equal states: made once, copied
    def _as_dict(self) -> Dict[str, str]:
        return dict(zip(STATE_KEYS, (self.load, self.active, self.sub, self.file,
                                     self.result, self.main_code, self.main_status,
                                     self.restarts, self.type)))

    # One definition each, as systemctl's is-active and is-enabled answer yes.
    @property
    def is_running(self) -> bool:
        return self.active in RUNNING_STATES

    @property
    def is_enabled(self) -> bool:
        return self.file in ENABLED_STATES

    @property
    def is_enabled_for_good(self) -> bool:
        """Enabled, and still after a reboot (not only enabled-runtime)."""
        return self.file in LASTING_ENABLED_STATES

    @property
    def is_stopped(self) -> bool:
        """Neither running nor on its way (activating, auto-restart...)."""
        return self.active in STOPPED_STATES

    @property
    def crashed(self) -> bool:
        """Failed, or waiting to be started again after a failure."""
        return self.active == "failed" or self.sub == "auto-restart"

    @property
    def restarted(self) -> bool:
        """Restarted by systemd since the last manual start (which resets it)."""
        return self.restarts.isascii() and self.restarts.isdigit() and \
            int(self.restarts[:6]) > 0

    def brief(self) -> str:
        """One word, as a summary groups units: `active`, `failed`, `masked`..."""
        return self.load if self.load in UNLOADED_STATES else self.active

    def describe(self) -> str:
        """One normalised line: `active (running), enabled`."""
        if self.load in UNLOADED_STATES:
            return self.load
        text = "%s (%s)" % (self.active, self.sub) if self.sub else self.active
        return "%s, %s" % (text, self.file) if self.file else text

    def why(self) -> str:
        """systemd's reason for a failure: `result exit-code, main process
        exited with status 1, restarted 3 times`."""
        parts = ["result " + self.result] if self.result not in ("", "success") else []
        if self.main_code in _MAIN_CODES and self.main_status not in ("", "0"):
            parts.append("main process %s %s" % (_MAIN_CODES[self.main_code],
                                                 self.main_status))
        if self.restarted:      # (not how many times: nodes would not fold)
            parts.append("restarted by systemd after failing")
        return ", ".join(parts) or self.describe()


UNLOADED_STATES = ("not-found", "masked", "bad-setting", "error")
RUNNING_STATES = ("active", "reloading")
STOPPED_STATES = ("inactive", "failed")
# What `systemctl is-system-running` may answer.
SYSTEM_STATES = ("initializing", "starting", "running", "degraded", "maintenance",
                 "stopping", "offline", "unknown")
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "alias", "indirect",
                  "generated", "transient")
# A cluster file's `enabled: true` means this, as Ansible's systemd_service
# reads it: an enablement a reboot forgets is drift, and apply enables it.
LASTING_ENABLED_STATES = tuple(state for state in ENABLED_STATES
                               if state != "enabled-runtime")


def _answer_is_active(state: UnitState) -> Tuple[str, bool]:
    return state.active, state.is_running


def _answer_is_enabled(state: UnitState) -> Tuple[str, bool]:
    return state.file or state.load, state.is_enabled


def _answer_is_failed(state: UnitState) -> Tuple[str, bool]:
    return state.active, state.active == "failed"


def _answer_status(state: UnitState) -> Tuple[str, bool]:
    return state.describe(), state.is_running


def _answer_shown(state: UnitState) -> Tuple[str, bool]:
    return "", True             # show, cat: the answer is systemctl's text


def _said(result: "UnitResult") -> str:
    return result.answer


def _said_briefly(result: "UnitResult") -> str:
    """status: `failed`, not `failed (failed), disabled` (or nodes would not
    group by what matters)."""
    return result.after.brief() if result.after else result.answer


# Parts of `systemctl show` that differ on every node and every run (PIDs,
# times): removed, so that nodes with the same configuration fold.
_RUNTIME_FIELDS_RE = Regex(r" ; (?:start_time|stop_time|pid|code|status)=[^;}]*?"
                                r"(?= [;}])")


def _clean_properties(text: str) -> str:
    return _RUNTIME_FIELDS_RE.sub("", text)


# What differs from node to node in the same story of a journal: process ids.
_JOURNAL_PID_RE = Regex(r"\b(process|[Pp][Ii][Dd])([ =:]+)[0-9]+\b")
JOURNAL_LINE_MAX = 500
# journalctl's own lines about the journal, in every output mode: left out
# (a systemd older than 250 starts with "-- Logs begin at TIME, end at
# TIME. --", or "-- Journal begins at", different on every node: no fold)
_JOURNAL_ABOUT_RE = Regex(r"-- (?:No entries|(?:Logs begin|Journal begins) at .*) --")


def _clean_journal(text: str) -> str:
    """`journalctl -o json --output-fields=MESSAGE` lines -> the messages,
    made to fold across nodes: printable, process ids masked. The journal is
    read as JSON, one entry a line starting with `{`, because its messages
    are anyone's text: a message line could otherwise start with the run's
    marker and forge svcctl's framing. Other lines (journalctl's own errors)
    are kept, but its lines about the journal."""
    out = []
    for line in text.split("\n"):
        if line.startswith("{"):
            try:
                message = json.loads(line).get("MESSAGE", "")
            except (ValueError, AttributeError, RecursionError):
                continue            # not journalctl's: a node's own garbage
            if isinstance(message, list):       # not UTF-8: journalctl's bytes
                message = bytes(b for b in message if isinstance(b, int) and
                                0 <= b < 256).decode("utf-8", "replace")
            elif message is None:   # what journalctl's JSON makes of a long one
                message = "(a message of 4096 bytes or more, left out by journalctl's JSON)"
            lines = str(message).split("\n")
        elif line.strip() and not _JOURNAL_ABOUT_RE.fullmatch(line):
            lines = [line]
        else:
            continue
        out += [_JOURNAL_PID_RE.sub(r"\1\2N", printable(text[:JOURNAL_LINE_MAX],
                                                         keep_tabs=True).rstrip())
                for text in lines]
    return "\n".join(out)


def oldest_first(text: str) -> str:
    """journalctl -r's entries back in time order. `--since T -n N` shows the
    first N lines after T, `-r --since T -n N` the last N: svcctl's --lines
    says the last. An entry is a line, and in --raw the indented lines after
    it (a message of several lines)."""
    entries: List[List[str]] = []
    for line in text.split("\n"):
        if entries and line[:1] in (" ", "\t"):
            entries[-1].append(line)
        else:
            entries.append([line])
    return "\n".join(line for entry in reversed(entries) for line in entry)


# What journalctl, sudo or the shell print on lines of their own when the
# journal cannot be read, or only in part. No message can read so: messages
# come as JSON lines (see _clean_journal), or after a timestamp with --raw.
# Said per node in svcctl's words, never a failure of the run.
_JOURNAL_UNREAD = (
    # dash, bash and busybox as /bin/sh (svcctl's `exec /bin/sh -c`), sudo
    (Regex(r"^(?:(?:/bin/)?sh|sudo)(?:: [^:\n]*)?: journalctl: (?:command )?not found$",
           re.M), "journalctl not found"),
    (Regex(r"^No journal files were opened due to insufficient permissions\.$", re.M),
     "no permission (not root, not in group systemd-journal or adm)"),
)
# A user outside those groups reads their own lines only (systemd's hint, on
# three lines: its next two are indented by six spaces)
_JOURNAL_HINT_RE = Regex(r"^Hint: You are currently not seeing messages from .*"
                         r"(?:\n {6}\S.*)*", re.M)


def journal_notes(text: str) -> Tuple[List[str], bool, str]:
    """journalctl's output -> (what svcctl says of it, whether the journal
    was read at all, the text without the lines of journalctl's said so)."""
    notes = ["journal not read: " + said for regex, said in _JOURNAL_UNREAD
             if regex.search(text)]
    read = not notes
    if read and _JOURNAL_HINT_RE.search(text):
        notes.append("journal partly read: only this user's lines (not root, not in "
                     "group systemd-journal or adm)")
    for regex in [regex for regex, _ in _JOURNAL_UNREAD] + [_JOURNAL_HINT_RE]:
        text = regex.sub("", text)
    return notes, read, text


def _clean_listing(text: str) -> str:
    """`list-units --plain` lines -> `unit: active (sub)`, no description."""
    out = []
    for line in text.split("\n"):
        words = line.split()
        if len(words) >= 4:
            load = "" if words[1] == "loaded" else words[1] + ", "
            out.append("%s: %s%s (%s)" % (words[0], load, words[2], words[3]))
    return "\n".join(out)


@dataclass(frozen=True)
class Action:
    """Everything one action means. Adding an action is one row below.

    kind: "change" runs systemctl on each unit between two state reads;
    "query" only reads the states and answers from them; "node" runs one
    command per node, no unit; "apply" makes each unit match a cluster file."""
    name: str
    kind: str
    help: str
    systemctl: Tuple[str, ...] = ()     # arguments after `systemctl`, before `--`
    program: str = "systemctl"          # journal: journalctl, whose unit comes after
    unit_flag: str = "--"               # -u (after `--` it reads a match)
    silent_rc: bool = False             # journal --grep: an exit code of 1 with
    # nothing printed is "no line matched", not a failure
    reads_before: bool = False          # read the state first: changed or ok?
    runs_tell: bool = False             # ...unless the unit's run, read first
    # (see _RUNS), tells: the same run after is ok, a new one changed
    tells_change: Optional[Regex] = None    # or systemctl's output says it
    always_changes: bool = False        # restart & co. change whatever the state
    goal: Optional[Callable[[UnitState], bool]] = None      # nothing left to do
    changes_from: Optional[Callable[[UnitState], bool]] = None  # a success from
    # this state is a change even if the state reads the same after (a oneshot)
    must_run: str = ""                  # "always" or "if it ran": running after a
    # success, or the unit failed once started (it died, or restarts in a loop)
    answer: Optional[Callable[[UnitState], Tuple[str, bool]]] = None  # query: the
    # text systemctl would print, and whether it means yes
    sums_up: Optional[Callable[["UnitResult"], str]] = None     # the summary
    # names each answer's NodeSet (`failed (4): node[1-4]`), by this word
    runs: str = ""                      # query: run it "always" (its text is the
    # answer: show, cat) or with -v ("verbose": status)
    output: str = ""                    # its output shown: "" (for problems, or
    # with -v), "lines" (each as UNIT: line), "text" (always, under the unit)
    clean: Optional[Callable[[str], str]] = None    # output made foldable
    lists: bool = False                 # node: its output lists units
    drift_outcome: bool = False         # with -c: outcomes are ok or drift
    no_when_failed: bool = False        # node: non-zero exit with an answer is "no"
    reverse: bool = False               # cluster file: in reverse dependency order
    ensures_goal: bool = False          # after a success the goal must hold
    nothing_to_do: Optional[Regex] = None   # systemctl's error that only says
    # the goal already held (reset-failed of a unit not loaded): ok
    takes_now: bool = False             # --now: start or stop as well
    now_starts: bool = False            # with --now, the unit must run after
    now_stops: bool = False             # with --now, it must be stopped after
    privileged: bool = False            # through `sudo -n` with --sudo
    reads_as_root: bool = False         # journal: with --sudo too (a user outside
    # systemd-journal reads only their own lines), though it changes nothing
    reads_journal: bool = False         # its output is journalctl's, newest first
    # (-r, see oldest_first), bounded in bytes on the node; a journal it cannot
    # read is said, never a failure
    why: bool = False                   # a query whose failed units come with
    # their journal lines (status); changes and apply always do
    file_only: bool = False             # only with -c FILE
    takes: Tuple[str, ...] = ()         # the options of its own it accepts...
    needs: str = ""                     # ...and the one it cannot do without

    def __str__(self) -> str:
        return self.name

    def runs_per_unit(self, verbose: bool = False) -> bool:
        """Is systemctl run on each unit (not only its state read)?"""
        return self.kind in ("change", "apply") or self.runs == "always" or (
            verbose and self.runs == "verbose")

    def reads_state_before(self, now: bool) -> bool:
        """--now starts or stops as well: only a state read first tells."""
        return self.reads_before or (now and self.takes_now)

    def tells_why(self) -> bool:
        """Do failed units come back with their run's journal lines?"""
        return self.kind in ("change", "apply") or self.why

    def starts_units(self, now: bool) -> bool:
        """Are units started, so that --settle watches them (and START_GRACE
        waits for them)?"""
        return self.kind == "apply" or self.expects_running(None, now)

    def expects_running(self, before: Optional[UnitState], now: bool,
                        was_up: bool = False) -> bool:
        """Must the unit be running after this action succeeded? (try-restart:
        if it was running or starting, or `was_up`: a run was read first)"""
        if self.must_run == "if it ran":
            return was_up or before is None or _restartable(before)
        return self.must_run == "always" or (now and self.now_starts)


# What `systemctl enable/disable/mask/unmask` print when, and only when, they
# change something: one systemctl process less than a state read first.
_LINKS_CHANGED_RE = Regex(r"^(Created symlink|Removed) ", re.M)


def _running(state: UnitState) -> bool:
    return state.is_running


def _not_running(state: UnitState) -> bool:
    return not state.is_running


def _stopped(state: UnitState) -> bool:
    return state.is_stopped


# What systemd's try-restart restarts (job_type_collapse: active or
# activating, so a unit waiting to be restarted after a crash too)
RESTARTABLE_STATES = RUNNING_STATES + ("activating", "refreshing")


def _restartable(state: UnitState) -> bool:
    return state.active in RESTARTABLE_STATES


def _not_restartable(state: UnitState) -> bool:
    return not _restartable(state)


ACTION_TABLE = (
    Action("start", "change", "start units", ("start",), reads_before=True, runs_tell=True,
           goal=_running, changes_from=_not_running, must_run="always",
           privileged=True),
    Action("stop", "change", "stop units", ("stop",), reads_before=True,
           goal=_stopped, ensures_goal=True, reverse=True, privileged=True),
    Action("restart", "change", "restart units", ("restart",), always_changes=True,
           must_run="always", privileged=True),
    Action("reload", "change", "reload units' configuration", ("reload",),
           always_changes=True, must_run="always", privileged=True),
    Action("try-restart", "change", "restart units that are running",
           ("try-restart",), reads_before=True, runs_tell=True, goal=_not_restartable,
           changes_from=_restartable, must_run="if it ran", privileged=True),
    Action("reload-or-restart", "change", "reload, or restart units that cannot",
           ("reload-or-restart",), always_changes=True, must_run="always",
           privileged=True),
    Action("enable", "change", "enable units (--now: and start them)", ("enable",),
           tells_change=_LINKS_CHANGED_RE, goal=lambda s: s.is_enabled, ensures_goal=True,
           takes_now=True, now_starts=True, privileged=True),
    Action("disable", "change", "disable units (--now: and stop them)", ("disable",),
           tells_change=_LINKS_CHANGED_RE,
           goal=lambda s: s.file not in ("enabled", "enabled-runtime"),
           ensures_goal=True, reverse=True, takes_now=True, now_stops=True,
           privileged=True),
    Action("mask", "change", "mask units (--now: and stop them)", ("mask",),
           tells_change=_LINKS_CHANGED_RE, goal=lambda s: s.load == "masked",
           ensures_goal=True,
           reverse=True, takes_now=True, now_stops=True, privileged=True),
    Action("unmask", "change", "unmask units", ("unmask",),
           tells_change=_LINKS_CHANGED_RE, goal=lambda s: s.load != "masked",
           ensures_goal=True, privileged=True),
    Action("reset-failed", "change", "reset units' failed state", ("reset-failed",),
           reads_before=True, goal=lambda s: s.active != "failed", ensures_goal=True,
           nothing_to_do=Regex(r"^Failed to reset failed state of unit \S+: Unit \S+ "
                               r"not loaded\.$", re.M), privileged=True),
    Action("status", "query", "one line per unit: its state (-v: systemctl's text)",
           ("status", "--no-pager", "--full"), answer=_answer_status,
           sums_up=_said_briefly, runs="verbose", drift_outcome=True, why=True),
    Action("is-active", "query", "is each unit running?", answer=_answer_is_active,
           sums_up=_said),
    Action("is-enabled", "query", "is each unit enabled?", answer=_answer_is_enabled,
           sums_up=_said),
    Action("is-failed", "query", "has each unit failed?", answer=_answer_is_failed,
           sums_up=_said),
    Action("show", "query", "units' properties (-p PROP,...), folded across nodes",
           ("show",), answer=_answer_shown, runs="always", output="lines",
           clean=_clean_properties, takes=("-p",), needs="-p"),
    Action("cat", "query", "units' files and drop-ins (--diff: against the most "
           "common version)", ("cat",), answer=_answer_shown, runs="always",
           output="text", takes=("--diff",)),
    Action("journal", "query", "units' journal, folded across nodes (--lines, --since, "
           "--until, --grep, --priority, --boot; --mask, --raw, --compare NODESET)",
           ("--no-pager",), program="journalctl", unit_flag="-u", silent_rc=True,
           reads_as_root=True, reads_journal=True,
           answer=_answer_shown, runs="always", output="text",
           takes=("--lines", "--since", "--until", "--grep", "--priority", "--boot",
                  "--mask", "--raw", "--compare")),
    Action("list-units", "node", "units in memory (--failed, --state STATE, PATTERN)",
           ("list-units", "--plain", "--no-legend", "--no-pager", "--full"),
           output="text", clean=_clean_listing, lists=True, takes=("--failed", "--state")),
    Action("daemon-reload", "node", "reload systemd's configuration",
           ("daemon-reload",), privileged=True),
    Action("ping", "node", "does the node answer, is systemd running?",
           ("is-system-running",), no_when_failed=True, sums_up=_said),
    Action("apply", "apply", "with -c: make each unit match the cluster file",
           privileged=True, file_only=True),
)
ACTIONS = {action.name: action for action in ACTION_TABLE}


@dataclass(frozen=True)
class Declared:
    """What a cluster file declares for one service's unit."""
    service: str
    state: str = "running"              # "running" or "stopped"
    enabled: Optional[bool] = None      # None: enablement not managed

    def text(self) -> str:
        return self.state + ("" if self.enabled is None else
                             ", enabled" if self.enabled else ", disabled")

    def drifted(self, state: UnitState) -> bool:
        """Does the unit's actual state differ from the declared one?"""
        if state.load != "loaded":
            return True
        if not (state.is_running if self.state == "running" else state.is_stopped):
            return True
        if self.enabled is None:
            return False
        return not state.is_enabled_for_good if self.enabled else state.is_enabled

    def changes(self, state: UnitState) -> List[str]:
        """What apply would run on a unit in this state, in its order (the
        same tests as the remote script's, _APPLY): start or stop, then
        enable or disable."""
        todo = []
        if self.state == "running" and not state.is_running:
            todo.append("start")
        if self.state == "stopped" and not state.is_stopped:
            todo.append("stop")
        if self.enabled is True and not state.is_enabled_for_good:
            todo.append("enable")
        if self.enabled is False and state.is_enabled:
            todo.append("disable")
        return todo


@dataclass(frozen=True)
class Step:
    """One unit to act on, in a node's remote script."""
    unit: str
    requires: Tuple[int, ...] = ()      # earlier steps that must succeed here
    declared: Optional[Declared] = None  # with -c: the service's declaration


def node_steps(action: Action, steps: Sequence[Step]) -> List[Step]:
    """What a node reports on: its steps, or the action itself (no unit)."""
    return [Step(action.name)] if action.kind == "node" else list(steps)


@dataclass(frozen=True)
class UnitResult:
    """One unit on one node. Frozen: nodes with equal replies share theirs
    (_judged_reply), so a change is a new one (dataclasses.replace)."""
    unit: str
    outcome: str
    before: Optional[UnitState] = None
    after: Optional[UnitState] = None
    rc: Optional[int] = None
    message: str = ""               # the action's own output or reason, printable
    answer: str = ""                # a query's answer, as systemctl would say it
    service: str = ""               # with -c: the service and its declaration
    declared: str = ""
    drift: bool = False
    journal: str = ""               # a failed unit's run, as its journal says

    def as_dict(self) -> dict:
        return {"unit": self.unit, "outcome": self.outcome,
                "before": self.before.as_dict() if self.before else None,
                "after": self.after.as_dict() if self.after else None,
                "rc": self.rc, "message": self.message, "answer": self.answer,
                "service": self.service or None, "declared": self.declared or None,
                "drift": self.drift, "journal": self.journal or None}


@dataclass
class NodeResult:
    """Everything svcctl learned about one node in one run."""
    node: str
    units: List[UnitResult]
    reason: str = ""                # why the node as a whole was not reached
    duration: Optional[float] = None

    @property
    def outcome(self) -> str:
        units = self.units
        return units[0].outcome if len(units) == 1 else worst(u.outcome for u in units)


@dataclass
class ServiceView:
    """A cluster file's service across its nodes: states by NodeSet, drift."""
    service: str
    unit: str
    nodes: NodeSet
    declared: str
    states: List[Tuple[str, NodeSet]]
    drift: NodeSet
    problem: bool = False           # some node has a problem outcome (shown by -q)

    def as_dict(self) -> dict:
        return {"service": self.service, "unit": self.unit, "nodes": str(self.nodes),
                "declared": self.declared, "drift": str(self.drift),
                "states": {text: str(nodes) for text, nodes in self.states}}


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
    interrupted_by: str = ""        # "SIGINT", "SIGTERM", "SIGHUP" or ""
    notes: List[str] = field(default_factory=list)
    subject: str = ""               # what the run acted on, when not units
    services: List[str] = field(default_factory=list)   # with -c, in order

    @property
    def outcomes(self) -> Dict[str, NodeSet]:
        """Each outcome's NodeSet, in the outcome table's order."""
        if getattr(self, "_outcomes", None) is None:
            groups = fold_by((result.outcome, result.node) for result in self.nodes)
            self._outcomes = {name: groups[name] for name in OUTCOMES if name in groups}
        return self._outcomes

    def exit_code(self) -> int:
        if self.interrupted_by:
            return EXIT_FOR_SIGNAL.get(self.interrupted_by, 130)
        return OUTCOMES[worst(r.outcome for r in self.nodes)].exit_code

    def title(self) -> str:
        """`start demo.service`, `status 3 services of cluster.yaml`."""
        what = self.subject or ",".join(self.units)
        return self.action + (" " + what if what else "")


# A name ClusterShell reads as one node with nothing to strip or escape:
# printable ASCII without whitespace, '%' or the operators ,!&^[] (with no
# group resolver, '@', '*' and '?' are plain characters). Other names are
# left to ClusterShell itself.
_FOLD_PLAIN_RE = Regex(r"[\x22-\x24\x27-\x2b\x2d-\x5a\x5c\x5f-\x7e]+")
_FOLD_DIGITS_RE = Regex(r"([0-9]+)")
_FOLD_HUGE_RE = Regex(r"[0-9]{101}")   # ClusterShell refuses > 1e100


def fold(names: Iterable[str]) -> NodeSet:
    """NodeSet.fromlist(names) with no group resolution, built faster: the
    same nodes, the same string and the same order. A name is text cut at its
    digit runs: the texts make its pattern (node%s-ib%s), the runs its
    indexes, kept as written (007 stays padded). Each pattern is folded once
    over all its indexes, as ClusterShell folds them."""
    flat: Dict[Tuple[str, ...], Set[str]] = {}   # one index: (pre, post)
    multi: Dict[Tuple[str, ...], Set[Tuple[str, ...]]] = {}
    bare: Set[str] = set()                       # no index
    odd: List[str] = []                          # for ClusterShell to parse
    for name in names:
        if not _FOLD_PLAIN_RE.fullmatch(name) or (
                len(name) > 100 and _FOLD_HUGE_RE.search(name)):
            odd.append(name)
            continue
        parts = _FOLD_DIGITS_RE.split(name)
        if len(parts) == 3:
            flat.setdefault((parts[0], parts[2]), set()).add(parts[1])
        elif len(parts) == 1:
            bare.add(name)
        else:
            multi.setdefault(tuple(parts[0::2]), set()).add(tuple(parts[1::2]))
    nodes = NodeSet.fromlist(odd, resolver=RESOLVER_NOGROUP)
    for name in bare:
        nodes.update(NodeSetBase(name))
    for texts, indexes in flat.items():
        nodes.update(NodeSetBase("%s".join(texts), _rangeset(indexes), False))
    for texts, points in multi.items():
        nodes.update(NodeSetBase("%s".join(texts), _fold_nd(points), False))
    return nodes


def fold_by(pairs: Iterable[Tuple[object, str]]) -> Dict[object, NodeSet]:
    """(key, node) pairs -> each key's nodes, folded; keys in the order first
    met. The one way nodes are grouped for a summary, a view or a list."""
    groups: Dict[object, List[str]] = {}
    for key, node in pairs:
        groups.setdefault(key, []).append(node)
    return {key: fold(names) for key, names in groups.items()}


def _rangeset(indexes: Iterable[str]) -> RangeSet:
    """A RangeSet of indexes as written ("007", "7")."""
    rangeset = RangeSet()
    rangeset.update(indexes)
    return rangeset


def _fold_nd(points: Set[Tuple[str, ...]]) -> RangeSetND:
    """The RangeSetND that ClusterShell makes of these index tuples, folded.
    A full grid (every combination of the indexes seen on each axis: racks x
    nodes, or one axis varying) is one vector: RangeSetND's univariate
    folding, or its multivariate one, which merges a grid axis after axis
    from the last. Otherwise the vectors of its multivariate folding,
    computed by _NDFolder without its cost."""
    axes = [set(axis) for axis in zip(*points)]
    if math.prod(len(axis) for axis in axes) == len(points):
        return RangeSetND([[_rangeset(axis) for axis in axes]],
                          copy_rangeset=False)
    rangesetnd = RangeSetND()
    # it keeps its folded vectors in _veclist and folds them again while
    # _dirty: it is given them folded as it would fold them
    if not {"_veclist", "_dirty"} <= set(vars(rangesetnd)):
        return RangeSetND(list(points))     # another ClusterShell: it folds
    rangesetnd._veclist = [[_rangeset(axis) for axis in vector]
                           for vector in _NDFolder().fold(points)]
    rangesetnd._dirty = False
    return rangesetnd


_NDVector = Tuple[frozenset, ...]


class _NDFolder:
    """RangeSetND._fold_multivariate_merge (ClusterShell 1.9-1.10), same
    steps, same result, same vector order, in less time.

    ClusterShell expands the set into single points, then repeats passes
    over its vectors, sorted anew before each pass: a vector absorbs the
    next ones while they differ from it on one axis only (easy passes), and
    once a pass changes nothing, it absorbs any later one that does (full
    passes) until a full pass changes nothing. Vectors are disjoint, so two
    of them merge exactly when they differ on one axis. Here each axis is a
    frozenset interned once (equal sets are the same object, compared with
    `is`), the first pass runs on the sorted points themselves, and full
    passes find candidates by hash instead of comparing every pair."""

    def __init__(self):
        self._interned: Dict[frozenset, frozenset] = {}
        self._ends: Dict[frozenset, Tuple[str, str]] = {}

    def fold(self, points: Set[Tuple[str, ...]]) -> List[_NDVector]:
        """The folded vectors, in ClusterShell's final (sorted) order."""
        vectors, changed = self._first_pass(sorted(points))
        full = False
        while True:
            if not changed:
                if full:
                    return vectors
                full = True
            vectors.sort(key=self._sort_key)    # stable, as list.sort
            if full:
                vectors, changed = self._full_pass(vectors)
            else:
                vectors, changed = self._easy_pass(vectors)

    def _set(self, indexes) -> frozenset:
        """The one frozenset object equal to indexes."""
        key = frozenset(indexes)
        return self._interned.setdefault(key, key)

    def _sort_key(self, vector: _NDVector):
        """RangeSetND._sort's key: larger vectors first, then per axis larger
        sets, then lower first and last index (as strings, sorted by length
        then text as RangeSet sorts them)."""
        size = 1
        axes = []
        for axis in vector:
            size *= len(axis)
            ends = self._ends.get(axis)
            if ends is None:
                ends = self._ends[axis] = (min(axis, key=_index_key),
                                           max(axis, key=_index_key))
            axes.append((-len(axis), ends[0], ends[1]))
        return -size, tuple(axes)

    def _first_pass(self, points: List[Tuple[str, ...]]):
        """The easy pass over the sorted single points: runs of points that
        differ from the run's first on one same axis make one vector."""
        vectors: List[_NDVector] = []
        run, axis, grown = points[0], -1, set()
        for point in points[1:]:
            if axis < 0:
                axis = _only_diff(run, point)
                if axis >= 0:
                    grown = {run[axis], point[axis]}
                    continue
            elif (point[:axis] == run[:axis]
                  and point[axis + 1:] == run[axis + 1:]):
                grown.add(point[axis])
                continue
            vectors.append(self._vector(run, axis, grown))
            run, axis = point, -1
        vectors.append(self._vector(run, axis, grown))
        return vectors, len(vectors) < len(points)

    def _vector(self, point: Tuple[str, ...], axis: int, grown) -> _NDVector:
        """The vector of a run: its point, with the grown axis if any."""
        return tuple(self._set(grown if i == axis else (index,))
                     for i, index in enumerate(point))

    def _merged(self, vector: _NDVector, other: _NDVector, axis: int) -> _NDVector:
        """Union of two vectors that differ on this axis only."""
        return (vector[:axis] + (self._set(vector[axis] | other[axis]),)
                + vector[axis + 1:])

    def _easy_pass(self, vectors: List[_NDVector]):
        """Each vector absorbs the following ones while they differ from it
        on one axis only."""
        result: List[_NDVector] = []
        current = vectors[0]
        for vector in vectors[1:]:
            axis = _only_other_axis(current, vector)
            if axis >= 0:
                current = self._merged(current, vector, axis)
            else:
                result.append(current)
                current = vector
        result.append(current)
        return result, len(result) < len(vectors)

    def _full_pass(self, vectors: List[_NDVector]):
        """Each vector absorbs, in order, every later vector that differs
        from it (as grown so far) on one axis only; a vector skipped is not
        looked at again in this pass."""
        index = _AxisIndex(vectors)
        result: List[_NDVector] = []
        for position, current in enumerate(vectors):
            if not index.alive[position]:
                continue
            after = position
            while True:
                after, axis = index.next_match(current, after)
                if after < 0:
                    break
                current = self._merged(current, vectors[after], axis)
            result.append(current)
        return result, len(result) < len(vectors)


class _AxisIndex:
    """Positions of vectors by their value on all axes but one, to find the
    first later vector that differs from a given one on one axis only."""

    def __init__(self, vectors: List[_NDVector]):
        self.alive = [True] * len(vectors)
        self._axes = range(len(vectors[0]))
        self._buckets: List[Dict[_NDVector, List[int]]] = [{} for _ in self._axes]
        for position, vector in enumerate(vectors):
            for axis in self._axes:
                key = vector[:axis] + vector[axis + 1:]
                self._buckets[axis].setdefault(key, []).append(position)

    def next_match(self, vector: _NDVector, after: int) -> Tuple[int, int]:
        """(position, axis) of the first live vector past `after` that
        differs from vector on that axis only, which is then taken out;
        (-1, -1) if none."""
        best, best_axis = -1, -1
        for axis in self._axes:
            positions = self._buckets[axis].get(vector[:axis] + vector[axis + 1:])
            if not positions:
                continue
            at = bisect.bisect_right(positions, after)
            while at < len(positions) and not self.alive[positions[at]]:
                del positions[at]       # absorbed earlier: forget it
            if at < len(positions) and (best < 0 or positions[at] < best):
                best, best_axis = positions[at], axis
        if best >= 0:
            self.alive[best] = False
        return best, best_axis


def _only_diff(one: Tuple[str, ...], other: Tuple[str, ...]) -> int:
    """The only axis where two points differ, or -1 (none, or several)."""
    found = -1
    for axis, (mine, theirs) in enumerate(zip(one, other)):
        if mine != theirs:
            if found >= 0:
                return -1
            found = axis
    return found


def _only_other_axis(one: _NDVector, other: _NDVector) -> int:
    """The only axis where two vectors differ, or -1: their sets are
    interned, so equal sets are the same object."""
    found = -1
    for axis, (mine, theirs) in enumerate(zip(one, other)):
        if mine is not theirs:
            if found >= 0:
                return -1
            found = axis
    return found


def _index_key(index: str) -> Tuple[int, str]:
    """RangeSet's order of indexes: by length, then text."""
    return len(index), index


class UsageError(Exception):
    """Bad input: reported as `svcctl: message`, exit 2, nothing run."""
    exit_code = 2       # EXIT_USAGE, for callers of prepare()


# =============================================================================
# Input validation: nothing typed, configured or read back reaches a shell
# unchecked
# =============================================================================

UNIT_SUFFIXES = ("service", "socket", "device", "mount", "automount", "swap",
                 "target", "path", "timer", "slice", "scope")
# systemd's unit-name rules (unit_name_is_valid), ASCII only: look-alike
# letters are refused. An instance may hold '@' (mbsync@me@example.com).
_UNIT_CHARS = r"A-Za-z0-9:_.\\-"
_UNIT_RE = Regex(r"[%s]+(@[@%s]*)?\.(%s)" % (_UNIT_CHARS, _UNIT_CHARS,
                                                  "|".join(UNIT_SUFFIXES)), re.ASCII)
_NODE_RE = Regex(r"[A-Za-z0-9_][A-Za-z0-9._:-]*", re.ASCII)
_USER_RE = Regex(r"[A-Za-z0-9_][A-Za-z0-9._-]*", re.ASCII)
_PATH_RE = Regex(r"[A-Za-z0-9_./+-]+", re.ASCII)
UNIT_NAME_MAX = 255
NODE_NAME_MAX = 253
MAX_NODES = 100000          # per run, unless --max-nodes says otherwise
TIME_MAX = 7 * 86400        # the longest timeout or pause accepted, in seconds


def normalise_unit(name: str) -> str:
    """Validate one unit name; a name without a known suffix gets `.service`,
    and a path its unit as systemctl mangles it (/home -> home.mount)."""
    if not name:
        raise UsageError("empty unit name")
    if name.startswith("/"):
        return unit_from_path(name)
    full = name
    if "." not in name or name.rsplit(".", 1)[-1] not in UNIT_SUFFIXES:
        full = name + ".service"
    if len(full) > UNIT_NAME_MAX or not _UNIT_RE.fullmatch(full):
        raise UsageError("invalid unit name: %s" % printable(name))
    if "@." in full and full.index("@") == full.rindex("@."):
        # systemctl show stops at a template: no state could be read
        raise UsageError("%s is a template: name an instance (%s)" % (
            full, full.replace("@.", "@NAME.", 1)))
    return full


_PATH_CHARS_RE = Regex(r"[^A-Za-z0-9:_./]", re.ASCII)


def unit_from_path(path: str, suffix: str = "") -> str:
    """systemd's unit_name_from_path(), as `systemctl status /home` uses it:
    /dev/sda -> dev-sda.device, /home -> home.mount, / -> -.mount."""
    suffix = suffix or (".device" if path.startswith(("/dev/", "/sys/")) else ".mount")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts or any(len(os.fsencode(part)) > 255 for part in parts) or \
            (path and not path.startswith("/") and not parts):      # "." or "./"
        raise UsageError("invalid path for a unit: %s" % printable(path))
    if not parts:
        return "-" + suffix
    text = "/".join(parts)
    escaped = _PATH_CHARS_RE.sub(lambda m: "".join(
        "\\x%02x" % byte for byte in os.fsencode(m.group())), text).replace("/", "-")
    if escaped.startswith("."):
        escaped = "\\x2e" + escaped[1:]
    unit = escaped + suffix
    if len(unit) > UNIT_NAME_MAX:
        raise UsageError("path too long for a unit name: %s" % printable(path[:80]))
    return unit


def parse_units(text: str) -> List[str]:
    """`demo,web@1` -> ['demo.service', 'web@1.service'], no duplicates."""
    units: List[str] = []
    for name in text.split(","):
        unit = normalise_unit(name.strip())
        if unit not in units:
            units.append(unit)
    return units


# The NodeSet grammar svcctl accepts, checked before ClusterShell reads a
# pattern: ClusterShell pastes group names unquoted into the shell commands
# of its group sources (groups.conf `map`), and expands ranges into memory.
#   PATTERN = TOKEN ([,!&^] TOKEN)*       (blanks around tokens allowed)
#   TOKEN   = NAME | @[SOURCE:]NAME | @[SOURCE:]* | @@[SOURCE] | @last:OUTCOME
#   NAME    = ([A-Za-z0-9_] | RANGES) ([A-Za-z0-9_.+-] | RANGES)*
#   RANGES  = [N[-N[/N]](,N[-N[/N]])*]
_RNG = r"\d{1,18}(?:-\d{1,18}(?:/\d{1,18})?)?"
_RANGES = r"\[%s(?:,%s)*\]" % (_RNG, _RNG)
_NAME = r"(?:[A-Za-z0-9_]|%s)(?:[A-Za-z0-9_.+-]|%s)*" % (_RANGES, _RANGES)
_SOURCE = r"[A-Za-z0-9_][A-Za-z0-9_.+-]*"
_TOKEN = r"(?:%s|@(?:%s:)?(?:%s|\*)|@@(?:%s)?)" % (_NAME, _SOURCE, _NAME, _SOURCE)
_OPERAND_TOKEN_RE = Regex(r"[ \t]*%s[ \t]*" % _TOKEN, re.ASCII)
# `@last:OUTCOME` is svcctl's, never ClusterShell's (which would read a group
# source `last`): the nodes of that outcome in the log's last run, read by svcctl
_LAST_RE = Regex(r"[ \t]*@last:([A-Za-z0-9_.+-]*)[ \t]*", re.ASCII)
# Read piece by piece (never one regex over the whole pattern: its backtracking
# state grows with the text, 1.7 GB for 8 MiB): a bracket, an operator, or text.
_PIECE_RE = Regex(r"\[[^\[\]]*\]|[,!&^]")
_RANGE_RE = Regex(r"(\d{1,18})(?:-(\d{1,18})(?:/(\d{1,18}))?)?", re.ASCII)
# An operand is at most a node name (NODE_NAME_MAX) once expanded, each
# bracket at least one character of it: its text with brackets as `[0]` fits in
OPERAND_MAX = 3 * NODE_NAME_MAX
RANGE_SPAN_MAX = 10 ** 9 - 1    # ClusterShell asserts on a range spanning more


def pattern_size(pattern: str, limit: int,
                 last: Optional[Callable[[str], NodeSet]] = None) -> int:
    """Check a NodeSet pattern against the grammar above, and count what
    ClusterShell would expand to read it, without expanding anything: every
    operand of every operator (`!`, `&` and `^` ones too), each for the
    nodes it names, a group operand for each group name, `@last:OUTCOME` for
    the nodes `last` reads for it (refused without `last`). Counting stops
    once over `limit` (then the count is only known to be more). Linear in
    time, small in memory whatever the length of the pattern."""
    total, operand, size, start = 0, "", 1, 0
    for match in _PIECE_RE.finditer(pattern + ","):     # a last "," ends the last operand
        operand += pattern[start:match.start()]
        start = match.end()
        if len(operand) > OPERAND_MAX:
            break
        if match.group().startswith("["):
            operand += "[0]"
            size *= ranges_size(match.group()[1:-1], limit)
            continue
        if not _OPERAND_TOKEN_RE.fullmatch(operand):
            break
        named = _LAST_RE.fullmatch(operand)
        if named:
            if last is None:
                raise UsageError("%s: @last is taken on the command line only (a NodeSet "
                                 "argument, -w, -x, -n)" % printable(operand.strip()))
            size = len(last(named.group(1)))
        total += size
        if total > limit:
            return total
        operand, size = "", 1
    else:
        return total
    raise UsageError("invalid NodeSet: %s" % printable(pattern[:200]))


def ranges_size(ranges: str, limit: int) -> int:
    """The indexes of a bracket `1-5,7,10-20/2` (more than `limit`: stops)."""
    if ranges.count(",") >= limit:      # each item is at least one index
        return ranges.count(",") + 1
    return sum(range_size(item) for item in ranges.split(","))


def range_size(item: str) -> int:
    match = _RANGE_RE.fullmatch(item)
    if not match:
        raise UsageError("invalid range: %s" % printable(item[:80]))
    first, last, step = match.groups()
    if last is None:
        return 1
    if int(last) < int(first) or (step is not None and int(step) < 1):
        raise UsageError("invalid range: %s" % printable(item))
    if int(last) - int(first) >= RANGE_SPAN_MAX:
        raise UsageError("invalid range: %s (ClusterShell takes ranges spanning less than "
                         "10^9)" % printable(item))
    return (int(last) - int(first)) // int(step or 1) + 1


def parse_nodes(patterns: Sequence[str], exclude: Sequence[str] = (),
                resolver=None, limit: int = MAX_NODES,
                last: Optional[Callable[[str], NodeSet]] = None) -> NodeSet:
    """Union of NodeSet patterns minus exclusions; never empty, at most
    `limit` nodes, every name a host name. Before anything is expanded, all
    the operands of the patterns and exclusions together name at most
    `limit` nodes (each is expanded in memory, excluded ones too).
    `@last:OUTCOME` operands are the NodeSets `last` gives for them."""
    total = 0
    for pattern in list(patterns) + list(exclude):
        total += pattern_size(pattern, limit - total, last)
        if total > limit:
            raise UsageError("%s: more than %d nodes in all, every operand counted "
                             "(see --max-nodes)" % (printable(pattern[:80]), limit))
    try:
        nodes = NodeSet(resolver=resolver)
        for pattern in patterns:
            nodes.update(nodeset_of(pattern, resolver, last))
        for pattern in exclude:
            nodes.difference_update(nodeset_of(pattern, resolver, last))
    except (NodeSetException, GroupResolverError, GroupSourceError,
            configparser.Error) as exc:     # a broken groups.conf too
        raise UsageError("invalid NodeSet: %s" % printable(str(exc)))
    if not nodes:
        raise UsageError("no node to run on: %s" % printable(" ".join(patterns)))
    if len(nodes) > limit:
        raise UsageError("%d nodes is more than %d (see --max-nodes)"
                         % (len(nodes), limit))
    for node in nodes:
        check_node(node)
    return nodes


_HUGE_NUMBER_RE = Regex(r"[0-9]{101}")     # ClusterShell refuses indexes over 1e100


def nodeset_of(pattern: str, resolver, last: Optional[Callable[[str], NodeSet]]) -> NodeSet:
    """A checked pattern's NodeSet; with `@last:OUTCOME` operands, its
    operators applied left to right as ClusterShell applies them, each
    `@last` operand the NodeSet `last` gives."""
    if last is None or not any(_LAST_RE.fullmatch(operand)
                               for _, operand in operands(pattern)):
        return NodeSet(pattern, resolver=resolver)
    nodes = NodeSet(resolver=resolver)
    for operator, operand in operands(pattern):
        named = _LAST_RE.fullmatch(operand)
        other = last(named.group(1)) if named else NodeSet(operand, resolver=resolver)
        {",": nodes.update, "!": nodes.difference_update, "&": nodes.intersection_update,
         "^": nodes.symmetric_difference_update}[operator](other)
    return nodes


def operands(pattern: str) -> Iterable[Tuple[str, str]]:
    """(operator, operand) of a checked pattern, the first operator `,`."""
    operator, start = ",", 0
    for match in _PIECE_RE.finditer(pattern + ","):
        if not match.group().startswith("["):
            yield operator, pattern[start:match.start()]
            operator, start = match.group(), match.end()


def check_node(node: str) -> str:
    # A node name becomes an ssh argument: one starting with '-' would be read
    # as an option (-oProxyCommand=...).
    if len(node) > NODE_NAME_MAX or not _NODE_RE.fullmatch(node) or \
            _HUGE_NUMBER_RE.search(node):
        raise UsageError("invalid node name: %s" % printable(node))
    return node


def check_user(user: Optional[str]) -> Optional[str]:
    if user is not None and not _USER_RE.fullmatch(user):
        raise UsageError("invalid user name: %s" % printable(user))
    return user


def check_ssh_options(options: Optional[str]) -> Optional[str]:
    """ssh options are passed to ssh as they are (a site may need
    ProxyCommand): they must parse, and start with an option, so that a word
    meant for something else (systemctl's `-o json`) is not read as a host."""
    if options is None:
        return None
    try:
        words = shlex.split(options)
    except ValueError as exc:
        raise UsageError("invalid ssh options %s: %s" % (printable(options), exc))
    if "\x00" in options or "\n" in options or (words and not words[0].startswith("-")):
        raise UsageError("invalid ssh options %s: they start with an ssh flag such "
                         "as -F FILE or -oKey=Value" % printable(options))
    return options


def check_ssh_path(path: Optional[str]) -> Optional[str]:
    """One program path: ClusterShell splits it into words and runs them."""
    if path is not None and not _PATH_RE.fullmatch(path):
        raise UsageError("invalid ssh_path %s: one program path, no arguments "
                         "(put options in ssh_options)" % printable(path))
    return path


def check_fanout(value: int) -> int:
    if not 1 <= value <= 100000:
        raise UsageError("fanout must be from 1 to 100000, not %d" % value)
    return value


def check_seconds(value: float, what: str = "a timeout") -> float:
    if not 0 <= value <= TIME_MAX:      # NaN fails too
        raise UsageError("%s must be a number of seconds from 0 to %d"
                         % (what, TIME_MAX))
    return value


# Made printable: C0 and C1 controls, DEL, line and paragraph separators, and
# the invisible format characters that reorder or hide text (bidirectional
# overrides and isolates, zero-width characters, BOM, tags).
_INVISIBLE = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
              "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
              "\ud800-\udfff\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
              "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
              "\U000e0001\U000e0020-\U000e007f")
_CONTROL_RE = Regex("[\x00-\x1f\x7f-\x9f%s]" % _INVISIBLE)
_CONTROL_BUT_TAB_RE = Regex("[\x00-\x08\x0a-\x1f\x7f-\x9f%s]" % _INVISIBLE)


def _escape(match) -> str:
    code = ord(match.group())
    return "\\x%02x" % code if code < 256 else "\\u%04x" % code if code < 0x10000 \
        else "\\U%08x" % code


def printable(text: str, keep_tabs: bool = False) -> str:
    """Neutralise control and invisible characters (escape sequences, NUL,
    newlines, bidi overrides...), so that what a user typed, a node printed
    or a log holds stays on its one line and reads as it is."""
    pattern = _CONTROL_BUT_TAB_RE if keep_tabs else _CONTROL_RE
    return pattern.sub(_escape, text)


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
            settings.connect_timeout = check_seconds(main.getfloat("connect_timeout"))
        if "command_timeout" in main:
            value = check_seconds(main.getfloat("command_timeout"))
            settings.command_timeout = value or settings.command_timeout
        settings.ssh_user = check_user(main.get("ssh_user") or None)
        settings.ssh_path = check_ssh_path(main.get("ssh_path") or None)
        settings.ssh_options = check_ssh_options(main.get("ssh_options") or None)
        return settings
    except (configparser.Error, ValueError, UsageError) as exc:
        raise UsageError("clush.conf: %s" % printable(str(exc)))


def current_user() -> str:
    """Who runs svcctl, for the log: the real user's name, whatever the
    environment says; a UID with no passwd entry is `uid N`."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "uid %d" % os.getuid()


# A file svcctl reads (a cluster file, a hostfile, svcctl.conf, a log): bounded,
# never a FIFO it would block on, never a device.
FILE_MAX_BYTES = 1 << 20


def open_to_read(path: str, pipes: bool = False):
    """A file to read, never blocking on a FIFO nor reading a device; pipes
    only where asked (a hostfile may be `<(squeue ...)`)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not (stat.S_ISREG(info.st_mode) or (pipes and stat.S_ISFIFO(info.st_mode))):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return os.fdopen(fd, "rb")


def read_text_file(path: str, limit: int = FILE_MAX_BYTES, pipes: bool = False) -> str:
    try:
        with open_to_read(path, pipes) as handle:
            return read_text(handle, path, limit)
    except OSError as exc:
        raise UsageError("%s: cannot read: %s" % (printable(path), exc.strerror or exc))


def read_text(handle, name: str, limit: int = FILE_MAX_BYTES) -> str:
    """At most `limit` bytes of UTF-8 from a binary handle (a file, stdin):
    more, or bytes that are not UTF-8, is one line naming where."""
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise UsageError("%s: larger than %d bytes" % (printable(name), limit))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError("%s: cannot read: %s" % (printable(name), exc))


# =============================================================================
# Remote command: one line of POSIX sh per node
# =============================================================================

@dataclass(frozen=True)
class Protocol:
    """How one run talks to its nodes: the script it sends (this section) and
    how a reply is read back (Results). The marker carries a random per-run
    nonce, so that nothing a unit prints can be mistaken for the framing."""
    action: Action
    marker: str = "@@svcctl-DRYRUN"
    sudo: bool = False
    now: bool = False
    verbose: bool = False
    settle: float = 0.0             # seconds to watch started units
    timeout: float = 300.0          # the node's bound, named when it is hit
    extra: Tuple[str, ...] = ()     # checked systemctl options: -p PROP, --state=X
    pattern: str = ""               # list-units: a checked unit pattern
    listed_is_no: bool = False      # list-units --failed: anything listed is "no"
    diff: bool = False              # cat --diff: against the most common version
    journal: int = 5                # journal lines of each failed unit's run
    raw: bool = False               # journal --raw: lines as journalctl prints them
    mask: bool = False              # journal --mask: numbers, addresses, ids masked
    properties: Tuple[str, ...] = ()    # show -p: shown in the order asked


def new_marker() -> str:
    """A per-run random marker (os.urandom, as the secrets module does)."""
    return "@@svcctl-" + os.urandom(6).hex()


# Every line svcctl itself prints starts with the marker, on a line of its own
# (a newline first, in case the output before it did not end one); the states
# are read in one `systemctl show` and folded onto a marker line (unquoted
# $(...) splits the Key=Value lines into words; none holds a space; `set -f`
# stops globbing; printf, never echo, prints what came from outside):
#   MARK state before LoadState=loaded ActiveState=inactive ... LoadState=...
#   MARK unit demo.service
#   ...the action's own output, stdout and stderr...
#   MARK rc 0
#   MARK state after LoadState=loaded ActiveState=active ...
#   MARK end
# A query runs no action: its answer is read from the state after.
_PRELUDE = (
    "set -f; z=; LC_ALL=C; SYSTEMD_PAGER=cat; SYSTEMD_COLORS=0; "
    "export LC_ALL SYSTEMD_PAGER SYSTEMD_COLORS; m=%(marker)s; "
    "k() { printf '\\n%%s' \"$m\"; for w; do printf ' %%s' \"$w\"; done; echo; }; "
    "s() { systemctl show -p %(keys)s -- \"$@\" 2>&1; }; "
    "l() { printf ' %%s' $(s \"$@\"); }; "
    "a() { u=$1; shift; k unit \"$u\"; \"$@\" </dev/null 2>&1; r=$?; k rc $r; }; "
)
# A Type=simple unit is "started" once forked (exec: once executed; idle: like
# simple): under load, a unit that dies at once may not have died yet when
# systemctl returns. Its state is read a moment later (one `sleep`) and sees
# it dead; --settle watches longer. notify, forking, oneshot and dbus units
# have said they are up (or failed) when start returns: no wait. `g STATES KEY`
# waits if the states (` Key=Value` words from `l`, a unit's block ending
# with KEY, the key systemctl prints last, as in state_blocks) hold such a
# unit that `n` says the action gave a new process, else returns 1. Given
# the states before, a start of a running unit starts nothing (cron's
# `svcctl start` of units that are up pays no wait), a try-restart only
# restarts a running one; given the runs before ($v, see _RUNS), a unit still
# in the same run started nothing.
# (Not "only if its process started less than the grace ago": sh has no
# CLOCK_MONOTONIC to compare systemd's *TimestampMonotonic with, and
# /proc/uptime is CLOCK_BOOTTIME, which parts from it after a suspend.)
START_GRACE = 0.25
GRACE_TYPES = ("simple", "exec", "idle")
_GRACE = (
    "g() { gb=; for gw in $1; do gb=\"$gb $gw\"; case $gw in \"$2\"=*) case \"$gb \" in "
    "%(types)s) n && { sleep %(grace)g; return 0; };; esac; gb=;; esac; done; return 1; }; ")
_NEW = "n() { %s; }; "
_NEW_ALWAYS = ":"       # the states after: any unit may be new
_NEW_IF_STOPPED = "case \"$gb \" in %(running)s) return 1;; esac"     # start
_NEW_IF_RUNNING = "case \"$gb \" in %(running)s) return 0;; esac; return 1"   # try-restart
_NEW_RUN = (            # given the runs before ($v): a run not among them
    "if [ -n \"$v\" ]; then case \"$gb\" in *\" InvocationID=\"*) "
    "gi=${gb##*\" InvocationID=\"}; case \" $v \" in *\" ${gi%%%% *} \"*) return 1;; esac;; "
    "esac; return 0; fi; ")
# start: a unit's run, not its state, read first. systemd gives each run of a
# unit a new InvocationID and exports the current one, for journald, as the
# link /run/systemd/units/invocation:UNIT. `i LINK...` reads them in one
# readlink (a few ms; a systemctl show asks PID 1 for every property) into $v,
# if each is an InvocationID (32 hex digits, as read_runs believes them).
# Those links are no API, so only "the same run after" is believed (then the
# start started nothing: ok), any other id is a new run (changed). Where a
# link is missing (a stopped unit is usually unloaded, an alias has none, a
# unit that runs no process neither) the states are read as before.
_RUNS = (
    "i() { v=$(cd /run/systemd/units 2>/dev/null && readlink -- \"$@\" 2>/dev/null) "
    "|| return 1; c=$#; set -- $v; v=\"$*\"; [ $# = \"$c\" ] || return 1; for iw; do "
    "case $iw in *[!0-9a-f]*) return 1;; esac; [ ${#iw} = 32 ] || return 1; done; }; ")

# --settle: watch the units for a while; stop early once one has died (failed,
# waiting to restart, or restarted by systemd since the watch began). The
# restart counts at the watch's start are sent back (MARK state watch N N...):
# a unit restarted by systemd during the watch failed, whatever the action
# found, even if it reads active again when its state is read after; z=1 then
# tells `j` to bring the journal of that run.
_SETTLE = (
    "v() { q=$1; shift; systemctl show -p \"$q\" --value -- \"$@\" 2>/dev/null; }; "
    "w() { n=$(v NRestarts \"$@\"); k state watch $n; i=0; z=1; "
    "while [ $i -lt %(polls)d ]; do sleep 0.5; "
    "[ \"$(v NRestarts \"$@\")\" = \"$n\" ] || return; for t in $(v ActiveState,SubState "
    "\"$@\"); do case $t in failed|auto-restart) return;; esac; done; i=$((i+1)); "
    "done; z=; }; "
)
# apply (cluster file): act on each unit only where its state differs from
# the declared one (p INDEX UNIT running|stopped|- yes|no|-). The units'
# states are read once before (`B` splits them into b0, b1...: a unit's block
# ends with its last key, UnitFileState, as in state_blocks: not where a key
# comes again, since a socket has no Type and would take the next unit's; a
# unit without one reads its own) and once after, for all: 2
# systemctl processes around the actions, not 2 per unit; the grace and
# --settle's watch are paid once, for the units started (S, their states G):
#   MARK unit UNIT before K=V... ...output... MARK rc N did start,enable,
#   ... MARK state after K=V... (all units)
_APPLY = (
    "x=%(sudo)s; S=; G=; "
    "B() { i=0; for t; do eval \"b$i=\"; i=$((i+1)); done; i=0; h=; for t in $(s \"$@\"); "
    "do h=\"$h $t\"; case $t in %(last)s=*) eval \"b$i=\\$h\"; i=$((i+1)); h=;; esac; "
    "done; }; "
    "p() { eval \"b=\\${b$1}\"; u=$2; [ -n \"$b\" ] || b=$(l \"$u\"); "
    "k unit \"$u\" before $b; r=0; d=; "
    "case \"$b \" in %(running)s) on=1;; *) on=0;; esac; "
    "case \"$b \" in %(stopped)s) off=1;; *) off=0;; esac; "
    "case \"$b \" in %(enabled)s) en=1;; *) en=0;; esac; "
    "case \"$b \" in %(lasting)s) el=1;; *) el=0;; esac; "
    "c() { d=$d$1,; $x systemctl \"$@\" -- \"$u\" </dev/null 2>&1 || r=$?; }; "
    "if [ \"$3$on\" = running0 ]; then c start; S=\"$S $u\"; G=\"$G $b\"; fi; "
    "if [ \"$3$off\" = stopped0 ]; then c stop; fi; "
    "if [ \"$4$el\" = yes0 ]; then c enable; fi; "
    "if [ \"$4$en\" = no1 ]; then c disable; fi; "
    "k rc $r did ${d:--}; }; "
)


# Why it failed, in the same round trip: `j RCS STATES` is true when a step's
# exit code is not 0 or a unit is failed (or waiting to restart); then
# `J UNIT RC ...` prints, for each such unit, the last lines of that run of it
# (its InvocationID, sent on the frame), as JSON lines (see journal_text):
#   MARK journal UNIT INVOCATION / lines
# The unit's own lines are read by _SYSTEMD_UNIT, not _SYSTEMD_INVOCATION_ID:
# journald reads the latter from the unit's cgroup, gone when a daemon dies at
# once, so the very line that says why lacks it (seen on 3 nodes of 8); svcctl
# keeps the lines of that invocation or of none after PID 1's lines about an
# earlier run. PID 1's lines about the unit are its UNIT= lines with _PID=1
# (anyone can forge the fields; not _PID), those of that run its INVOCATION_ID.
# All of the unit's lines where a systemd older than 232 has no InvocationID.
# The newest bytes are kept (tail): the first line may then be the end of
# one, anyone's text, so a `.` comes before it, and it never starts with the
# marker. A node where nothing failed runs nothing.
_JOURNAL = (
    "x=%(sudo)s; j() { case \"$1\" in *[!0]*) return 0;; esac; case \"$2 \" in %(failed)s) "
    "return 0;; esac; return 1; }; "
    "J() { while [ $# -gt 1 ]; do u=$1; f=$2; shift 2; i=; for t in $(systemctl show "
    "-p InvocationID,ActiveState,SubState -- \"$u\" 2>/dev/null); do case $t in "
    "InvocationID=?*) i=${t#*=};; ActiveState=failed|SubState=auto-restart) f=1;; esac; "
    "done; [ \"$f\" = 0 ] && continue; k journal \"$u\" \"$i\"; printf .; "
    "o=\"-o json --output-fields=MESSAGE,_PID,_SYSTEMD_INVOCATION_ID,INVOCATION_ID -n "
    "%(entries)d --no-pager\"; if [ -n \"$i\" ]; then $x journalctl $o "
    "\"_SYSTEMD_UNIT=$u\" + \"UNIT=$u\" _PID=1; else $x journalctl $o -u \"$u\"; "
    "fi 2>&1 | tail -c %(bytes)d; done; }; "
)
JOURNAL_BYTES = 1024        # per journal entry read for a failed unit
JOURNAL_MAX = 100           # --journal N: at most this many lines
# svcctl journal: `a` with journalctl's output bounded too, its first bytes
# kept (it reads newest first, -r), and its exit code kept: POSIX sh has no
# pipefail, so it comes back on fd 3, captured, while head writes to fd 4, the
# script's output.
_READ = (
    "y() { u=$1; shift; k unit \"$u\"; { r=$( { { \"$@\" </dev/null 2>&1; "
    "echo $? >&3; } | head -c %(bytes)d >&4; } 3>&1); } 4>&1; k rc $r; }; "
)
JOURNAL_READ_BYTES = 1 << 19    # per node, shared by its units: half its output
# cap (OUTPUT_CAP), so that a login banner or sudo's warnings never make the
# reply too large, and so few lines (even --raw's, 40 bytes at least) that
# they stay within its cap in lines


def journal_read_bytes(units: int) -> int:
    """svcctl journal: the bytes of each unit's journal a node sends."""
    return JOURNAL_READ_BYTES // max(units, 1)


def journal_entries(lines: int) -> int:
    """Entries read for a failed unit's N lines: its own N, PID 1's N about
    the run, and a few of an earlier run that journalctl returns among them."""
    return 2 * lines + 8


def _case_pattern(key: str, values: Sequence[str]) -> str:
    """A `case` pattern matching ` Key=Value ` for any of the values."""
    return "|".join('*" %s=%s "*' % (key, value) for value in values)


def remote_command(protocol: Protocol, steps: Sequence[Step]) -> str:
    """The exact command line sent to a node. The node user's login shell
    (bash, zsh, dash...) only runs `exec /bin/sh -c '...'`: the script itself
    always runs in POSIX sh."""
    return "exec /bin/sh -c " + shlex.quote(remote_script(protocol, steps))


def remote_script(protocol: Protocol, steps: Sequence[Step]) -> str:
    """The POSIX sh script: step i leaves its exit code in $sI; a step whose
    requirements did not all succeed on this node is not run, and says so."""
    action = protocol.action
    steps = node_steps(action, steps)
    # start: the states read after carry the units' runs (a run tells)
    runs_tell = action.runs_tell
    keys = STATE_KEYS + (INVOCATION_KEY,) * runs_tell
    script = _PRELUDE % {"marker": protocol.marker, "keys": ",".join(keys)}
    polls = int(-(-protocol.settle // 0.5))
    starts = action.starts_units(protocol.now)
    settles = polls > 0 and starts
    if settles:
        script += _SETTLE % {"polls": polls}
    grace = starts and not settles and action.kind != "node"
    # the types are known from before (apply's: of the units it started)
    before_known = action.kind == "apply" or action.reads_state_before(protocol.now)
    if grace:
        # try-restart gives a new process to what it restarts (RESTARTABLE_STATES),
        # start to what is not running
        restarts = action.must_run == "if it ran"
        new = _NEW_ALWAYS if not before_known else \
            _NEW_IF_RUNNING if restarts else _NEW_IF_STOPPED
        new = _NEW % ((_NEW_RUN if runs_tell else "") + new)
        script += _GRACE % {"types": _case_pattern("Type", GRACE_TYPES),
                            "grace": START_GRACE} \
            + new % {"running": _case_pattern(
                "ActiveState", RESTARTABLE_STATES if restarts else RUNNING_STATES)}
    if runs_tell:
        script += _RUNS
    why = protocol.journal > 0 and action.tells_why()
    if why:
        script += _JOURNAL % {
            "failed": "|".join((_case_pattern("ActiveState", ("failed",)),
                                _case_pattern("SubState", ("auto-restart",)))),
            "entries": journal_entries(protocol.journal),
            "bytes": JOURNAL_BYTES * journal_entries(protocol.journal),
            "sudo": "'sudo -n'" if protocol.sudo else "''"}
    if action.reads_journal:
        script += _READ % {"bytes": journal_read_bytes(len(steps))}
    if action.kind == "node":
        pattern = " -- " + shlex.quote(protocol.pattern) if protocol.pattern else ""
        return script + "a %s %s%s; k end" % (steps[0].unit, " ".join(_argv(protocol)),
                                             pattern)
    units = " ".join(shlex.quote(step.unit) for step in steps)
    if action.kind == "apply":
        script += _APPLY % {
            "sudo": "'sudo -n'" if protocol.sudo else "''", "last": LAST_STATE_KEY,
            "running": _case_pattern("ActiveState", RUNNING_STATES),
            "stopped": _case_pattern("ActiveState", STOPPED_STATES),
            "enabled": _case_pattern("UnitFileState", ENABLED_STATES),
            "lasting": _case_pattern("UnitFileState", LASTING_ENABLED_STATES)}
        script += "B %s; " % units
    elif runs_tell:
        script += "if i %s; then k state runs $v; else v=; b=$(l %s); k state before $b; " \
                  "fi; " % (" ".join(shlex.quote("invocation:" + step.unit) for step in steps),
                            units)
    elif action.reads_state_before(protocol.now):
        script += "b=$(l %s); k state before $b; " % units
    if action.runs_per_unit(protocol.verbose):
        script += "".join(_step_command(protocol, index, step) + "; "
                          for index, step in enumerate(steps))
    if settles and action.kind == "change":
        script += "w %s; " % units
    elif settles:                       # apply: the units it started
        script += "[ -z \"$S\" ] || w $S; "
    if grace and before_known:
        script += "%sg \"$%s \" %s; " % ("[ -n \"$v\" ] || " * runs_tell,
                                        "G" if action.kind == "apply" else "b", LAST_STATE_KEY)
    script += "t=$(l %s); " % units
    if grace and (runs_tell or not before_known):
        # read once; again after the grace only if a unit's type needs it. A
        # run read first (systemd 232 or later) comes back as the last key; a
        # systemd without runs reads the states first (above)
        script += "%sg \"$t \" %s && t=$(l %s); " % (
            "[ -n \"$v\" ] && " * runs_tell, INVOCATION_KEY if runs_tell else LAST_STATE_KEY,
            units)
    script += "k state after $t; "
    if why:
        # a query's exit code says its answer, not a failure: its state does
        codes = ["${s%d:-0}$z" % index if action.kind in ("change", "apply") else "0"
                 for index in range(len(steps))]
        script += 'j "%s" "$t" && J %s; ' % ("".join(codes), " ".join(
            "%s %s" % (shlex.quote(step.unit), code) for step, code in zip(steps, codes)))
    return script + "k end"


def _argv(protocol: Protocol) -> List[str]:
    action = protocol.action
    root = action.privileged or action.reads_as_root
    argv = (["sudo", "-n"] if protocol.sudo and root else []) \
        + [action.program] + list(action.systemctl) + [shlex.quote(word)
                                                       for word in protocol.extra]
    return argv + (["--now"] if protocol.now and action.takes_now else [])


def _step_command(protocol: Protocol, index: int, step: Step) -> str:
    unit = shlex.quote(step.unit)
    if protocol.action.kind == "apply":
        declared = step.declared or Declared("")
        command = "p %d %s %s %s" % (index, unit, declared.state, {
            True: "yes", False: "no", None: "-"}[declared.enabled])
    else:
        command = "%s %s %s %s %s" % ("y" if protocol.action.reads_journal else "a", unit,
                                      " ".join(_argv(protocol)), protocol.action.unit_flag,
                                      unit)
    command += "; s%d=$r" % index
    if not step.requires:
        return command
    needed = "".join("$s%d" % i for i in step.requires)
    return "if [ \"%s\" = %s ]; then %s; else k unit %s skipped; s%d=1; fi" % (
        needed, "0" * len(step.requires), command, unit, index)


# =============================================================================
# Execution: the only code that talks to the ClusterShell Task
# =============================================================================

OUTPUT_CAP = 1 << 20        # bytes of the units' own output, per node
LINE_CAP = 20000            # lines of it: ClusterShell spends ~14 us a line
FRAMING_BASE = 1 << 16      # bytes of svcctl's own framing lines, per node
FRAMING_PER_UNIT = 4096     # and per unit (its states, folded onto them)


def reply_cap(steps: Sequence[Step]) -> Tuple[int, int]:
    """The most a node's whole reply may hold, in bytes and lines: the
    output cap, plus the framing svcctl's script prints for these steps. A
    node that sends more is cut off: `error: reply too large`."""
    return (OUTPUT_CAP + FRAMING_BASE + FRAMING_PER_UNIT * len(steps),
            LINE_CAP + 4 * len(steps) + 8)


@dataclass
class RawResult:
    """What came back from one node: output lines, ssh's stderr, exit code."""
    stdout: List[bytes] = field(default_factory=list)
    stderr: List[bytes] = field(default_factory=list)
    rc: Optional[int] = None        # None: timed out, interrupted or not run
    timed_out: bool = False
    error: str = ""                 # why it could not be reached (routing)
    received: int = 0               # bytes so far, stdout and stderr
    lines: int = 0                  # lines so far
    too_large: str = ""             # the cap it exceeded, when cut off
    started: Optional[float] = None
    ended: Optional[float] = None


class Interrupted(BaseException):
    """A signal arrived while the run could be interrupted (a BaseException:
    no `except Exception` on the way, such as a node's guard, may swallow it)."""

    def __init__(self, signame: str):
        super().__init__(signame)
        self.signame = signame


class Signals:
    """SIGINT, SIGTERM and SIGHUP for a whole run. The first one is recorded
    wherever it lands, and interrupts only what is safe to interrupt (the
    ClusterShell task and the pauses between batches), so that what already
    ran is always read, reported and logged."""

    CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.caught = ""
        self.raising = False
        self.previous: Dict[int, object] = {}

    def __enter__(self) -> "Signals":
        try:
            for signum in self.CAUGHT:
                self.previous[signum] = signal.signal(signum, self._handle)
        except ValueError:          # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        self.caught = self.caught or signal.Signals(signum).name
        if self.raising:
            self.raising = False
            raise Interrupted(self.caught)

    def stop(self, signame: str = "SIGINT") -> None:
        """Stop the run as Ctrl-C does (or as `signame` does: the console
        stopped by SIGTERM), from any thread (the console's Stop button):
        recorded here, acted on by the run's own thread within 0.25 s (the
        task's timer, the pause's loop)."""
        self.caught = self.caught or signame

    def pause(self, seconds: float, observer: "Observer") -> None:
        """Sleep between batches; a signal ends the pause."""
        end = time.monotonic() + seconds
        try:
            while not self.caught and time.monotonic() < end:
                observer.waiting(end - time.monotonic())
                self.raising = True
                time.sleep(min(0.25, max(0.0, end - time.monotonic())))
                self.raising = False
        except Interrupted:
            pass
        finally:
            self.raising = False


class _Collector(EventHandler):
    """Keeps each node's output (bounded) and exit code as they arrive, and
    hands every finished node to `node_done` at once. Events for keys it did
    not ask for (a gateway's own, in tree mode) are ignored."""

    def __init__(self, raw: Dict[str, RawResult], caps: Dict[str, Tuple[int, int]],
                 node_done: Callable[[str, RawResult], None], signals: "Signals",
                 observer: "Observer"):
        super().__init__()
        self.raw = raw
        self.caps = caps
        self.node_done = node_done
        self.signals = signals
        self.observer = observer
        self.workers: List = []

    def ev_pickup(self, worker, node):
        result = self.raw.get(node)
        if result is not None:
            result.started = time.monotonic()

    def ev_read(self, worker, node, sname, msg):
        result = self.raw.get(node)
        if result is None or result.too_large:
            return
        msg = bytes(msg)
        result.received += len(msg) + 1
        result.lines += 1
        max_bytes, max_lines = self.caps[node]
        if result.received > max_bytes or result.lines > max_lines:
            self.cut_off(node, result, "more than %d bytes or %d lines"
                         % (max_bytes, max_lines))
        elif sname == worker.SNAME_STDERR:
            if len(result.stderr) < 20:
                result.stderr.append(msg[:4096])
        else:
            result.stdout.append(msg)

    def cut_off(self, node: str, result: RawResult, why: str) -> None:
        """Stop reading a node that sends too much: kill its ssh (in tree
        mode a node behind a gateway cannot be stopped alone: its data is
        dropped here instead)."""
        result.too_large = why
        result.stdout = result.stdout[:100]
        for client in self.clients():
            if client.key == node:
                client.abort()

    def clients(self) -> List:
        """The running ssh clients (direct mode; ClusterShell's engine API)."""
        return [client for worker in self.workers
                for client in getattr(worker, "_engine_clients", list)()
                if getattr(client, "registered", False) and hasattr(client, "key")]

    def ev_hup(self, worker, node, rc):
        result = self.raw.get(node)
        if result is None or result.rc is not None:
            return
        result.rc = rc
        result.ended = time.monotonic()
        if not result.too_large:
            self.node_done(node, result)

    def ev_close(self, worker, timedout):
        if timedout:
            for node in worker.iter_keys_timeout():
                if node in self.raw:
                    self.raw[node].timed_out = True

    def ev_timer(self, timer):
        # A line without end stays whole in ClusterShell's read buffer (and
        # is copied on every read), beyond ev_read's reach: look at it here.
        for client in self.clients():
            result = self.raw.get(client.key)
            if result is None or result.too_large:
                continue
            pending = sum(len(getattr(stream, "rbuf", b"") or b"")
                          for stream in client.streams.values() if stream.readable())
            if result.received + pending > self.caps[client.key][0]:
                self.cut_off(client.key, result, "a line of more than %d bytes"
                             % self.caps[client.key][0])
        if self.signals.caught and self.signals.raising:    # stop() from a thread
            self.signals.raising = False
            raise Interrupted(self.signals.caught)
        self.observer.tick()


FD_WANTED = 8192     # like clush's fd_max: each running ssh holds ~3 fds


def raise_fd_limit() -> None:
    """A fanout above the soft open-file limit would fail: raise it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_WANTED if hard == resource.RLIM_INFINITY else min(FD_WANTED, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# ClusterShell imports modules on first use (task.shell() its worker's): two
# runs' threads doing it at once (the console) can meet a half-made module
# ("partially initialized module 'ClusterShell.Worker.Ssh'"): one at a time.
_FIRST_IMPORTS = threading.Lock()


def execute(jobs: Sequence[Tuple[str, NodeSet]], settings: Settings,
            signals: Signals, node_done: Callable[[str, RawResult], None],
            caps: Sequence[Tuple[int, int]], observer: "Observer"
            ) -> Tuple[Dict[str, RawResult], str]:
    """Run each (command, nodes) job at once through ClusterShell; return the
    raw results of every node (unfinished ones included) and the signal that
    interrupted the run, if any."""
    # imported here, not at the top: --help, --dry-run, report and the
    # cluster file's checks start faster without them
    with _FIRST_IMPORTS:
        from ClusterShell.Propagation import RouteResolvingError
        from ClusterShell.Task import TimeoutError as TaskTimeoutError
        from ClusterShell.Topology import TopologyError
    raw = {node: RawResult() for _, nodes in jobs for node in nodes}
    if signals.caught:
        return raw, signals.caught
    cap_of = {node: cap for (_, nodes), cap in zip(jobs, caps) for node in nodes}
    with _FIRST_IMPORTS:
        task = prepared_task(settings)
    collector = _Collector(raw, cap_of, node_done, signals, observer)
    interrupted, unreached = "", ""
    try:
        with _FIRST_IMPORTS:
            for command, nodes in jobs:
                # a NodeSet, not its text: the names are not parsed (resolved) again
                collector.workers.append(task.shell(
                    command, nodes=nodes, handler=collector, stderr=True,
                    timeout=settings.command_timeout or None))
        task.timer(0.2, collector, interval=0.2, autoclose=True)
        signals.raising = True
        task.run(timeout=run_bound(settings))
    except Interrupted as exc:
        interrupted = exc.signame
    except RouteResolvingError as exc:
        # tree mode: a gateway failed and no other route is left
        unreached = "no route (gateway unreachable?): %s" % printable(str(exc))
    except TopologyError as exc:
        if not any(result.started for result in raw.values()):
            # a topology.conf that cannot route: a configuration error
            raise UsageError("topology: %s" % printable(str(exc)))
        unreached = "gateway error: %s" % printable(str(exc))
    except TaskTimeoutError:
        # a backstop for a gateway that hangs: shell()'s timeout does not
        # reach the nodes behind it
        for result in raw.values():
            result.timed_out = result.timed_out or result.rc is None
    finally:
        signals.raising = False
        if interrupted or unreached or not task_done(raw):
            task.abort(kill=True)   # kills the ssh processes still running
    for result in raw.values():
        if unreached and result.rc is None and not result.timed_out:
            result.error = unreached
    return raw, interrupted or signals.caught


def prepared_task(settings: Settings):
    """ClusterShell's task, set up for this run's ssh settings."""
    from ClusterShell.Task import task_self
    raise_fd_limit()
    task = task_self()
    for key in ("fanout", "ssh_user", "ssh_path", "ssh_options"):
        task.set_info(key, getattr(settings, key))
    # ssh takes whole seconds: 0.5 would become 0, which means no timeout.
    task.set_info("connect_timeout", math.ceil(settings.connect_timeout))
    # svcctl keeps its own bounded buffers: no second copy in MsgTrees.
    task.set_default("stdout_msgtree", False)
    task.set_default("stderr_msgtree", False)
    return task


def run_bound(settings: Settings) -> Optional[float]:
    """How long a whole wave may take: the command timeout, plus time to
    connect through gateways; None when the command timeout is lifted."""
    if not settings.command_timeout:
        return None
    return settings.command_timeout + 2 * settings.connect_timeout + 30


def task_done(raw: Dict[str, RawResult]) -> bool:
    return all(result.rc is not None or result.timed_out or result.too_large
               for result in raw.values())


# =============================================================================
# Results: read each node's reply and decide every unit's outcome, once
# =============================================================================
# Where outcomes are decided, each the one place for its kind:
#   judge_unit          a unit whose reply came back (read -> act -> read)
#   _cut_short          a judged unit on a node that did not finish
#   _missing_reason     a unit with no result: timeout, unreachable, error...
#   judge_skipped       a unit not run (max-fail, a requirement failed, a
#                       signal first): the plans and account() call it
#   judge_against_majority  cat --diff: drift, against the other nodes

_DENIED_RE = Regex(r"Access denied|Interactive authentication required|"
                        r"Permission denied|^sudo: (a password is required|a terminal is "
                        r"required)|is not in the sudoers|is not allowed to execute", re.M)
CUT_SHORT = "cut short"


class ReplyError(Exception):
    """A node's reply that is not svcctl's framing: that node is an error."""


def decode(line: bytes) -> str:
    """Bytes from a node -> safe text: invalid UTF-8 replaced, controls escaped."""
    return printable(line.decode("utf-8", "replace"), keep_tabs=True)


@dataclass
class Framed:
    """A node's output, split along svcctl's markers."""
    sections: Dict[str, dict]       # unit -> its tokens before (apply), output, rc
    states: Dict[bytes, List[bytes]]    # b"before"/b"after": tokens of all units
    complete: bool = False
    journals: Dict[str, List[bytes]] = field(default_factory=dict)  # failed units
    invocations: Dict[str, str] = field(default_factory=dict)    # their runs' ids


def parse_output(lines: Iterable[bytes], marker: str) -> Framed:
    """Split a node's framed output; anything before the first marker (a login
    banner) and anything not framed by this run's marker is output. A line
    that carries the marker but does not parse makes the reply unreadable."""
    prefix = marker.encode() + b" "
    framed = Framed({}, {})
    current: Optional[dict] = None
    for line in lines:
        if not line.startswith(prefix):
            if current is not None and "rc" not in current:
                current["output"].append(line)
            continue
        if current is not None and current["output"][-1:] == [b""]:
            current["output"].pop()     # the newline printed before the marker
        words = line[len(prefix):].rstrip(b"\r\n").split(b" ")
        if words[0] == b"unit" and len(words) > 1:
            current = {"before": words[3:] if words[2:3] == [b"before"] else None,
                       "output": []}
            if words[2:] == [b"skipped"]:
                current.update(rc=None, skipped=True)
            framed.sections[_ascii(words[1])] = current
        elif words[0] == b"rc" and current is not None and len(words) > 1:
            current["rc"] = exit_status(words[1])
            if words[2:3] == [b"did"] and len(words) > 3:     # apply: what it ran
                current["did"] = words[3] != b"-"
        elif words[0] == b"state" and len(words) > 1:
            framed.states[words[1]] = words[2:]
        elif words[0] == b"journal" and len(words) == 3:
            current = {"output": framed.journals.setdefault(_ascii(words[1]), [])}
            framed.invocations[_ascii(words[1])] = _ascii(words[2])
        elif words == [b"end"]:
            framed.complete = True
        else:
            raise ReplyError("unexpected framing line %s" % decode(line[:60]))
    return framed


def _ascii(word: bytes) -> str:
    try:
        return word.decode("ascii")
    except UnicodeDecodeError:
        raise ReplyError("a unit name that is not ASCII")


def exit_status(word: bytes) -> int:
    if not (word.isdigit() and len(word) <= 3):
        raise ReplyError("exit code %s" % decode(word[:20]))
    return int(word)


def state_blocks(tokens: Optional[List[bytes]]) -> Tuple[List[Optional[UnitState]], str]:
    """`systemctl show` of several units, folded onto one line, back into one
    state per unit (a unit's block ends with its UnitFileState); and any text
    that is not Key=Value (systemctl's own error, e.g. no D-Bus)."""
    blocks: List[Dict[str, str]] = [{}]
    other: List[str] = []
    for token in decode(b" ".join(tokens)).split(" ") if tokens else ():
        key, sep, value = token.partition("=")
        if key == INVOCATION_KEY and sep:
            # systemctl prints it after UnitFileState, which closed the block
            blocks[-2 if len(blocks) > 1 and not blocks[-1] else -1][key] = value
            continue
        if not sep or key not in STATE_KEYS:
            other.append(token)
            continue
        if key in blocks[-1]:
            blocks.append({})
        blocks[-1][key] = value
        if key == LAST_STATE_KEY:
            blocks.append({})
    if not blocks[-1]:
        blocks.pop()
    return [UnitState.from_properties(b) for b in blocks], " ".join(filter(None, other))


def judge_unit(protocol: Protocol, step: Step, before: Optional[UnitState],
               after: Optional[UnitState], rc: Optional[int], message: str,
               problem: str = "", ran: bool = False,
               watched: Optional[str] = None, note: str = "",
               read: bool = True, run_before: str = "") -> UnitResult:
    """One unit's outcome, from its states around the action (read -> act ->
    read), the action's exit code and its output. `problem`: text where a
    state should have been (systemctl show failed), or CUT_SHORT; `ran`:
    apply ran a command on the unit; `watched`: its restart count when
    --settle began to watch it; journal: svcctl's `note` on what journalctl
    sent, and whether it `read` the journal at all; `run_before`: the unit's
    run, read first instead of its state (start, try-restart): it was up."""
    action = protocol.action
    if action.clean:
        message = action.clean(message)
    outcome, answer = "error", printable(message.split("\n", 1)[0])   # one line (tabs too)
    drift = step.declared is not None and after is not None and step.declared.drifted(after)
    new_run = _new_run(after, run_before) if run_before and after is not None else None
    if action.kind == "node" and action.lists and rc == 0:
        count = len(message.split("\n")) if message else 0
        answer = "%s unit%s" % (count or "no", "s" * (count != 1)) + (
            " failed" if protocol.listed_is_no else " listed")
        outcome = "negative" if count and protocol.listed_is_no else "ok"
    elif action.kind == "node":
        outcome = "ok" if rc == 0 else (
            "negative" if action.no_when_failed and answer in SYSTEM_STATES
            else _failure(None, None, message))
    elif after is None and problem == CUT_SHORT:
        outcome = _judge_cut_short(protocol, before or (RUNNING if run_before else None),
                                   rc, message)
    elif after is None or (before is None and new_run is None
                           and action.reads_state_before(protocol.now)):
        # systemctl show itself failed (no systemd, no D-Bus): say why.
        message = "\n".join(filter(None, [problem, message])) or "no state read"
    elif after.load == "not-found" and (before is None or before.load == "not-found"):
        outcome = "not-found"
    elif not read:
        # journalctl missing, or the journal unreadable: said for this node,
        # never a failure of the run
        outcome, answer = "negative", note
    elif action.kind == "query" and action.runs == "always" and rc and not (
            action.silent_rc and rc == 1 and not message):
        # show, cat: systemctl's text is the answer, its exit code says if
        # there is one ("Failed to get properties: ...")
        outcome = "denied" if _DENIED_RE.search(message) else "error"
    elif action.kind == "query":
        answer, yes = action.answer(after)
        answer = answer or note
        outcome = "ok" if yes else "negative"
        if step.declared and action.drift_outcome:
            outcome = "drift" if drift else "ok"
    elif rc != 0 and action.nothing_to_do and action.nothing_to_do.search(message) \
            and before is not None and action.goal(before) and action.goal(after):
        outcome = "ok"
    elif rc != 0:
        outcome = _failure(before, after, message)
    else:
        outcome, message = _judge_success(protocol, step, before, after, message, drift,
                                          ran, watched, new_run)
    return UnitResult(step.unit, outcome, before, after, rc, message, answer,
                      drift=drift, **service_tags(step))


def _judge_cut_short(protocol: Protocol, before: Optional[UnitState], rc: Optional[int],
                     message: str) -> str:
    """The node did not live to read the states after (it timed out later):
    judge from the state before (or RUNNING, where a run was read first) and
    the exit code."""
    if rc != 0:
        return _failure(before, None, message)
    goal = protocol.action.goal
    there = goal is not None and before is not None and goal(before)
    return "ok" if there else "changed"     # _cut_short says the rest


def _judge_success(protocol: Protocol, step: Step, before: Optional[UnitState],
                   after: UnitState, message: str, drift: bool, ran: bool,
                   watched: Optional[str] = None,
                   new_run: Optional[bool] = None) -> Tuple[str, str]:
    """systemctl said yes: changed or ok; but failed if the unit died once
    started, or is not where the action promised to leave it. The outcome
    and the message."""
    action = protocol.action
    if action.always_changes:
        changed = True
    elif new_run is not None:   # a run read first: the unit was up, so a new
        changed = new_run or not after.is_running   # run, or none, is a change
    elif before is None:        # no state read first: systemctl's output tells
        changed = ran or action.tells_change is None or \
            bool(action.tells_change.search(message))
    else:
        moved = (before.load, before.active, before.file) != \
                (after.load, after.active, after.file)
        # A start that succeeds on an inactive unit ran it, even a oneshot
        # that is inactive again by the time the state is read back.
        changed = moved or ran or bool(action.changes_from and action.changes_from(before))
    declared_run = action.kind == "apply" and step.declared is not None \
        and step.declared.state == "running"
    # Restarted by systemd: since the start (a start resets the count), or
    # while --settle watched it, whatever the action found.
    looped = (changed and after.restarted) or (
        watched is not None and after.restarts != watched)
    why = ""
    if (declared_run or action.expects_running(before, protocol.now,
                                                          new_run is not None)) and \
            (after.crashed or looped):
        why = "the unit failed once started: " + after.why()
        if looped and not after.restarted:
            why += ", restarted by systemd while --settle watched it"
    elif (action.ensures_goal and not action.goal(after)) or \
            (protocol.now and action.now_stops and not after.is_stopped):
        why = "systemctl said done, but the unit is %s" % after.describe()
    elif action.kind == "apply" and drift:
        why = "still not as declared (%s)" % step.declared.text()
    if why:
        return "failed", "\n".join(filter(None, [why, message]))
    return "changed" if changed else "ok", message


def _failure(before: Optional[UnitState], after: Optional[UnitState],
             message: str) -> str:
    if any(s and s.load == "masked" for s in (before, after)) and "masked" in message:
        return "masked"
    return "denied" if _DENIED_RE.search(message) else "failed"


_RUN_RE = Regex(r"[0-9a-f]{32}")     # an InvocationID, as systemd exports it
# What a run read first tells of a unit: it was up (systemd keeps the link
# from its start until it is inactive or failed), so the goal of a start
# held, not a try-restart's; said "up": it may have been activating.
RUNNING = UnitState("loaded", "active")
WAS_UP = "up"


def _new_run(after: UnitState, run_before: str) -> bool:
    """Is the unit in another run than before? No run at all is another one:
    it had one (systemd keeps the link only while a unit is up), and left
    it (a try-restart restarted it, and it stopped and was unloaded)."""
    return after.invocation != run_before


def read_runs(framed: Framed, count: int) -> List[str]:
    """The units' runs read first, or none: the states were read instead (or
    a garbled reply)."""
    runs = [_ascii(run) for run in framed.states.get(b"runs", ())]
    return runs if len(runs) == count and all(map(_RUN_RE.fullmatch, runs)) else []


def _nth(states: List[Optional[UnitState]], index: int) -> Optional[UnitState]:
    return states[index] if index < len(states) else None


def judge_units(protocol: Protocol, steps: Sequence[Step],
                framed: Framed) -> Dict[str, UnitResult]:
    """The units whose result came back whole, judged."""
    action = protocol.action
    befores, before_text = state_blocks(framed.states.get(b"before"))
    after_tokens = framed.states.get(b"after")
    watch = [_ascii(count) for count in framed.states.get(b"watch", ())]
    if len(watch) != len(steps):
        watch = []      # not watched, or a count that did not come back
    afters, after_text = state_blocks(after_tokens)
    runs_before = read_runs(framed, len(steps))
    runs = action.runs_per_unit(protocol.verbose)
    done: Dict[str, UnitResult] = {}
    for index, step in enumerate(steps):
        section = framed.sections.get(step.unit, {})
        lines, rc = section.get("output", []), section.get("rc")
        if action.reads_journal:
            notes, read, output, bounded = read_journal(
                lines, journal_read_bytes(len(steps)), protocol.raw)
            # stopped by the bound (SIGPIPE): its exit code says nothing more
            rc = 0 if bounded and rc else rc
        else:
            notes, read = [], True
            output = "\n".join(decode(line) for line in lines).strip()
        if section.get("skipped"):
            done[step.unit] = judge_skipped(step, "a service it requires failed "
                                                  "on this node")
        elif action.kind == "node":
            if "rc" in section:
                done[step.unit] = judge_unit(protocol, step, None, None, rc, output)
        elif action.kind == "apply":
            if "rc" in section:         # its state before its own, after all units'
                before, problem = state_blocks(section["before"])
                cut = after_tokens is None
                done[step.unit] = judge_unit(
                    protocol, step, _nth(before, 0), None if cut else _nth(afters, index),
                    rc, output, CUT_SHORT if cut else problem or after_text,
                    section.get("did", False))
        elif ("rc" in section and action.kind != "query") or \
                (after_tokens is not None and (not runs or "rc" in section)):
            # a query's answer is its state: none read, no answer (timed out)
            cut = after_tokens is None      # acted, then the node was cut short
            after = None if cut else _nth(afters, index)
            done[step.unit] = judge_unit(
                protocol, step, _nth(befores, index), after, rc, output,
                CUT_SHORT if cut else before_text or after_text,
                watched=watch[index] if watch else None, note="; ".join(notes), read=read,
                run_before=runs_before[index] if runs_before else "")
    for unit, lines in framed.journals.items():
        result = done.get(unit)
        if result is not None and (result.outcome == "failed" or (
                result.after is not None and result.after.crashed)):
            done[unit] = replace(result, journal=journal_text(
                lines, framed.invocations.get(unit, ""), protocol.journal))
    return done


def journal_text(lines: Sequence[bytes], invocation: str, count: int) -> str:
    """A failed unit's journal, printable and made to fold: its own last
    `count` lines of that run, then PID 1's about the run, said "systemd:
    ..." as journalctl says "systemd[1]: ..."; apart, because their order
    between each other is a race (a daemon's last stderr line and PID 1's
    "Main process exited" reach journald on two sockets) that would split one
    story into two blocks. A line of the unit's that carries no invocation
    (see _JOURNAL) is of that run if it comes after PID 1's last line about an
    earlier run. journalctl's own errors come first, and svcctl's notes on
    what it sent before them, in brackets."""
    notes, read, whole, cut = journal_lines(lines, JOURNAL_BYTES * journal_entries(count))
    said, own, systemd = [], [], []
    for text in whole.split("\n"):
        if not text.startswith("{"):
            said.append(text)
            continue
        entry = _journal_entry(text)
        ran = entry.get("INVOCATION_ID" if entry.get("_PID") == "1"
                        else "_SYSTEMD_INVOCATION_ID")
        if entry.get("_PID") == "1":
            if invocation and ran != invocation:
                if not systemd:
                    own = []        # lines before it are of earlier runs
                continue
            systemd.append(text)
        elif not invocation or ran in (None, invocation):
            own.append(text)
    told = _clean_journal("\n".join(said + own[-count:]))
    about = _clean_journal("\n".join(systemd[-count:]))
    text = "\n".join(filter(None, [told] + ["systemd: " + line
                                            for line in about.split("\n") if line]))
    if read and not text and not cut:
        notes.append("no entries")
    return "\n".join(["(%s)" % note for note in notes] + [text] * bool(text))


def read_journal(lines: Sequence[bytes], bound: int, raw: bool = False
                 ) -> Tuple[List[str], bool, str, bool]:
    """One unit's journal as svcctl journal reads it (see _READ) -> (svcctl's
    notes on it, whether the journal was read at all, its lines oldest
    first: made to fold, or with --raw as journalctl printed them, printable;
    whether it was cut)."""
    notes, read, text, cut = journal_lines(lines, bound, newest_first=True, raw=raw)
    folded = _clean_journal(text)
    if read and not folded and not cut:
        notes.append("no entries")
    if raw:
        return notes, read, "\n".join(printable(line, keep_tabs=True)
                                      for line in text.split("\n")).strip(), cut
    return notes, read, folded, cut


# Bytes of a JSON entry's line besides its message: cursor, times, boot id,
# sequence number, process and invocation ids (some 530 at most), its own on
# each node; its message is the same on every node that tells the same story.
JSON_ENTRY_HEAD = 600


def journal_lines(lines: Sequence[bytes], bound: int, newest_first: bool = False,
                  raw: bool = False) -> Tuple[List[str], bool, str, bool]:
    """What a node sent of journalctl's output, bounded: a `.`, then its last
    BOUND bytes (see _JOURNAL); or newest_first (-r), its first BOUND bytes
    (_READ) -> (svcctl's notes on it, whether the journal was read at all,
    its whole lines oldest first, whether it was cut). Once at the bound, the
    line at the cut is part of one: left out (a journal of exactly BOUND
    bytes reads as cut too)."""
    cut = sum(len(line) + 1 for line in lines) - (not newest_first) >= bound
    if newest_first:
        whole = list(lines[:-1] if cut else lines)
    else:
        whole = [first[1:] for first in lines[:1] if not cut] + list(lines[1:])
    if cut and not raw:
        # Where each node's bytes end depends on its entries' own fields: the
        # entries that every node's hold whole, so that the same story folds.
        whole = _newest_entries(whole, bound) if newest_first else \
            _newest_entries(whole[::-1], bound)[::-1]
    notes, read, text = journal_notes("\n".join(line.decode("utf-8", "replace")
                                                for line in whole))
    if cut:
        notes.append("cut at %d bytes: earlier lines left out" % bound)
    return notes, read, oldest_first(text) if newest_first else text, cut


def _newest_entries(lines: Sequence[bytes], bound: int) -> List[bytes]:
    """JSON entries, newest first: those that any node's BOUND bytes hold
    whole, counted by their messages and JSON_ENTRY_HEAD."""
    total = 0
    for index, line in enumerate(lines):
        entry = _journal_entry(line.decode("utf-8", "replace"))
        total += JSON_ENTRY_HEAD + len(json.dumps(entry["MESSAGE"])) \
            if "MESSAGE" in entry else len(line) + 1
        if total >= bound:
            return list(lines[:index])
    return list(lines)


def _journal_entry(line: str) -> dict:
    """One `journalctl -o json` line ({} for one that does not parse: a
    node's own garbage)."""
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return {}
    return entry if isinstance(entry, dict) else {}


def judge_skipped(step: Step, reason: str, outcome: str = "skipped",
                  before: Optional[UnitState] = None) -> UnitResult:
    """A unit that was not run (or not finished), with its service tags."""
    return UnitResult(step.unit, outcome, before, message=reason, **service_tags(step))


def service_tags(step: Step) -> Dict[str, str]:
    """With -c: the service a unit result belongs to, and its declaration."""
    if step.declared is None:
        return {}
    return {"service": step.declared.service, "declared": step.declared.text()}


def _ssh_reason(stderr: List[bytes], rc: Optional[int]) -> str:
    """ssh's own reason, without the per-node host part so that nodes fold."""
    # one line: its tabs escaped too, as the log reads a reason back
    lines = [printable(decode(line)).strip() for line in stderr if line.strip()]
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


# The replies read once, per run (start() clears them): equal replies come in
# a few kinds (ok, failed, not-found...), a unit's part of one is ~0.3 KiB, so
# 256 of up to 64 KiB (200 units) keep every kind that repeats, in 16 MiB at
# most, where 1,024 of up to OUTPUT_CAP could hold 1 GiB.
CACHED_REPLIES = 256
CACHED_REPLY_MAX = 64 << 10


def read_reply(protocol: Protocol, node: str, raw: "RawResult", steps: Sequence[Step],
               interrupted: bool = False) -> NodeResult:
    """One node's result, every step accounted for. Whatever the node sent,
    this never raises: a reply that cannot be read makes that node an error,
    never the run."""
    duration = (raw.ended - raw.started) if raw.started and raw.ended else None
    # Most nodes send the same reply, word for word: read it once. A big one
    # (-v output, journals) is judged each time: it is the kind that differs
    # from node to node, and the cache must stay small in a long-lived console.
    small = sum(map(len, raw.stdout)) + sum(map(len, raw.stderr)) <= CACHED_REPLY_MAX
    judge = _judged_reply if small else _judged_reply.__wrapped__
    units, reason = judge(protocol, tuple(node_steps(protocol.action, steps)),
                          tuple(raw.stdout), tuple(raw.stderr), raw.rc, raw.timed_out,
                          raw.error, raw.too_large, interrupted)
    # Equal replies share their (frozen) unit results: a later judgement
    # replaces one in the node's list.
    return NodeResult(node, list(units), reason, duration)


@functools.lru_cache(maxsize=CACHED_REPLIES)
def _judged_reply(protocol: Protocol, steps: Tuple[Step, ...], stdout: Tuple[bytes, ...],
                  stderr: Tuple[bytes, ...], rc: Optional[int], timed_out: bool,
                  error: str, too_large: str, interrupted: bool
                  ) -> Tuple[Tuple[UnitResult, ...], str]:
    """A reply's units and the reason the node as a whole was not reached."""
    outcome = "error"
    if too_large:               # nothing of a node that was cut off is trusted
        reason = "reply too large (%s): stopped reading it" % too_large
    else:
        raw = RawResult(list(stdout), list(stderr), rc, timed_out, error)
        try:
            return _read_reply(protocol, raw, steps, interrupted)
        except Exception as exc:    # noqa: BLE001 -- one node, never the run
            reason = "unreadable reply: %s" % printable(
                str(exc) or type(exc).__name__)[:300]
            missing, why = _missing_reason(protocol, raw, Framed({}, {}), interrupted)
            if SEVERITY[missing] > SEVERITY[outcome]:   # cut short mid-line
                outcome, reason = missing, why
    return tuple(judge_skipped(step, reason, outcome) for step in steps), reason


def _read_reply(protocol: Protocol, raw: "RawResult", steps: Sequence[Step],
                interrupted: bool) -> Tuple[Tuple[UnitResult, ...], str]:
    framed = parse_output(raw.stdout, protocol.marker)
    done = judge_units(protocol, steps, framed)
    befores = state_blocks(framed.states.get(b"before"))[0]
    runs = read_runs(framed, len(steps))
    missing, reason = _missing_reason(protocol, raw, framed, interrupted)
    if not framed.complete:
        # The node did not finish: no unit on it reads better than that
        # (a start that returned 0 is no start proven), what was known of
        # each unit is kept as detail.
        done = {unit: _cut_short(result, missing, reason, bool(runs))
                for unit, result in done.items()}
    results = tuple(done.get(step.unit) or _not_done(
        protocol, step, framed, _nth(befores, index), missing, reason,
        bool(runs)) for index, step in enumerate(steps))
    known = done or framed.sections or befores or runs
    return results, "" if known else reason


def _cut_short(result: UnitResult, missing: str, reason: str,
               was_up: bool = False) -> UnitResult:
    """A unit judged on a node that did not finish: the node's outcome (when
    worse than the unit's own), with the unit's own verdict as detail (and
    its state before, or that it had a run)."""
    if SEVERITY[result.outcome] >= SEVERITY[missing]:
        return result
    known = [OUTCOMES[result.outcome].label]
    if result.rc is not None:
        known.append("exit code %d" % result.rc)
    if result.before or was_up:
        known.append("was " + (result.before.describe() if result.before else WAS_UP))
    known.append("now " + result.after.describe() if result.after
                 else "state after not read")
    return replace(result, outcome=missing, message="\n".join(filter(None, [
        "%s; known before that: %s" % (reason, ", ".join(known)), result.message])))


def _not_done(protocol: Protocol, step: Step, framed: Framed,
              before: Optional[UnitState], missing: str, reason: str,
              was_up: bool = False) -> UnitResult:
    """A unit with no result: the node's reason, and what is known of it (its
    action still running, its state before, or that it had a run)."""
    section = framed.sections.get(step.unit)
    if section is not None and section.get("before"):   # apply: its own read
        before = _nth(state_blocks(section["before"])[0], 0)
    detail = []
    if section is not None and not section.get("skipped"):
        detail.append("while its %s was running" % protocol.action)
    elif framed.sections and missing != "skipped":
        detail.append("before its turn")
    if before is not None or was_up:
        detail.append("(it was %s)" % (before.describe() if before else WAS_UP))
    return judge_skipped(step, " ".join([reason] + detail), missing, before)


def _missing_reason(protocol: Protocol, raw: "RawResult", framed: Framed,
                    interrupted: bool) -> Tuple[str, str]:
    """The outcome and reason of the units that did not come back whole."""
    if raw.timed_out:
        return "timeout", "timed out after %g s" % protocol.timeout
    if raw.error:
        return "unreachable", raw.error + (
            "; " + _ssh_reason(raw.stderr, raw.rc) if raw.stderr else "")
    if raw.rc is None:
        return ("interrupted", "not finished") if interrupted else ("skipped", "not run")
    if raw.rc == 76 and not raw.stdout and not framed.sections:
        # ClusterShell's own code when a gateway failed before the node replied
        return "unreachable", "no reply through the gateway (%s)" % _ssh_reason(
            raw.stderr, raw.rc)
    if raw.rc == 255:
        reason = _ssh_reason(raw.stderr, raw.rc)
        started = framed.sections or framed.states      # its states read first
        return "unreachable", ("connection lost: " if started else "") + reason
    if not framed.complete:
        return "error", "remote command ended early (exit code %d): %s" % (
            raw.rc, _ssh_reason(raw.stderr + raw.stdout[-3:], raw.rc))
    return "error", "no result for this unit in the node's reply"


def merge_results(node: str, parts: Sequence[NodeResult]) -> NodeResult:
    """One node's results from several waves, in the order they ran."""
    reasons = {part.reason for part in parts}
    durations = [part.duration for part in parts if part.duration is not None]
    return NodeResult(node, [unit for part in parts for unit in part.units],
                      reasons.pop() if len(reasons) == 1 else "",
                      sum(durations) if durations else None)


def judge_against_majority(results: Sequence[NodeResult]) -> None:
    """cat --diff: for each unit, the text most nodes have is the reference;
    a node whose text differs drifts, and its message says how (a unified
    diff from the reference, the same for every node with that text)."""
    texts: Dict[str, Dict[str, List[Tuple[NodeResult, int]]]] = {}
    for result in results:
        for index, item in enumerate(result.units):
            if item.outcome == "ok":
                texts.setdefault(item.unit, {}).setdefault(item.message, []).append(
                    (result, index))
    for versions in texts.values():
        reference = max(versions, key=lambda text: len(versions[text]))
        where = fold(result.node for result, _ in versions[reference])
        for text, items in versions.items():
            if text == reference:
                continue
            diff = text_diff(reference.split("\n"), text.split("\n"),
                             "the most common version (%s)" % where)
            for result, index in items:     # replaced, not changed: nodes
                result.units[index] = replace(    # with equal replies share units
                    result.units[index], outcome="drift", message=diff)


def rewrite_answers(results: Iterable[NodeResult],
                    rewrite: Callable[[UnitResult], str]) -> None:
    """Replace each answered unit's text (show, cat, journal) by rewrite(unit):
    after the run, where the other nodes' answers are known. Nodes with equal
    replies share a unit: it is rewritten once, and replaced, never changed."""
    done: Dict[int, UnitResult] = {}
    for result in results:
        for index, item in enumerate(result.units):
            if item.outcome == "ok" and item.message:
                if id(item) not in done:
                    done[id(item)] = replace(item, message=rewrite(item))
                result.units[index] = done[id(item)]


def in_asked_order(results: Sequence[NodeResult], properties: Sequence[str]) -> None:
    """show -p SubState,ActiveState: systemctl prints the properties in its
    own order; put them back in the order the user asked for."""
    rank = {name: index for index, name in enumerate(properties)}

    def key(line: str) -> int:
        return rank.get(line.split("=", 1)[0], len(rank))
    rewrite_answers(results, lambda item: "\n".join(sorted(item.message.split("\n"),
                                                           key=key)))


# journal --mask: what differs between lines that tell the same thing
# (Drain's templates): addresses, ids, hex, numbers. Longest first.
_MASKS = (("<IP>", r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?::[0-9]+)?\b"),
          ("<ID>", r"\b[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}\b"),
          # hex with a digit and a letter: lookaheads, linear (nested stars
          # took seconds on a long line)
          ("<HEX>", r"\b(?:0x)?(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]+\b"),
          ("<N>", r"\b[0-9]+(?:\.[0-9]+)?\b"))
_MASK_RE = Regex("|".join("(%s)" % pattern for _, pattern in _MASKS))


def line_template(line: str) -> Tuple[str, Tuple[str, ...]]:
    """A line (its first JOURNAL_LINE_MAX characters) -> (its template, the
    values masked in it)."""
    line = line[:JOURNAL_LINE_MAX]
    values: List[str] = []

    def mask(match) -> str:
        values.append(match.group(0))
        return _MASKS[match.lastindex - 1][0]
    return _MASK_RE.sub(mask, line), tuple(values)


def mask_across_nodes(results: Sequence[NodeResult]) -> None:
    """journal --mask: each line becomes its template; a template whose
    values differ says how many distinct ones the nodes had, so that nodes
    telling the same story fold, and what varies stays in sight."""
    seen: Dict[str, Set[Tuple[str, ...]]] = {}
    template_of: Dict[str, str] = {}        # each distinct line read once
    for item in {id(u): u for r in results for u in r.units if u.outcome == "ok"}.values():
        for line in item.message.split("\n"):
            if line in template_of:
                continue
            template, values = line_template(line)
            template_of[line] = template
            seen.setdefault(template, set()).add(values)

    def masked(item: UnitResult) -> str:
        out = []
        for line in item.message.split("\n"):
            template = template_of[line]
            count = len(seen[template])
            out.append(template + ("  [%d distinct values]" % count if count > 1 else ""))
        return "\n".join(out)
    rewrite_answers(results, masked)


def set_against(results: Sequence[NodeResult], compare: NodeSet) -> None:
    """journal --compare: on the nodes read, the lines that none of the
    compared nodes has come first ("what do the failing nodes say that the
    healthy ones don't"); the compared nodes' own text is left as it is."""
    theirs = {line for r in results if r.node in compare for u in r.units
              if u.outcome == "ok" for line in u.message.split("\n")} - {""}

    def split(item: UnitResult) -> str:
        lines = item.message.split("\n")
        if not theirs:      # no entries there, unreadable, down: said, rather than
            # call every line "only here"
            return "\n".join(["(no line read on %s to compare with)" % compare] + lines)
        only = [line for line in lines if line not in theirs]
        shared = [line for line in lines if line in theirs]
        return "\n".join(["only here, not on %s:" % compare] + (only or ["(none)"]) +
                         (["also on %s:" % compare] + shared if shared else []))
    rewrite_answers((r for r in results if r.node not in compare), split)

DIFF_WORK_MAX = 1000000     # lines x lines: difflib is quadratic (at most ~0.2 s a version)


def text_diff(reference: List[str], lines: List[str], name: str) -> str:
    """A unified diff from the reference, when it is cheap enough; else a
    bounded summary that says so: the sizes and the first difference."""
    if len(reference) * len(lines) <= DIFF_WORK_MAX:
        import difflib
        return "\n".join(difflib.unified_diff(reference, lines, name, "this version",
                                              lineterm="", n=1))
    first = next((i for i, (a, b) in enumerate(zip(reference, lines)) if a != b),
                 min(len(reference), len(lines)))
    return "\n".join([
        "differs from %s: %d lines against %d; too large to diff (over %d lines x lines),"
        " first difference at line %d:" % (name, len(lines), len(reference), DIFF_WORK_MAX,
                                           first + 1)] +
        ["-" + line for line in reference[first:first + 1]] +
        ["+" + line for line in lines[first:first + 1]])


def service_views(report: Report) -> List[ServiceView]:
    """A cluster-file run seen by service: each one's states grouped by
    NodeSet, and where it drifted (decided when the units were judged)."""
    views = []
    for service in report.services:
        states: List[Tuple[str, str]] = []
        drift: List[str] = []
        unit, declared, problem = "", "", False
        for result in report.nodes:
            for item in result.units:
                if item.service != service:
                    continue
                unit, declared = item.unit, item.declared
                problem = problem or OUTCOMES[item.outcome].problem
                text = item.after.describe() if item.after is not None else \
                    item.outcome + (": " + item.message.split("\n")[0]
                                    if item.message else "")
                states.append((text, result.node))
                if item.drift:
                    drift.append(result.node)
        views.append(ServiceView(service, unit, fold(node for _, node in states), declared,
                                 list(fold_by(states).items()), fold(drift), problem))
    return views


# A query's summary names its answers instead of these outcomes: `negative`
# says no more than "some no", where `failed (4): node[1-4]` can be pasted.
ANSWERED = ("ok", "negative")


def answer_groups(report: Report) -> List[Tuple[str, str, str, NodeSet]]:
    """A query's (and ping's) answers: (unit, answer, outcome, NodeSet), the
    units in the order asked, yes before no; nothing for other actions. Units
    with a problem (not found, unreachable...) are left to their outcome."""
    sums_up = ACTIONS[report.action].sums_up
    if sums_up is None:
        return []
    outcome_of: Dict[Tuple[str, str], str] = {}
    pairs = []
    for result in report.nodes:
        for item in result.units:
            if not OUTCOMES[item.outcome].problem:
                key = (item.unit, sums_up(item))
                outcome_of.setdefault(key, item.outcome)
                pairs.append((key, result.node))
    order = {unit: index for index, unit in enumerate(dict.fromkeys(report.units))}
    ordered = sorted(fold_by(pairs).items(), key=lambda group: (
        order.get(group[0][0], len(order)), SEVERITY[outcome_of[group[0]]]))
    return [(unit, answer, outcome_of[unit, answer], nodes)
            for (unit, answer), nodes in ordered]


def unit_outcomes(report: Report) -> Dict[str, Dict[str, NodeSet]]:
    """A run on several units (not a query: its answers say it): each unit's
    outcomes by NodeSet, units in the order asked, outcomes in the table's."""
    if ACTIONS[report.action].sums_up is not None or len(set(report.units)) < 2:
        return {}
    groups = fold_by(((item.unit, item.outcome), result.node)
                     for result in report.nodes for item in result.units)
    units = dict.fromkeys(list(report.units) + [unit for unit, _ in groups])
    by_unit = {unit: {name: groups[unit, name] for name in OUTCOMES if (unit, name) in groups}
               for unit in units}
    return {unit: by for unit, by in by_unit.items() if by}


def unit_summary(report: Report) -> List[Tuple[str, str, NodeSet]]:
    """(unit, outcome, NodeSet) for the summary, when some unit's outcomes are
    not its nodes' (`failed (32)` must not hide that the other units started
    on 31 of them); nothing when every unit went as its nodes did."""
    by_unit = unit_outcomes(report)
    # NodeSets compared as sets (the same nodes print the same), not as text:
    # a NodeSet of 10,000 nodes takes milliseconds to print
    if all(by == report.outcomes for by in by_unit.values()):
        return []
    return [(unit, name, ns) for unit, by in by_unit.items() for name, ns in by.items()]


# =============================================================================
# Requests: a whole validated run, and how it is built from a command line
# =============================================================================

@dataclass(frozen=True)
class Display:
    """How a run is shown, decided once from the options (like clush's
    Display object) rather than loose flags passed down the calls."""
    verbose: bool = False
    quiet: int = 0              # 1: problems and the summary; 2: nothing if all is well
    color: bool = False
    json: bool = False
    lines: bool = False         # -L: one line per node and unit, by node
    regroup: Optional[str] = None   # -r: name nodes by groups of this source ("": default)
    named: Tuple[str, ...] = ()     # -r: the groups typed on the command line (@web)

    def paint(self, tty: str, text: str) -> str:
        return "\x1b[%sm%s\x1b[0m" % (tty, text) if self.color and tty else text

    def nodes(self, nodes: NodeSet) -> str:
        """A NodeSet as text; with -r, by ClusterShell group where one matches.
        Where several groups name exactly these nodes, the one typed on the
        command line wins; else all of them are said (`@odd = @web`)."""
        if self.regroup is None:
            return str(nodes)
        try:
            grouped = NodeSet(resolver=std_group_resolver())
            grouped.update(nodes)       # the same names, with the site's groups
            text = grouped.regroup(self.regroup or None)
            if not text.startswith("@") or "," in text:
                return text             # not one whole group
            same = groups_equal_to(nodes, self.regroup or None)
            named = [name for name in self.named if name in same]
            return named[0] if named else " = ".join([text] + [
                name for name in same if name != text])
        except Exception:   # noqa: BLE001 -- a site's source failing after the run
            return str(nodes)   # must not lose its report: the names say it all


def groups_equal_to(nodes: NodeSet, source: Optional[str], most: int = 300) -> List[str]:
    """The site's groups (of `source`) whose members are exactly these nodes."""
    resolver = std_group_resolver()
    return ["@" + name for name in resolver.grouplist(source)[:most]
            if len(nodes) == len(members := NodeSet.fromlist(
                resolver.group_nodes(name, source), resolver=RESOLVER_NOGROUP))
            and members == nodes]


HOSTFILE_MAX_BYTES = 8 << 20      # a hostfile, or --hostfile - (8 x a cluster file's)
_HOSTFILE_WORD_RE = Regex(r"#[^\n]*|[^\s#]+")


def read_hostfile(path: str, stdin, limit: int) -> List[str]:
    """NodeSet patterns, several a line, `#` comments; `-` is stdin (a pipe
    from squeue or sinfo), read as bytes. Each word is counted as it is
    found: once they name more than `limit` nodes (every operand counted),
    the file is refused before the rest is split (memory stays a few times
    the file's size, at most)."""
    if path == "-":
        try:
            text = read_text(stdin.buffer, "--hostfile -", HOSTFILE_MAX_BYTES)
        except OSError as exc:      # `< /`: a directory
            raise UsageError("--hostfile -: cannot read: %s" % (exc.strerror or exc))
    else:
        text = read_text_file(path, HOSTFILE_MAX_BYTES, pipes=True)
    words: List[str] = []
    total = 0
    for match in _HOSTFILE_WORD_RE.finditer(text):
        word = match.group()
        if word.startswith("#"):
            continue
        total += pattern_size(word, limit - total)
        if total > limit:
            raise UsageError("--hostfile %s: more than %d nodes, every operand counted "
                             "(see --max-nodes)" % (printable(path), limit))
        words.append(word)
    if not words:
        raise UsageError("--hostfile %s: no node in it" % printable(path))
    return words


def with_source(pattern: str, source: Optional[str]) -> str:
    """-s SOURCE: `@group` means `@SOURCE:group` (`@*` all of SOURCE)."""
    if not source:
        return pattern
    return re.sub(r"(^|[,!&^])(\s*)@(?![@])(?![A-Za-z0-9_.+-]*:)", r"\1\2@%s:" % source,
                  pattern)


def chosen_nodes(args: argparse.Namespace, positional: Sequence[str], stdin,
                 last: Optional[LastRun] = None) -> NodeSet:
    """The NodeSet from the positional NodeSets or clush's options."""
    source = args.groupsource
    for name in args.groups + args.exclude_groups:
        if not re.fullmatch(_NAME, name, re.ASCII):
            raise UsageError("invalid group name: %s" % printable(name))
    patterns = list(positional) + args.where + ["@" + g for g in args.groups] \
        + (["@*"] if args.all else [])
    for path in args.hostfiles:
        patterns += read_hostfile(path, stdin, args.max_nodes)
    exclude = args.exclude + ["@" + g for g in args.exclude_groups]
    if not patterns:
        raise UsageError("no node given: a NodeSet after the units, or -w, -g, -a, "
                         "--hostfile")
    nodes = parse_nodes([with_source(p, source) for p in patterns],
                        [with_source(p, source) for p in exclude], limit=args.max_nodes,
                        last=last)
    if args.pick is not None and args.pick < len(nodes):
        if args.pick < 1:
            raise UsageError("--pick takes a number of nodes >= 1")
        import random
        nodes = fold(random.sample(list(nodes), args.pick))
    return nodes


def parse_count(text: Optional[str], total: int, what: str) -> Optional[int]:
    """`N` or `N%` of `total`."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d{1,9})(%?)", text.strip())
    if not match:
        raise UsageError("%s must be N or N%%, not %s" % (what, printable(text)))
    value = int(match.group(1))
    if match.group(2):
        if value > 100:
            raise UsageError("%s cannot exceed 100%%" % what)
        value = total * value // 100
    return value


CONTROL_PATH_MAX = 60       # a unix socket path has ~107 bytes; %C takes 40


def control_directories() -> List[str]:
    """Where ssh's control sockets may live, best first: XDG_RUNTIME_DIR when
    it is really ours (not another user's, left by `su` without `-`), then
    /tmp/svcctl-UID, then the home directory. Only plain paths: the path
    becomes an ssh option."""
    uid = os.geteuid()
    places = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and owned_privately(runtime):
        places.append(os.path.join(runtime, "svcctl"))
    places.append("/tmp/svcctl-%d" % uid)
    try:
        places.append(os.path.join(pwd.getpwuid(uid).pw_dir, ".svcctl-sockets"))
    except KeyError:
        pass
    return [place for place in places if len(place) <= CONTROL_PATH_MAX
            and re.fullmatch(r"[A-Za-z0-9_./-]+", place)]


def owned_privately(path: str) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


def private_directory(path: str) -> bool:
    """Make `path` a directory only we can use, or say it cannot be: a link,
    a file, or another user's directory is never used, never changed."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() \
        and not info.st_mode & 0o077


def persist_options(seconds: int, create: bool = True) -> str:
    """ssh options that keep one master connection per node open, in the
    first private directory that can be had."""
    places = control_directories()
    chosen = next((place for place in places if not create or private_directory(place)),
                  None)
    if chosen is None:
        raise UsageError("--persist: no private directory for ssh's control sockets "
                         "(tried %s)" % (", ".join(places) or "none short enough"))
    return "-oControlMaster=auto -oControlPath=%s/%%C -oControlPersist=%d" % (
        chosen, seconds)


@dataclass
class Request:
    """A whole validated run: what to do, where, how, and how to show it.
    Nothing in it can reach a shell unchecked; run(request) and
    dry_run(request) need nothing else. Validation creates nothing on disk."""
    action: Action
    units: List[str]
    nodes: NodeSet
    settings: Settings
    display: Display = Display()
    command: str = ""
    user: str = ""
    sudo: bool = False
    now: bool = False
    settle: float = 0.0
    batch: Optional[int] = None
    max_fail: Optional[int] = None
    batch_wait: float = 0.0
    persist: Optional[int] = None       # seconds: --persist
    config: str = ""                    # with -c
    services: List[Service] = field(default_factory=list)
    nodes_of: Dict[str, NodeSet] = field(default_factory=dict)
    log: Optional[str] = None
    html: Optional[str] = None
    syslog: bool = False
    dry_run: bool = False
    options: dict = field(default_factory=dict)     # Protocol's extra, pattern...
    file_groups: Dict[str, NodeSet] = field(default_factory=dict)   # with -c
    groupsource: Optional[str] = None
    compare: Optional[NodeSet] = None   # journal --compare: read too, set against

    def page_groups(self) -> Dict[str, NodeSet]:
        """The groups an HTML page knows (its filter, its grid): the site's
        that hold some of the nodes, and the cluster file's."""
        return dict(site_groups(self.nodes, self.groupsource), **self.file_groups)

    def cluster(self) -> Optional[ClusterFile]:
        return ClusterFile(self.config, {}, self.services) if self.services else None

    @property
    def subject(self) -> str:
        if not self.services:
            return ""
        if self.action.kind == "node":
            return "nodes of %s" % self.config
        count = len(self.services)
        return "%d service%s of %s" % (count, "s" * (count != 1), self.config)

    def protocol(self, marker: str) -> Protocol:
        return Protocol(self.action, marker, self.sudo, self.now, self.display.verbose,
                        self.settle, self.settings.command_timeout, **self.options)

    def connection(self, create: bool = True) -> Settings:
        """The ssh settings, with --persist's private socket directory (made
        now, at run time, never during validation)."""
        if self.persist is None:
            return self.settings
        return replace(self.settings, ssh_options=" ".join(filter(None, (
            self.settings.ssh_options, persist_options(self.persist, create)))))

    @property
    def by_service(self) -> bool:
        """Each service's unit on its own nodes (with -c; ping, daemon-reload
        and list-units run once on every node of the file instead)."""
        return bool(self.services) and self.action.kind != "node"

    def plan(self) -> Plan:
        if self.by_service:
            return file_plan(self.action, self.services, self.nodes_of)
        return batch_plan(self.action, self.nodes, tuple(Step(u) for u in self.units),
                          self.batch, self.max_fail, self.batch_wait)

    def steps_of(self, node: str) -> List[Step]:
        if self.by_service:
            return [Step(s.unit, declared=s.declared) for s in self.services
                    if node in self.nodes_of[s.name]]
        return node_steps(self.action, [Step(unit) for unit in self.units])


def connection_settings(args: argparse.Namespace) -> Settings:
    """clush.conf's [Main], then the site's svcctl.conf, then the command line."""
    settings = read_clush_conf()
    if args.fanout is not None:
        settings.fanout = check_fanout(args.fanout)
    if args.connect_timeout is not None:
        settings.connect_timeout = check_seconds(args.connect_timeout, "-t")
    if args.command_timeout is not None:
        settings.command_timeout = check_seconds(args.command_timeout, "-u")
    if args.user is not None:
        settings.ssh_user = check_user(args.user)
    if args.ssh_options is not None:
        settings.ssh_options = check_ssh_options(args.ssh_options)
    return settings


def file_targets(args: argparse.Namespace, action: Action, last: Optional[LastRun] = None
                 ) -> Tuple[ClusterFile, List[Service], Dict[str, NodeSet], NodeSet]:
    """-c FILE ACTION [SERVICE...]: each service on its own nodes."""
    cluster = load_cluster_file(args.config, args.max_nodes)
    services = select_services(cluster, args.targets, action.reverse, not args.no_deps)
    source = args.groupsource
    restrict = parse_nodes([with_source(p, source) for p in args.nodes],
                           limit=args.max_nodes, last=last) if args.nodes else None
    excluded = args.exclude + ["@" + g for g in args.exclude_groups]
    exclude = parse_nodes([with_source(p, source) for p in excluded],
                          limit=args.max_nodes, last=last) if excluded else NodeSet()
    nodes_of = {}
    for service in services:
        nodes = service.nodes & restrict if restrict is not None else NodeSet(service.nodes)
        nodes_of[service.name] = nodes - exclude
    nodes = fold(n for ns in nodes_of.values() for n in ns)
    if not nodes:
        raise UsageError("no node to run on")
    return cluster, services, nodes_of, nodes


def check_combinations(args: argparse.Namespace, action: Action) -> None:
    """Options that go with some actions only, and values out of range."""
    if args.now and not action.takes_now:
        raise UsageError("--now goes with %s" % ", ".join(
            a.name for a in ACTION_TABLE if a.takes_now))
    given = {"-p": args.properties, "--failed": args.failed, "--state": args.state,
             "--diff": args.diff, "--lines": args.lines is not None,
             "--since": args.since, "--until": args.until, "--grep": args.grep,
             "--priority": args.priority, "--boot": args.boot, "--mask": args.mask,
             "--raw": args.raw, "--compare": args.compare is not None}
    for option, value in given.items():
        if value and option not in action.takes:
            raise UsageError("%s goes with %s" % (option, ", ".join(
                [a.name for a in ACTION_TABLE if option in a.takes]
                + (["report --history"] if option == "--since" else []))))
    if args.mask and args.raw:
        raise UsageError("--mask and --raw: give one of them")
    if action.needs and not given[action.needs]:
        raise UsageError("%s needs %s: all of a unit's properties differ from node to "
                         "node (PIDs, times); choose some" % (action, action.needs))
    if args.config is not None and (args.batch or args.max_fail or args.where
                                    or args.groups or args.all or args.hostfiles
                                    or args.pick is not None):
        raise UsageError("-c takes its nodes from the file (-n, -x and -X restrict them): "
                         "--batch, --max-fail, -w, -g, -a, --hostfile, --pick do not go "
                         "with it")
    if args.failed and args.state:
        raise UsageError("--failed is --state failed: give one of them")
    if args.config is None and (action.file_only or args.nodes or args.no_deps):
        raise UsageError("apply, -n and --no-deps go with -c FILE")
    if any(value.isdigit() for value in args.nodes):
        raise UsageError("-n takes a NodeSet (MilkCheck's -n); systemctl's -n/--lines "
                         "is not supported: status -v shows systemctl's own text")
    if args.max_fail is not None and args.batch is None:
        raise UsageError("--max-fail goes with --batch")
    if args.listen or args.allow_remote:
        raise UsageError("--listen and --allow-remote go with gui")
    if args.max_nodes < 1:
        raise UsageError("--max-nodes must be at least 1")
    if args.persist and not 1 <= args.persist_for <= TIME_MAX:
        raise UsageError("--persist-for takes a number of seconds from 1 to %d" % TIME_MAX)
    check_seconds(args.batch_wait, "--batch-wait")
    check_seconds(args.settle, "--settle")


_PROPERTY_RE = Regex(r"[A-Z][A-Za-z0-9]*", re.ASCII)
_STATE_RE = Regex(r"[a-z][a-z-]*", re.ASCII)
_UNIT_PATTERN_RE = Regex(r"[A-Za-z0-9:_.\\@*?\[\]-]{1,256}", re.ASCII)


_PRIORITY_RE = Regex(r"(?:[0-7]|emerg|alert|crit|err|warning|notice|info|debug)"
                    r"(?:\.\.(?:[0-7]|emerg|alert|crit|err|warning|notice|info|debug))?",
                    re.ASCII)
_JOURNAL_TIME_RE = Regex(r"[A-Za-z0-9 :.+@-]{1,40}", re.ASCII)   # @EPOCH too
_AGE_RE = Regex(r"[0-9]{1,9}[smhd]", re.ASCII)


def journal_options(args: argparse.Namespace) -> Tuple[str, ...]:
    """journalctl's options for `svcctl journal`, each checked (they reach the
    node as quoted words, never parsed by a shell)."""
    lines = 10 if args.lines is None else args.lines
    if not 1 <= lines <= 10000:
        raise UsageError("--lines takes 1 to 10000, not %d" % lines)
    # JSON, one entry a line: a message can never pass for svcctl's framing
    # (short-iso starts each entry with its time, indents the lines after)
    words = ["-o", "short-iso"] if args.raw else ["-o", "json", "--output-fields=MESSAGE"]
    words += ["-r", "-n", str(lines)]
    for option, value in (("--since", args.since), ("--until", args.until)):
        if value is None:
            continue
        if not _JOURNAL_TIME_RE.fullmatch(value):
            raise UsageError("invalid time for %s: %s" % (option, printable(value)))
        # report --history's ages (7d, 12h) mean the same here: journalctl's -7d
        words.append("%s=%s" % (option, "-" + value if _AGE_RE.fullmatch(value)
                                else value))
    if args.grep is not None:
        if not 0 < len(args.grep) <= 200 or printable(args.grep) != args.grep:
            raise UsageError("invalid --grep pattern: %s" % printable(args.grep[:200]))
        words.append("--grep=" + args.grep)
    if args.priority is not None:
        if not _PRIORITY_RE.fullmatch(args.priority):
            raise UsageError("invalid priority: %s (emerg alert crit err warning notice "
                             "info debug, 0-7, or a range err..warning)"
                             % printable(args.priority))
        words.append("--priority=" + args.priority)
    return tuple(words + (["--boot"] if args.boot else []))


def action_extras(args: argparse.Namespace, action: Action, pattern: str) -> dict:
    """The checked systemctl options of show, list-units and cat; how many
    journal lines a failed unit brings back."""
    if not 0 <= args.journal <= JOURNAL_MAX:
        raise UsageError("--journal takes 0 to %d lines, not %d" % (JOURNAL_MAX,
                                                                   args.journal))
    properties = [p for text in args.properties for p in text.split(",")]
    for name in properties:
        if not _PROPERTY_RE.fullmatch(name):
            raise UsageError("invalid property name: %s" % printable(name))
    state = "failed" if args.failed else args.state
    if state and not _STATE_RE.fullmatch(state):
        raise UsageError("invalid state: %s" % printable(state))
    if pattern and not _UNIT_PATTERN_RE.fullmatch(pattern):
        raise UsageError("invalid unit pattern: %s" % printable(pattern))
    extra = (("-p", ",".join(properties)) if properties else ()) + \
        (("--state=" + state,) if state else ()) + (
            journal_options(args) if "--lines" in action.takes else ())
    return {"extra": extra, "pattern": pattern, "listed_is_no": state == "failed",
            "diff": args.diff, "properties": tuple(dict.fromkeys(properties)),
            "journal": args.journal, "raw": args.raw, "mask": args.mask}


def split_targets(args: argparse.Namespace, action: Action
                  ) -> Tuple[List[str], str, List[str]]:
    """ACTION's positional words: (units, list-units' pattern, NodeSets)."""
    targets = list(args.targets)
    elsewhere = bool(args.where or args.groups or args.all or args.hostfiles)
    units: List[str] = []
    pattern = ""
    if action.lists and args.all and targets:
        raise UsageError("list-units -a: -a is clush's all nodes, not systemctl's all "
                         "units (give a PATTERN, or --state STATE); nothing after it")
    if action.kind == "node" and not action.lists and any(
            _UNIT_RE.fullmatch(word) for word in targets):
        raise UsageError("%s takes no unit: a NodeSet only" % action)
    if action.lists:
        if len(targets) > (1 if elsewhere else 2) or (not elsewhere and not targets):
            raise UsageError("%s [PATTERN] NODESET" % action)
        if len(targets) == (1 if elsewhere else 2):
            pattern = targets.pop(0)
    elif action.kind != "node":
        if not targets:
            raise UsageError("%s needs UNIT[,UNIT...] and a NodeSet" % action)
        units = parse_units(targets.pop(0))
    if elsewhere and targets:
        raise UsageError("the nodes are given by -w, -g, -a or --hostfile: after "
                         "%s, name only %s" % (action, "the units" if units else
                                               "nothing more"))
    if not elsewhere and not targets:
        raise UsageError("%s needs a NodeSet" % action)
    return units, pattern, targets


def prepare(argv: Sequence[str], stdin=None, stdout=None) -> Request:
    """Words of a command line -> a validated run, as the CLI makes it
    (habits, site defaults, file checks, node selection): nothing printed,
    nothing contacted, nothing created. Bad input raises UsageError (its
    message is one line; exit_code 2). `stdout`: the stream whose colours
    --color=auto decides on; `stdin`: what `--hostfile -` reads."""
    argv = list(argv)
    return make_request(read_command_line(argv), argv, stdout, stdin)


def make_request(args: argparse.Namespace, argv: Sequence[str], stdout,
                 stdin=None, stderr=None) -> Request:
    """Validate every value of the command line; contact nothing (`@last`
    reads the log, and says on `stderr` which run it read)."""
    if args.check_config or args.action in COMMAND_WORDS:
        raise UsageError("%s is not a run" % ("--check-config" if args.check_config
                                              else args.action))
    if not args.action:
        raise UsageError("ACTION is required")
    action = ACTIONS[args.action]
    check_combinations(args, action)
    last = LastRun(args.log, stderr)
    services: List[Service] = []
    nodes_of: Dict[str, NodeSet] = {}
    pattern = ""
    groups: Dict[str, NodeSet] = {}
    if args.config is not None:
        cluster, services, nodes_of, nodes = file_targets(args, action, last)
        groups = {"@" + name: members for name, members in cluster.groups.items()}
        units = [s.unit for s in services] if action.kind != "node" else []
    else:
        units, pattern, positional = split_targets(args, action)
        nodes = chosen_nodes(args, positional, stdin or sys.stdin, last)
    compare = None
    if args.compare is not None:        # even empty: "$HEALTHY" unset is no comparison
        if not args.compare.strip():
            raise UsageError("--compare: no node given")
        try:
            compare = parse_nodes([with_source(args.compare, args.groupsource)],
                                  limit=args.max_nodes, last=last)
        except UsageError as exc:
            raise UsageError("--compare %s: %s" % (printable(args.compare), exc))
        if compare & nodes:
            raise UsageError("--compare %s: nodes in both sets: %s" % (
                printable(args.compare), compare & nodes))
        nodes = nodes | compare
    batch = parse_count(args.batch, len(nodes), "--batch")
    regroup = (args.groupsource or "") if args.regroup else None
    typed = " ".join(list(args.targets) + args.where + ["@" + g for g in args.groups])
    display = Display(args.verbose, args.quiet, use_color(args.color, stdout), args.json,
                      args.line_mode, regroup, tuple(dict.fromkeys(
                          re.findall(r"@%s\b" % _NAME, typed, re.ASCII))))
    settings = connection_settings(args)
    if args.settle and action.starts_units(args.now) and settings.command_timeout and \
            args.settle >= settings.command_timeout:
        # the nodes would be cut off while watching, after the action was done
        # (a query watches nothing: a site's settle never refuses it)
        raise UsageError("--settle %g must be shorter than the command timeout (-u %g)"
                         % (args.settle, settings.command_timeout))
    request = Request(
        action, units, nodes, settings, display,
        command=" ".join(shlex.quote(a) for a in [PROG] + list(argv)),
        user=current_user(), sudo=args.sudo, now=args.now, settle=args.settle,
        batch=max(batch, 1) if batch is not None else None,
        max_fail=parse_count(args.max_fail, len(nodes), "--max-fail"),
        batch_wait=args.batch_wait, persist=args.persist_for if args.persist else None,
        config=args.config or "", services=services, nodes_of=nodes_of,
        log=args.log, html=args.html, syslog=args.syslog, dry_run=args.dry_run,
        options=action_extras(args, action, pattern), file_groups=groups,
        groupsource=args.groupsource, compare=compare)
    check_command_size(apply_query(request) if request.dry_run and action.kind == "apply"
                       else request)
    return request


# Linux's MAX_ARG_STRLEN with 4 KiB pages (32 pages): the most one argument
# may be, with its NUL. The script is one, to ssh here and to `sh -c` on the
# node (and on a gateway), whose pages may be smaller than this host's.
COMMAND_MAX = 131072 - 1


def check_command_size(request: Request) -> None:
    """Too many units for one command: said before any node is contacted
    (ssh would fail to start, and each node read "unreachable"). Each job of
    the plan measured as sent, the plan driven as a dry run drives it (no
    failure, so every job at its largest). A plain run sends every batch the
    same steps: its first node tells (not 10,000 batches walked twice)."""
    protocol = request.protocol(new_marker())
    sizes: Dict[Tuple[Step, ...], int] = {}

    def measure(wave: Wave, interrupted: str) -> Tuple[Dict[str, NodeResult], str]:
        for job in wave.jobs:
            if job.steps not in sizes:
                sizes[job.steps] = len(remote_command(protocol, job.steps).encode(
                    "utf-8", "surrogateescape"))
        return {}, ""
    sample = request if request.by_service else replace(request, nodes=request.nodes[0:1])
    drive_plan(sample.plan(), measure, {}, [])
    size = max(sizes.values(), default=0)
    if size > COMMAND_MAX:
        raise UsageError("too many units for one command: its script would be %d bytes, "
                         "over the %d an argument may be; act on fewer at a time"
                         % (size, COMMAND_MAX))


# =============================================================================
# Plans: which nodes run which steps, wave after wave, and the run itself
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
    number: int = 1                 # this wave's number, of `total`
    total: int = 1
    kind: str = "batch"             # "batch" (rolling run) or "wave" (cluster file)


# A plan is a generator of waves; after each wave it is sent the wave's
# results ({node: NodeResult}) and the interrupting signal ("" if none), so
# that it can stop a rolling run or skip what depends on a failure.
Plan = Generator[Wave, Tuple[Dict[str, NodeResult], str], None]


def skipped(node: str, steps: Sequence[Step], reason: str,
            outcome: str = "skipped") -> NodeResult:
    return NodeResult(node, [judge_skipped(step, reason, outcome) for step in steps],
                      reason)


def batch_plan(action: Action, nodes: NodeSet, steps: Tuple[Step, ...],
               batch: Optional[int] = None, max_fail: Optional[int] = None,
               batch_wait: float = 0.0) -> Plan:
    """Every node at once, or a rolling run: `batch` nodes at a time, stopping
    before the next batch once more than `max_fail` nodes failed."""
    steps = tuple(node_steps(action, steps))
    ordered = list(nodes)
    size = batch or len(ordered) or 1
    total = -(-len(ordered) // size)
    failed, interrupted, note = 0, "", ""
    for number, start in enumerate(range(0, len(ordered), size), 1):
        chunk = ordered[start:start + size]
        reason = "interrupted before its batch" if interrupted else (
            "--max-fail reached" if max_fail is not None and failed > max_fail else "")
        if reason:
            wave_note = ""
            if reason.startswith("--max-fail") and not note:
                note = wave_note = "stopped after %d failed nodes (--max-fail %d)" % (
                    failed, max_fail)
            yield Wave([], [skipped(n, steps, reason) for n in chunk], wave_note,
                       number=number, total=total)
            continue
        results, interrupted = yield Wave([Job(fold(chunk), steps)],
                                          pause=batch_wait if start else 0.0,
                                          number=number, total=total)
        failed += sum(OUTCOMES[r.outcome].problem for r in results.values())


def drive_plan(plan: Plan, perform: Callable[[Wave, str], Tuple[Dict[str, NodeResult], str]],
               parts: Dict[str, List[NodeResult]], notes: List[str]) -> str:
    """Run a plan wave by wave, for real or as a dry run (`perform`), keeping
    every node's results in `parts` as they come; return the signal that
    interrupted the run, if any."""
    interrupted = ""
    wave = next(plan, None)
    while wave is not None:
        if wave.note:
            notes.append(wave.note)
        results = {result.node: result for result in wave.decided}
        if wave.jobs:
            done, signame = perform(wave, interrupted)
            interrupted = interrupted or signame
            for node, result in done.items():
                results[node] = merge_results(node, [results[node], result]) \
                    if node in results else result
        for node, result in results.items():
            parts.setdefault(node, []).append(result)
        try:
            wave = plan.send((results, interrupted))
        except StopIteration:
            wave = None
    return interrupted


class Observer:
    """What a front end is told while a run goes; each method here does
    nothing. The terminal's progress line, the live HTML page and the web
    console are observers, as clush picks one display class per mode. All
    calls come from the run's own thread."""

    def wave_started(self, wave: Wave) -> None:
        """A batch or a wave of a cluster file begins (before its pause)."""

    def waiting(self, seconds_left: float) -> None:
        """The pause before a batch: called about every 0.25 s."""

    def node_done(self, result: NodeResult) -> None:
        """A node of the wave finished (it may still have later waves)."""

    def tick(self) -> None:
        """Every 0.2 s while nodes run."""

    def wave_ended(self, wave: Wave, results: Dict[str, NodeResult]) -> None:
        """Every node of the wave is accounted for."""

    def between_waves(self, so_far: Callable[[], Tuple[Report, List[str]]]) -> None:
        """Before every wave after the first: so_far() makes the run so far
        and the nodes still to do (only if asked: it costs a fold)."""

    def run_ended(self, report: Optional[Report]) -> None:
        """The run is over (None: it raised)."""


class Observers(Observer):
    """Several observers, told in turn."""

    def __init__(self, observers: Sequence[Optional[Observer]]):
        self.observers = [observer for observer in observers if observer]

    def _tell(self, method: str, *args) -> None:
        for observer in self.observers:
            getattr(observer, method)(*args)

    def wave_started(self, wave: Wave) -> None:
        self._tell("wave_started", wave)

    def waiting(self, seconds_left: float) -> None:
        self._tell("waiting", seconds_left)

    def node_done(self, result: NodeResult) -> None:
        self._tell("node_done", result)

    def tick(self) -> None:
        self._tell("tick")

    def wave_ended(self, wave: Wave, results: Dict[str, NodeResult]) -> None:
        self._tell("wave_ended", wave, results)

    def between_waves(self, so_far: Callable[[], Tuple[Report, List[str]]]) -> None:
        self._tell("between_waves", so_far)

    def run_ended(self, report: Optional[Report]) -> None:
        self._tell("run_ended", report)


def start(request: "Request", observer: Optional[Observer] = None,
          signals: Optional["Signals"] = None) -> Report:
    """Run the request's plan and account for every targeted node: what
    every front end calls (the CLI, the console, a script). Once the first
    node is contacted nothing of ours stops the others from being reported:
    an internal error makes the unfinished nodes `error`. `signals.stop()`,
    from any thread, stops it as Ctrl-C does; SIGINT, SIGTERM and SIGHUP are
    caught when it runs on the main thread."""
    observer = observer or Observer()
    signals = signals or Signals()
    report = None
    try:
        report = _start(request, observer, signals)
        return report
    finally:
        # equal replies are read once per run; a long-lived console must not
        # keep them between runs
        _judged_reply.cache_clear()
        observer.run_ended(report)


def _start(request: "Request", observer: Observer, signals: "Signals") -> Report:
    protocol = request.protocol(new_marker())
    settings = request.connection()      # --persist's directory: made now
    started, clock = time.time(), time.monotonic()
    parts: Dict[str, List[NodeResult]] = {}
    notes: List[str] = []

    def report(results: List[NodeResult], interrupted: str) -> Report:
        return Report(request.action.name, request.units, results, started,
                      # as the log keeps it: a replay shows the same 0.1 s
                      round(time.monotonic() - clock, 3), command=request.command,
                      user=request.user, run_id=protocol.marker.rsplit("-", 1)[-1],
                      interrupted_by=interrupted, notes=list(notes),
                      subject=request.subject,
                      services=[s.name for s in request.services] if request.by_service
                      else [])

    def so_far() -> Tuple[Report, List[str]]:
        return (report([merge_results(n, parts[n]) for n in fold(parts)], ""),
                [node for node in request.nodes if node not in parts])

    with signals:
        def perform(wave: Wave, interrupted: str) -> Tuple[Dict[str, NodeResult], str]:
            if parts:
                observer.between_waves(so_far)
            return perform_wave(protocol, settings, wave, signals, observer)
        try:
            interrupted = drive_plan(request.plan(), perform, parts, notes)
        except UsageError as exc:       # a topology that cannot route
            if not parts:
                raise               # nothing ran: a configuration error
            interrupted = signals.caught
            notes.append(printable(str(exc))[:300])
        except Exception as exc:    # noqa: BLE001 -- report what was done
            interrupted = signals.caught
            notes.append("internal error, unfinished nodes not judged: %s"
                         % printable(repr(exc))[:300])
        interrupted = interrupted or signals.caught
    results = account(request, parts, interrupted)
    if protocol.diff:
        judge_against_majority(results)
    if protocol.properties:
        in_asked_order(results, protocol.properties)
    if protocol.mask:
        mask_across_nodes(results)
    if request.compare is not None:
        set_against(results, request.compare)
    final = report(results, interrupted)
    if request.action.kind == "apply" and final.exit_code() == EXIT_OK and \
            all(r.outcome == "ok" for r in results):
        final.notes.append("nothing to change: the cluster matches %s" % request.config)
    return final


def perform_wave(protocol: Protocol, settings: Settings, wave: Wave, signals: "Signals",
                 observer: Observer) -> Tuple[Dict[str, NodeResult], str]:
    """Pause if asked, run the wave's jobs, read every node's reply."""
    observer.wave_started(wave)
    if wave.pause and not signals.caught:
        signals.pause(wave.pause, observer)
    if signals.caught:
        return {node: skipped(node, job.steps, "interrupted before its batch")
                for job in wave.jobs for node in job.nodes}, signals.caught
    steps_of = {node: job.steps for job in wave.jobs for node in job.nodes}
    results: Dict[str, NodeResult] = {}

    def node_done(node: str, raw: RawResult) -> None:
        results[node] = read_reply(protocol, node, raw, steps_of[node])
        observer.node_done(results[node])

    jobs = [(remote_command(protocol, job.steps), job.nodes) for job in wave.jobs]
    raw, interrupted = execute(jobs, settings, signals, node_done,
                               [reply_cap(job.steps) for job in wave.jobs], observer)
    for node, steps in steps_of.items():
        if node not in results:
            results[node] = read_reply(protocol, node, raw[node], steps, bool(interrupted))
    observer.wave_ended(wave, results)
    return results, interrupted


def account(request: "Request", parts: Dict[str, List[NodeResult]],
            interrupted: str) -> List[NodeResult]:
    """Every targeted node, its waves merged, in NodeSet order: a node the
    plan never reached (an internal error) is still there."""
    outcome, reason = ("interrupted", "not finished") if interrupted else \
        ("error", "not judged: internal error (see the notes)")
    for node in request.nodes:
        if node not in parts:
            parts[node] = [skipped(node, request.steps_of(node), reason, outcome)]
    return [merge_results(node, parts[node]) for node in fold(parts)]


# =============================================================================
# Rendering: text, JSON, the live progress and the HTML page
# =============================================================================

SEPARATOR = "-" * 15
HEADER_TTY = "36"


def unit_lines(action: Action, result: UnitResult, verbose: bool) -> List[str]:
    """The uniform text of one unit's result, so that identical nodes fold."""
    outcome = OUTCOMES[result.outcome]
    message = result.message
    if action.output == "lines" and message and not outcome.problem:
        return ["%s: %s" % (result.unit, line) for line in message.split("\n")]
    lines = ["%s: %s" % (result.unit, unit_head(action, result, outcome))]
    shown = verbose or action.output == "text" or (
        outcome.problem and not outcome.quiet_message)
    if message and shown and not lines[0].endswith(": " + message) \
            and not (action.kind == "node" and message == result.answer):
        lines += ["  " + line for line in message.split("\n")]
    if result.journal:
        lines.append("  journal of that run:")
        lines += ["    " + line for line in result.journal.split("\n")]
    return lines


def unit_head(action: Action, result: UnitResult, outcome: Outcome) -> str:
    """`changed, inactive (dead) -> active (running)`, `active`, `not found`..."""
    label, before, after = outcome.label, result.before, result.after
    if after is None and action.kind != "node":
        if not outcome.problem and action.kind != "query":   # cut short, done
            return "%s, was %s (state after not read)" % (
                label, before.describe() if before else "not read")
        return label
    if action.kind == "query":
        return result.answer or label
    if action.kind == "node":
        return result.answer or ("done" if not outcome.problem else label)
    if outcome.arrow and before and before.describe() != after.describe():
        return "%s, %s -> %s" % (label, before.describe(), after.describe())
    if not outcome.problem or outcome.shows_state:
        return "%s, %s%s" % (label, "now " if outcome.problem else "", after.describe())
    return label


def node_lines(action: Action, result: NodeResult, verbose: bool) -> List[str]:
    if result.reason:                   # the node as a whole was not reached
        if result.reason.startswith("timed out") or result.reason == "not finished":
            return [result.reason]
        return ["%s: %s" % (OUTCOMES[result.outcome].label, result.reason)]
    lines: List[str] = []
    for unit in result.units:
        lines += unit_lines(action, unit, verbose)
    return lines


def use_color(choice: str, stream) -> bool:
    """--color, then NO_COLOR, CLICOLOR_FORCE and TERM=dumb, then a terminal."""
    if choice in ("always", "never"):
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    if os.environ.get("CLICOLOR_FORCE", "0") != "0":
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def render_text(report: Report, display: Display = Display()) -> str:
    """clubak-style groups (problems last), then a summary naming NodeSets;
    -qq: nothing at all when every node is fine."""
    if display.quiet >= 2 and report.exit_code() == EXIT_OK:
        return ""
    action = ACTIONS[report.action]
    if display.lines:
        out = render_lines(report, display)
    elif report.services and action.drift_outcome:
        out = render_services(service_views(report), display)
    else:
        out = render_groups(report, display)
    out.append(summary_line(report))
    several = len(set(report.units)) > 1
    for unit, answer, name, nodes in answer_groups(report):
        out.append(display.paint(OUTCOMES[name].tty, "%s%s (%d): %s" % (
            unit + " " if several else "", answer, len(nodes), display.nodes(nodes))))
    for name, nodes in report.outcomes.items():
        if action.sums_up and name in ANSWERED:
            continue
        out.append(display.paint(OUTCOMES[name].tty, "%s (%d): %s" % (
            name, len(nodes), display.nodes(nodes))))
    for unit, name, nodes in unit_summary(report):
        out.append(display.paint(OUTCOMES[name].tty, "%s: %s (%d): %s" % (
            unit, name, len(nodes), display.nodes(nodes))))
    out += ["%s: %s" % (PROG, note) for note in report.notes]
    return "\n".join(out) + "\n"


def render_groups(report: Report, display: Display) -> List[str]:
    action = ACTIONS[report.action]
    groups: Dict[Tuple[str, ...], List[NodeResult]] = {}
    seen: Dict[tuple, Tuple[str, ...]] = {}     # equal results, text made once
    for result in report.nodes:
        key = (result.reason, tuple((u.unit, u.outcome, u.before, u.after, u.message,
                                     u.journal, u.answer) for u in result.units))
        if key not in seen:
            seen[key] = tuple(node_lines(action, result, display.verbose))
        groups.setdefault(seen[key], []).append(result)
    # (worst outcome, nodes, lines) per group: problems last, then by first node
    order = {node: index for index, node in enumerate(r.node for r in report.nodes)}
    ordered = sorted(((worst(r.outcome for r in results),
                       fold(r.node for r in results), lines,
                       min(order[r.node] for r in results))
                      for lines, results in groups.items()),
                     key=lambda group: (SEVERITY[group[0]], group[3]))
    out: List[str] = []
    for name, nodes, lines, _ in ordered:
        outcome = OUTCOMES[name]
        if display.quiet and outcome.exit_code == EXIT_OK:
            continue
        header = display.nodes(nodes) + (" (%d)" % len(nodes) if len(nodes) > 1 else "")
        out += [display.paint(HEADER_TTY, text) for text in (SEPARATOR, header, SEPARATOR)]
        out += [display.paint(outcome.tty, line) for line in lines]
    return out


def render_lines(report: Report, display: Display) -> List[str]:
    """-L: `node12: demo.service: failed, ...`, one line per node and unit, in
    NodeSet order, for grep and awk."""
    action = ACTIONS[report.action]
    order = {node: index for index, node in enumerate(fold(r.node for r in report.nodes))}
    out = []
    for result in sorted(report.nodes, key=lambda r: order[r.node]):
        outcome = OUTCOMES[result.outcome]
        if display.quiet and outcome.exit_code == EXIT_OK:
            continue
        out += [display.paint(outcome.tty, "%s: %s" % (result.node, line))
                for line in node_lines(action, result, display.verbose)]
    return out


def render_services(views: Sequence[ServiceView], display: Display) -> List[str]:
    """A cluster file's status: each service, its states by NodeSet, drift."""
    out = []
    drift_tty = OUTCOMES["drift"].tty
    for view in views:
        if display.quiet and not (view.drift or view.problem):
            continue
        out += [SEPARATOR, "%s: %s on %s, declared %s" % (
            view.service, view.unit, display.nodes(view.nodes), view.declared), SEPARATOR]
        for state, nodes in view.states:
            count = " (%d)" % len(nodes) if len(nodes) > 1 else ""
            line = "%s%s: %s" % (display.nodes(nodes), count, state)
            out.append(display.paint(drift_tty, line + "  <- drift")
                       if nodes & view.drift else line)
    return out


def summary_line(report: Report) -> str:
    count = len(report.nodes)
    line = "== %s on %d node%s in %.1f s" % (report.title(), count, "s" * (count != 1),
                                             report.elapsed)
    if report.interrupted_by:
        line += ", interrupted by %s" % report.interrupted_by
    return line + " =="


def iso_time(stamp: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")


def document(report: Report, with_nodes: bool = True) -> dict:
    """The --json document of a run (its fields: README, "JSON and log
    fields"), for any caller of start()."""
    by_outcome = report.outcomes
    return {
        "schema": SCHEMA, "svcctl": __version__, "run_id": report.run_id,
        "action": report.action, "units": report.units, "subject": report.subject,
        "command": report.command, "user": report.user,
        "started": iso_time(report.started), "elapsed": round(report.elapsed, 3),
        "interrupted_by": report.interrupted_by or None,
        "exit_code": report.exit_code(),
        "summary": {name: str(nodes) for name, nodes in by_outcome.items()},
        "counts": {name: len(nodes) for name, nodes in by_outcome.items()},
        "answers": answers_dict(report),
        "unit_outcomes": {unit: {name: str(nodes) for name, nodes in by.items()}
                          for unit, by in unit_outcomes(report).items()} or None,
        "nodes": [node_dict(r) for r in report.nodes] if with_nodes else [],
        "notes": report.notes,
        "services": [view.as_dict() for view in service_views(report)] or None,
    }


def answers_dict(report: Report) -> Optional[Dict[str, Dict[str, str]]]:
    """A query's answers by unit: {"demo.service": {"failed": "node[1-4]"}}."""
    if ACTIONS[report.action].sums_up is None:
        return None
    answers: Dict[str, Dict[str, str]] = {}
    for unit, answer, _, nodes in answer_groups(report):
        answers.setdefault(unit, {})[answer] = str(nodes)
    return answers


def node_dict(result: NodeResult) -> dict:
    return {"node": result.node, "outcome": result.outcome, "reason": result.reason,
            "duration": round(result.duration, 3) if result.duration is not None else None,
            "units": [unit.as_dict() for unit in result.units]}


def json_chunks(report: Report) -> Iterable[str]:
    """The JSON document in pieces, a node at a time, so that 100,000 nodes
    never sit in memory twice (as objects, then as one string)."""
    for position, (key, value) in enumerate(document(report, with_nodes=False).items()):
        yield '%s\n %s: ' % ("," if position else "{", json.dumps(key))
        if key == "nodes":
            yield from _json_nodes(report)
        else:       # nested one level deeper (a JSON text has no raw newline)
            yield json.dumps(value, indent=1).replace("\n", "\n ")
    yield "\n}\n"


def _json_nodes(report: Report) -> Iterable[str]:
    yield "["
    units: Dict[Tuple[int, ...], str] = {}      # shared unit results: JSON made once
    for index, result in enumerate(report.nodes):
        key = tuple(id(unit) for unit in result.units)
        if key not in units:
            units[key] = json.dumps([unit.as_dict() for unit in result.units])
        yield '%s\n  {"node": %s, "outcome": "%s", "reason": %s, "duration": %s, ' \
            '"units": %s}' % ("," if index else "", json.dumps(result.node), result.outcome,
                              json.dumps(result.reason), json.dumps(
                                  round(result.duration, 3) if result.duration is not None
                                  else None), units[key])
    yield "\n ]"


def render_wave(action: Action, wave: Wave, deps: Dict[str, List[Tuple[str, bool]]],
                now: bool = False, max_fail: Optional[int] = None) -> str:
    """A wave (or batch) of a dry run in words: the action on each service's
    unit (or on the units), where, and what it waits for; no shell."""
    lines = []
    services: Dict[str, Tuple[Step, List[str]]] = {}
    for job in wave.jobs:
        if not any(step.declared for step in job.steps):
            lines.append("%s on %s (%d)" % (doing(action, [s.unit for s in job.steps], now),
                                             job.nodes, len(job.nodes)))
        for step in job.steps:
            if step.declared:
                services.setdefault(step.declared.service, (step, []))[1].extend(job.nodes)
    for service, (step, names) in services.items():
        nodes = fold(names)
        waits = ["after %s on each node%s" % (dep, ", not where it failed" if strong else "")
                 if dep in services else "unless %s failed on some node" % dep
                 for dep, strong in deps.get(service, []) if dep in services or strong]
        lines.append("%s: %s on %s (%d)%s" % (
            service, doing(action, [step.unit], now, step.declared), nodes, len(nodes),
            "".join("; " + wait for wait in waits)))
    if wave.total == 1:
        return "".join(line + "\n" for line in lines)
    when = (["%g s after the %s before" % (wave.pause, wave.kind)] if wave.pause else []) + (
        ["unless more than %d node%s failed before" % (max_fail, "s" * (max_fail != 1))]
        if max_fail is not None and wave.number > 1 else [])
    return "%s %d of %d%s:\n%s" % (wave.kind, wave.number, wave.total,
                                   "".join(", " + text for text in when),
                                   "".join("  %s\n" % line for line in lines))


def doing(action: Action, units: Sequence[str], now: bool = False,
          declared: Optional[Declared] = None) -> str:
    """`stop demo.service`, `enable --now demo.service`, `make db.service
    running, enabled`, `ping`: an action in words."""
    if action.kind == "apply" and declared:
        return "make %s %s" % (",".join(units), declared.text())
    if action.kind == "node":
        return str(action)
    return "%s%s %s" % (action, " --now" if now and action.takes_now else "",
                        ",".join(units))


def render_would_do(report: Report, declared: Dict[str, Declared]) -> str:
    """apply --dry-run: from the states just read, what apply would run on
    each service's unit, by NodeSet (Ansible's check mode); the summary says
    which nodes it would change."""
    out = ["apply: dry run, the states read by one status query in %.1f s, nothing "
           "changed" % report.elapsed]
    changing: Set[str] = set()
    for service in report.services:
        texts: List[Tuple[str, str]] = []
        unit = ""
        for result in report.nodes:
            for item in result.units:
                if item.service != service:
                    continue
                unit, outcome = item.unit, OUTCOMES[item.outcome]
                if outcome.problem or item.after is None:
                    text = "cannot tell, %s%s" % (outcome.label, ": " + item.message.split(
                        "\n")[0] if item.message else "")
                else:
                    todo = declared[service].changes(item.after)
                    text = ", ".join(todo) or "nothing to do"
                    if todo:
                        changing.add(result.node)
                texts.append((text, result.node))
        out.append("%s: %s, declared %s" % (service, unit, declared[service].text()))
        out += ["  %s: %s (%d)" % (text, nodes, len(nodes))
                for text, nodes in fold_by(texts).items()]
    out.append("== apply --dry-run on %d node%s ==" % (len(report.nodes),
                                                      "s" * (len(report.nodes) != 1)))
    fates = fold_by((result.outcome if OUTCOMES[result.outcome].problem else
                     "would change" if result.node in changing else "nothing to do",
                     result.node) for result in report.nodes)   # a problem first
    order = ["would change", "nothing to do"] + list(OUTCOMES)
    out += ["%s (%d): %s" % (fate, len(fates[fate]), fates[fate])
            for fate in order if fate in fates]
    return "\n".join(out) + "\n"


def render_dry_run(protocol: Protocol, nodes: NodeSet, settings: Settings) -> str:
    return ("%s: dry run, nothing contacted\nnodes: %s (%d)\n"
            "ssh: user=%s fanout=%d connect_timeout=%g command_timeout=%g "
            "options=%s\n") % (
        protocol.action, nodes, len(nodes), settings.ssh_user or "(default)",
        settings.fanout, settings.connect_timeout, settings.command_timeout,
        settings.ssh_options or "(none)")


class Progress(Observer):
    """Where a run is, on stderr. On a terminal: a status line redrawn in
    place (wave k of n, nodes done, problems so far, time, a countdown during
    pauses) and, as each wave of several ends, one permanent line. Elsewhere
    (cron, pipes): no redraws, no escape sequences, the wave lines only with
    -v."""

    def __init__(self, total: int, stream, live: bool, lines: bool, pause: float = 0.0):
        self.total = total
        self.pause = pause          # between batches, for the estimate
        self.stream = stream
        self.live = live            # redraw a status line (a terminal)
        self.lines = lines          # print a line as each wave ends
        self.done = 0
        self.problems: Dict[str, int] = {}
        self.wave: Optional[Wave] = None
        self.started = time.monotonic()
        self.wave_times: List[float] = []
        self.shown = False

    def wave_started(self, wave: Wave) -> None:
        self.wave = wave
        self.wave_began = time.monotonic()
        self.draw()

    def node_done(self, result: NodeResult) -> None:
        self.done += 1
        outcome = result.outcome
        if OUTCOMES[outcome].problem:
            self.problems[outcome] = self.problems.get(outcome, 0) + 1

    def wave_ended(self, wave: Wave, results: Dict[str, NodeResult]) -> None:
        self.wave_times.append(time.monotonic() - self.wave_began)
        if not self.lines or wave.total < 2:
            return
        counts = fold_by((result.outcome, result.node) for result in results.values())
        text = ", ".join("%s %d" % (name, len(counts[name])) for name in OUTCOMES
                         if name in counts)
        bad = fold(n for name, nodes in counts.items() if OUTCOMES[name].problem
                   for n in nodes)
        line = "%s: %s %d/%d %s: %s%s" % (PROG, wave.kind, wave.number, wave.total,
                                          fold(results), text,
                                          " (problems: %s)" % bad if bad else "")
        self.clear()
        self.stream.write(line + "\n")
        self.stream.flush()

    def status(self, pause_left: Optional[float] = None) -> str:
        """`batch 2/4 running, 12/32 nodes done, failed 2, 0:14 elapsed,
        about 0:30 left`; in a pause: `... batch 3/4 starts in 0:03`."""
        wave = self.wave
        several = wave is not None and wave.total > 1
        parts = ["%s %d/%d running" % (wave.kind, wave.number, wave.total)] \
            if several and pause_left is None else []
        parts.append("%d/%d nodes done" % (self.done, self.total))
        if self.problems:
            parts.append(", ".join("%s %d" % (name, self.problems[name])
                                   for name in OUTCOMES if name in self.problems))
        parts.append("%s elapsed" % clock_text(time.monotonic() - self.started))
        if several and pause_left is not None:
            parts.append("%s %d/%d starts in %s" % (wave.kind, wave.number, wave.total,
                                                    clock_text(pause_left)))
        elif several and self.wave_times:
            waves_left = wave.total - wave.number + 1
            left = sum(self.wave_times) / len(self.wave_times) * waves_left \
                + self.pause * (waves_left - 1)
            parts.append("about %s left" % clock_text(left))
        return "%s: %s" % (PROG, ", ".join(parts))

    def draw(self, pause_left: Optional[float] = None) -> None:
        if not self.live:
            return
        self.shown = True
        self.stream.write("\r%s\x1b[K" % self.status(pause_left))
        self.stream.flush()

    def waiting(self, seconds_left: float) -> None:
        self.draw(pause_left=seconds_left)

    def tick(self) -> None:
        self.draw()

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def run_ended(self, report: Optional[Report]) -> None:
        self.clear()


def clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    return "%d:%02d" % divmod(seconds, 60) if seconds < 3600 else \
        "%d:%02d:%02d" % (seconds // 3600, seconds % 3600 // 60, seconds % 60)


# =============================================================================
# HTML pages: a run, a node check, a cluster file, a history; all offline,
# one script and one style sheet each, allowed by their hashes
# =============================================================================

OUTCOME_INDEX = {name: index for index, name in enumerate(OUTCOMES)}


def page_data(payload: dict) -> str:
    """JSON for a `<script type="application/json">` block: nothing in it can
    close the block or open a comment."""
    return json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c") \
        .replace(">", "\\u003e").replace("&", "\\u0026")


def html_page(title: str, meta: str, body: str, data: dict, refresh: int = 0) -> str:
    """The frame of every page: CSP by hash, the style, the data, the script."""
    style = page_style()
    return HTML_PAGE % {
        "csp": content_policy(style, HTML_SCRIPT), "title": escape(title),
        "refresh": '<meta http-equiv="refresh" content="%d">' % refresh if refresh else "",
        "meta": meta, "style": style, "body": body, "data": page_data(data),
        "script": HTML_SCRIPT}


def page_style() -> str:
    """The pages' style sheet, with a colour and a symbol per outcome."""
    return HTML_STYLE + "".join(
        ".o%d{background:%s;color:%s}.o%d::after{content:'%s'}\n" % (
            OUTCOME_INDEX[o.name], o.html, o.ink, OUTCOME_INDEX[o.name], o.symbol)
        for o in OUTCOME_TABLE)


def escape(text: str) -> str:
    """Text for HTML, quotes included (html.escape; its import costs start-up)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
        .replace('"', "&quot;").replace("'", "&#x27;")


def content_policy(style: str, script: str) -> str:
    """Nothing may load or run but this page's own style and script, named by
    their hashes (inline event handlers, forms and base URLs refused)."""
    import base64
    import hashlib

    def digest(text: str) -> str:
        return "'sha256-%s'" % base64.b64encode(
            hashlib.sha256(text.encode()).digest()).decode()
    return ("default-src 'none'; style-src %s; script-src %s; base-uri 'none'; "
            "form-action 'none'" % (digest(style), digest(script)))


def render_html(report: Report, groups: Optional[Dict[str, NodeSet]] = None,
                cluster: Optional["ClusterFile"] = None, pending: Sequence[str] = (),
                refresh: int = 0) -> str:
    """A run as one page: the summary (a row highlights its nodes), a node
    check for ping, the services and their graph for a cluster file, every
    node by name in a grid grouped by ClusterShell group or by service, a
    filter that takes a NodeSet, @group or outcome; the grouped text. With
    `pending` (a live page during a run) the nodes not done yet are shown."""
    action = ACTIONS[report.action]
    details: Dict[Tuple[str, ...], int] = {}
    views = service_views(report)
    body = [render_summary(report)]
    if action.no_when_failed:
        body.append(render_node_check(report))
    if views:
        body.append(render_html_services(views))
        if cluster:
            body.append(render_graph(cluster, views))
    # a live page of a cluster file: a node may be done with one service and
    # still to do with another (a later wave)
    expected = {s.name: s.nodes for s in cluster.services} if cluster and refresh else {}
    sections = grid_sections(report, groups or {}, pending, expected)
    body.append(render_grid(report, sections, details, pending))
    body.append("<h2>Grouped results</h2><pre>%s</pre>" % escape(render_text(report)))
    title = "svcctl %s: %d node%s, %s" % (
        report.title(), len(report.nodes), "s" * (len(report.nodes) != 1),
        "running, %d to go" % len(pending) if pending else "exit %d" % report.exit_code())
    meta = "%s by <b>%s</b>, %.1f s, run %s<br><code>%s</code>" % (
        iso_time(report.started), escape(report.user or "?"), report.elapsed,
        escape(report.run_id), escape(report.command))
    data = {"details": [list(lines) for lines in details],
            "groups": {name: str(nodes) for name, nodes in (groups or {}).items()},
            "outcomes": list(OUTCOMES)}
    return html_page(title, meta, "\n".join(body), data, refresh)


def render_summary(report: Report) -> str:
    rows = "".join(
        '<tr class="pick" data-o="%d" tabindex="0"><td><span class="sw o%d"></span></td>'
        "<td>%s</td><td>%d</td><td><code>%s</code></td></tr>" % (
            OUTCOME_INDEX[name], OUTCOME_INDEX[name], name, len(nodes),
            escape(str(nodes)))
        for name, nodes in report.outcomes.items()) + "".join(
        '<tr class="unit"><td><span class="sw o%d"></span></td><td>%s: %s</td><td>%d</td>'
        "<td><code>%s</code></td></tr>" % (OUTCOME_INDEX[name], escape(unit), name,
                                           len(nodes), escape(str(nodes)))
        for unit, name, nodes in unit_summary(report))
    return ('<table id="summary"><tr><th></th><th>outcome</th><th>nodes</th>'
            "<th>NodeSet (click a row: its nodes stand out)</th></tr>%s</table>" % rows)


def node_check_lists(report: Report) -> List[Tuple[str, Dict[str, NodeSet]]]:
    """ping, as the project's first GUI drew it: nodes that answer, nodes that
    do not (by ssh's reason), and errors (systemd degraded...), each list a
    NodeSet per reason."""
    answering, silent, errors = [], [], []
    for result in report.nodes:
        outcome = OUTCOMES[result.outcome]
        if result.outcome == "ok":
            answering.append(("", result.node))
        elif outcome.exit_code == EXIT_UNREACHABLE:
            silent.append((result.reason or outcome.label, result.node))
        else:
            text = result.units[0].answer or result.units[0].message or outcome.label
            errors.append((text.split("\n")[0], result.node))
    return [("Answering", fold_by(answering)), ("Not answering", fold_by(silent)),
            ("Errors", fold_by(errors))]


def render_node_check(report: Report) -> str:
    """The node check's three lists, as the page shows them."""
    out = ['<div class="check">']
    for title, by_reason in node_check_lists(report):
        count = sum(len(nodes) for nodes in by_reason.values())
        out.append("<div><h3>%s (%d)</h3>%s</div>" % (title, count, "".join(
            "<p><code>%s</code> (%d)%s</p>" % (
                escape(str(nodes)), len(nodes),
                ": " + escape(reason) if reason else "")
            for reason, nodes in by_reason.items()) or "<p>none</p>"))
    return "".join(out) + "</div>"


def grid_sections(report: Report, groups: Dict[str, NodeSet], pending: Sequence[str],
                  expected: Optional[Dict[str, NodeSet]] = None
                  ) -> List[Tuple[str, List[Tuple[str, str, Optional[UnitResult]]]]]:
    """(title, [(node, outcome, unit result or None)]) per section: one per
    service of a cluster file (with the nodes `expected` of it not done yet),
    else a partition by ClusterShell groups (the largest first, none holding
    more than half the nodes), else one grid. An outcome "" is pending."""
    if report.services:
        everyone = fold(list(pending) + [r.node for r in report.nodes])
        sections = []
        for service in report.services:
            cells = [(result.node, unit.outcome, unit) for result in report.nodes
                     for unit in result.units if unit.service == service]
            done = {node for node, _, _ in cells}
            cells += [(node, "", None) for node in (expected or {}).get(service, NodeSet())
                      & everyone if node not in done]
            sections.append((service, cells))
        return sections
    cells = {r.node: (r.node, r.outcome, None) for r in report.nodes}
    cells.update({node: (node, "", None) for node in pending})
    everyone = fold(cells)
    sections, left = [], set(cells)
    for name, members in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        inside = [n for n in members if n in left]
        # a group of more than half the nodes says little (@all): passed over
        if 1 < len(inside) <= len(everyone) / 2 and len(inside) == len(members & everyone):
            sections.append((name, [cells[n] for n in fold(inside)]))
            left.difference_update(inside)
    if left:
        sections.append(("other nodes" if sections else "all nodes",
                         [cells[n] for n in fold(left)]))
    return sections


def render_grid(report: Report, sections, details: Dict[Tuple[str, ...], int],
                pending: Sequence[str]) -> str:
    action = ACTIONS[report.action]
    by_node = {r.node: r for r in report.nodes}
    out = ['<h2>Nodes</h2><p class="tools"><label>Show <input id="filter" size="40" '
           'placeholder="a NodeSet, @group or outcome: node[10-20], @web, failed">'
           '</label> <span id="shown"></span></p>']
    for title, cells in sections:
        counts: Dict[str, int] = {}
        for _, outcome, _ in cells:
            counts[outcome] = counts.get(outcome, 0) + 1
        out.append('<section><h3>%s <small>%d: %s</small></h3><div class="grid">' % (
            escape(title), len(cells), ", ".join(
                "%s %d %s" % (OUTCOMES[o].symbol, counts[o], o) if o else "%d pending"
                % counts[o] for o in list(OUTCOMES) + [""] if o in counts)))
        for node, outcome, unit in cells:
            if not outcome:
                out.append('<b class="pe" tabindex="0">%s</b>' % escape(node))
                continue
            key = tuple(unit_lines(action, unit, True) if unit else
                        node_lines(action, by_node[node], True))
            index = details.setdefault(key, len(details))
            out.append('<b class="o%d" data-d="%d" tabindex="0">%s</b>' % (
                OUTCOME_INDEX[outcome], index, escape(node)))
        out.append("</div></section>")
    out.append('<pre id="detail">Click a node (or Tab to it, then Enter) to see its '
               "result.</pre>")
    return "".join(out)


def render_html_services(views: Sequence[ServiceView]) -> str:
    if not views:
        return ""
    rows = "".join(
        "<tr%s><td>%s</td><td><code>%s</code></td><td>%s</td><td>%s</td><td>%s</td></tr>"
        % (' class="drift"' if view.drift else "", escape(view.service),
           escape(view.unit), escape(view.declared),
           "<br>".join("%s: <code>%s</code>" % (escape(state), escape(str(nodes)))
                       for state, nodes in view.states),
           escape(str(view.drift)) or "none")
        for view in views)
    return ("<h2>Services</h2><table><tr><th>service</th><th>unit</th>"
            "<th>declared</th><th>states</th><th>drift</th></tr>%s</table>" % rows)


def render_graph(cluster: "ClusterFile", views: Sequence[ServiceView] = ()) -> str:
    """The services and their dependencies as an inline SVG: a column per
    depth, `requires` solid and `after` dashed; after a run, each service
    coloured by how it went (drift marked)."""
    depth: Dict[str, int] = {}
    for service in cluster.services:        # in dependency order already
        depth[service.name] = max([0] + [depth[d] + 1 for d in service.requires
                                         + service.after if d in depth])
    rows: Dict[int, int] = {}
    place: Dict[str, Tuple[int, int]] = {}
    for service in cluster.services:
        column = depth[service.name]
        place[service.name] = (20 + column * 250, 20 + rows.get(column, 0) * 90)
        rows[column] = rows.get(column, 0) + 1
    seen = {view.service: view for view in views}
    out = []
    for service in cluster.services:
        x, y = place[service.name]
        for deps, dashed in ((service.requires, False), (service.after, True)):
            for dep in (d for d in deps if d in place):
                dx, dy = place[dep]
                out.append('<path d="M%d %d C%d %d %d %d %d %d" class="edge%s"/>' % (
                    dx + 200, dy + 30, dx + 225, dy + 30, x - 25, y + 30, x - 6, y + 30,
                    " after" if dashed else ""))
        view = seen.get(service.name)
        out.append('<g class="svc%s" data-service="%s">'
                   '<rect x="%d" y="%d" width="200" height="60" rx="6"/>'
                   '<text x="%d" y="%d" class="name">%s%s</text>'
                   '<text x="%d" y="%d">%s</text><text x="%d" y="%d">%s</text></g>' % (
                       " " + service_tone(view) if view else "", escape(service.name),
                       x, y, x + 8, y + 18, escape(service.name),
                       " \u2248 drift" if view and view.drift else "",
                       x + 8, y + 35, escape(service.unit[:30]), x + 8, y + 51,
                       escape("%s, %s" % (service.declared.text(), short_nodes(
                           service.nodes)))))
    width = 250 * (max(depth.values(), default=0) + 1)
    height = 90 * max(rows.values(), default=1) + 10
    return ('<h2>Dependencies</h2><svg class="graph" width="%d" height="%d" '
            'viewBox="0 0 %d %d" role="img" aria-label="service dependencies">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" '
            'markerWidth="7" markerHeight="7" orient="auto"><path d="M0 0L10 5L0 10z"/>'
            "</marker></defs>%s</svg><p class=\"legend\">solid: requires (skipped where it "
            "failed), dashed: after (order only)</p>" % (width, height, width, height,
                                                          "".join(out)))


def service_tone(view: ServiceView) -> str:
    """How a service went, as the graph colours it."""
    return "drift" if view.drift else "bad" if view.problem else "good"


def short_nodes(nodes: NodeSet, width: int = 20) -> str:
    """A NodeSet in a small space: itself, or how many nodes."""
    text = str(nodes)
    return text if len(text) <= width else "%d nodes" % len(nodes)


def render_cluster_page(cluster: "ClusterFile") -> str:
    """The cluster file itself, read-only: services, where they run, what they
    should be, what they depend on, and the graph."""
    return html_page("svcctl cluster file %s: %d services" % (cluster.path,
                                                               len(cluster.services)),
                     "<code>%s</code>, read %s" % (escape(cluster.path),
                                                   iso_time(time.time())),
                     render_cluster_body(cluster),
                     {"details": [], "groups": {}, "outcomes": list(OUTCOMES)})


def render_cluster_body(cluster: "ClusterFile") -> str:
    rows = "".join(
        "<tr><td>%s</td><td><code>%s</code></td><td><code>%s</code> (%d)</td><td>%s</td>"
        "<td>%s</td><td>%s</td></tr>" % (
            escape(s.name), escape(s.unit), escape(str(s.nodes)),
            len(s.nodes), escape(s.declared.text()),
            escape(", ".join(s.requires)) or "", escape(", ".join(s.after)))
        for s in cluster.services)
    groups = "".join("<tr><td>@%s</td><td><code>%s</code> (%d)</td></tr>" % (
        escape(name), escape(str(nodes)), len(nodes))
        for name, nodes in cluster.groups.items())
    return ("<h2>Services</h2><p>In dependency order: start runs them top to bottom, "
            "stop bottom to top.</p><table><tr><th>service</th><th>unit</th><th>nodes"
            "</th><th>declared</th><th>requires</th><th>after</th></tr>%s</table>%s%s"
            % (rows, render_graph(cluster), "<h2>Groups</h2><table>%s</table>" % groups
               if groups else ""))


def history_story(history: History, node: str, first: int) -> Tuple[str, str]:
    """A node's line but its name: its outcomes from run `first` as symbols,
    and since when it has been failing (or when it last had a problem)."""
    runs, row = history.runs, history.cells[node]
    symbols = "".join(OUTCOME_TABLE[row[i] - 1].symbol if i < len(row) and row[i]
                      else "\u00b7" for i in range(first, len(runs)))
    bad = [i for i, code in enumerate(row) if code and OUTCOME_TABLE[code - 1].exit_code]
    latest = max(i for i, code in enumerate(row) if code)
    if bad and bad[-1] == latest:
        since = latest
        while since - 1 in bad:
            since -= 1
        run = runs[since]
        return symbols, "  %s since %s (run %s, %s by %s)" % (
            history.outcome(node, latest), iso_time(run["time"]), run["id"], run["title"],
            run["user"])
    if bad:
        return symbols, "  last problem %s in run %s" % (iso_time(runs[bad[-1]]["time"]),
                                                        runs[bad[-1]]["id"])
    return symbols, ""


def render_history_text(history: History, everyone: bool = False, last: int = 40,
                        per_node: bool = False) -> str:
    """clubak-style: one line per story (the same outcomes in the same runs,
    the same "since"), led by its NodeSet and count; the last outcomes as
    symbols (oldest first), problems only unless `everyone`, and since when
    it has been failing. `per_node`: one line per node."""
    runs = history.runs
    first = max(0, len(runs) - last)
    out = ["== history of %s: %d runs%s, %d nodes ==" % (
        printable(history.path), len(runs), ", %s to %s" % (
            iso_time(runs[0]["time"]), iso_time(runs[-1]["time"])) if runs else "",
        len(history.cells))]
    stories: Dict[Tuple[str, str], List[str]] = {}
    for node in history.nodes:
        symbols, note = history_story(history, node, first)
        if note or everyone:
            stories.setdefault((symbols, note), []).append(node)
    lines = [(nodes, symbols, note) for (symbols, note), names in stories.items()
             for nodes in ([NodeSet(n) for n in names] if per_node else [fold(names)])]
    for nodes, symbols, note in lines:
        count = " (%d)" % len(nodes) if len(nodes) > 1 else ""
        out.append("%s%s  %s%s" % (nodes, count, symbols, note))
    return "\n".join(out) + "\n"


HISTORY_RUNS = 4000


def history_matrix(history: History, last: int) -> dict:
    """The last `last` runs of a history as stories: the nodes with the same
    cells and messages fold into one row, clubak-style. Each row a string,
    a letter a run (the outcome's index, "a" the first; "." not in it);
    messages by "row,column"."""
    codes = "abcdefghijklmnopqrstuvwxyz"
    first = max(0, len(history.runs) - last)
    stories: Dict[Tuple[str, Tuple[str, ...]], List[str]] = {}
    for node in history.nodes:
        cells = "".join(codes[history.cells[node][i] - 1]
                        if i < len(history.cells[node]) and history.cells[node][i]
                        else "." for i in range(first, len(history.runs)))
        said = tuple(history.messages.get((node, i), "")
                     for i in range(first, len(history.runs)) if cells[i - first] != ".")
        stories.setdefault((cells, said), []).append(node)
    rows = [cells for cells, _ in stories]
    members = [fold(names) for names in stories.values()]
    messages = {"%d,%d" % (row, run - first): text
                for row, names in enumerate(stories.values())
                for (run, text) in ((run, history.messages.get((names[0], run)))
                                    for run in range(first, len(history.runs)))
                if text}
    return {"runs": [[r["id"], iso_time(r["time"]), r["title"], r["user"]]
                     for r in history.runs[first:]],
            "labels": [str(ns) for ns in members], "nodes": [list(ns) for ns in members],
            "rows": rows, "messages": messages, "first": first}


def render_history_html(history: History) -> str:
    """A node x run matrix: one row a node (its name beside, as text the
    browser's find reaches), one column a run; a click says what happened."""
    # at most HISTORY_RUNS columns, the latest: a canvas is at most 65,535 px wide
    data = history_matrix(history, HISTORY_RUNS)
    first = data.pop("first")
    runs = history.runs[first:]
    data.update({"outcomes": list(OUTCOMES), "colors": [o.html for o in OUTCOME_TABLE],
                 "inks": [o.ink for o in OUTCOME_TABLE],
                 "symbols": [o.symbol for o in OUTCOME_TABLE], "details": [], "groups": {}})
    legend = " ".join('<span class="sw o%d"></span> %s' % (OUTCOME_INDEX[o.name], o.name)
                      for o in OUTCOME_TABLE)
    body = ('<h2>Nodes \u00d7 runs</h2><p class="legend">%s</p><p class="legend">Each '
            "row the nodes with the same story (a click on its NodeSet shows its nodes), "
            "each column a run, oldest first; click a cell for that result. "
            '<span id="hover"></span></p><p class="tools"><label>Show <input id="filter" '
            'size="40" placeholder="a NodeSet or outcome: node[10-20], failed"></label> '
            '<span id="shown"></span></p><div class="history"><div class="names" '
            'id="names"></div><div class="matrix" id="matrix"></div></div>'
            '<pre id="detail">Click a cell.</pre>' % legend)
    meta = "%d runs, %s to %s%s" % (
        len(runs), iso_time(runs[0]["time"]) if runs else "-",
        iso_time(runs[-1]["time"]) if runs else "-",
        " (the last %d of %d)" % (len(runs), len(history.runs)) if first else "")
    return html_page("svcctl history of %s: %d nodes, %d stories" % (
        history.path, len(history.cells), len(data["rows"])),
                     meta, body, data)


# =============================================================================
# Result log: one JSON line per node and unit, written safely, read back
# =============================================================================

# Every log line holds the run's fields, the node's and the unit's, so that
# each line stands alone (jq, grep) and `svcctl report` rebuilds the run.
LOG_RUN_FIELDS = ("schema", "time", "run_id", "user", "command", "action", "units",
                  "subject", "services", "notes", "interrupted_by", "exit_code",
                  "elapsed")
LOG_NODE_FIELDS = ("node", "reason", "duration")
UNIT_FIELDS = ("unit", "outcome", "before", "after", "rc", "message", "answer",
               "service", "declared", "drift", "journal")


def log_lines(report: Report) -> bytes:
    """One JSON line per node and unit."""
    run = {"schema": SCHEMA, "time": iso_time(report.started), "run_id": report.run_id,
           "user": report.user, "command": report.command, "action": report.action,
           "units": report.units, "subject": report.subject,
           "services": report.services, "notes": report.notes,
           "interrupted_by": report.interrupted_by or None,
           "exit_code": report.exit_code(), "elapsed": round(report.elapsed, 3)}
    out = []
    for result in report.nodes:
        node = {"node": result.node, "reason": result.reason,
                "duration": round(result.duration, 3)
                if result.duration is not None else None}
        for unit in result.units:
            record = dict(run, **node)
            record.update(unit.as_dict())
            out.append(log_line(record))
    return "".join(out).encode()


LOG_TEXT_MAX = 65536        # characters of a text field kept in the log, and read back
LOG_CUT = "\n[cut by svcctl: %d more characters]"


def log_line(record: dict) -> str:
    """A record as one log line, shorter than LOG_LINE_MAX bytes: a longer one
    is cut when read back and will not parse, so its node would vanish from
    the replay, @last and the history. Each text field keeps at most
    LOG_TEXT_MAX characters, then the longest field is halved until the line
    fits (a node's control bytes are 6 bytes each once escaped); a cut text
    says how much was cut."""
    def cut(value, keep: int):
        if len(value) <= keep:
            return value
        if isinstance(value, list):
            return value[:keep]
        keep = max(0, keep - len(LOG_CUT % len(value)))
        return value[:keep] + LOG_CUT % (len(value) - keep)
    keeps = {key: LOG_TEXT_MAX for key, value in record.items()
             if isinstance(value, (str, list)) and key != "run_id"}
    while True:
        kept = {key: cut(value, keeps[key]) if key in keeps else value
                for key, value in record.items()}
        line = json.dumps(kept, sort_keys=True)
        if len(line) < LOG_LINE_MAX:
            return line + "\n"
        sizes = {key: len(json.dumps(kept[key])) for key in keeps}
        longest = max(sizes, key=sizes.get)
        if sizes[longest] < 1024:       # the rest is bounded: cannot happen
            return line + "\n"
        keeps[longest] = len(kept[longest]) // 2


class OutputError(Exception):
    """A log or report that svcctl refuses to write, and why."""


def append_log(path: str, data: bytes) -> None:
    """Append a run's lines atomically (one locked O_APPEND write) to a log
    that is ours: never through a symbolic link, never to a FIFO or a device,
    never to a file another user owns or can write, or one with other hard
    links (root's crontab must not be turned into a tool to write anywhere).
    A new log is created 0600: with -v it holds systemctl's whole output."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK \
        | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        # O_NOFOLLOW met a link (ELOOP; EACCES in a sticky directory)
        if exc.errno in (errno.ELOOP, errno.EACCES) and os.path.islink(path):
            raise OutputError("it is a symbolic link")
        raise
    try:
        check_own_file(os.fstat(fd))
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            os.ftruncate(fd, size)  # a full disk leaves no half run behind
            raise
    finally:
        os.close(fd)


def check_own_file(info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise OutputError("not a regular file")
    if info.st_uid != os.geteuid():
        raise OutputError("owned by uid %d, not by this user" % info.st_uid)
    if info.st_mode & 0o022:
        raise OutputError("writable by group or others (mode %04o)"
                          % stat.S_IMODE(info.st_mode))
    if info.st_nlink != 1:
        raise OutputError("it has other hard links")


def same_file_still(path: str, seen: os.stat_result) -> bool:
    """Is `path` still the regular file `seen` described (same inode, size
    and time of change)?"""
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(seen.st_mode) and (now.st_dev, now.st_ino, now.st_size,
                                           now.st_mtime_ns) == (
        seen.st_dev, seen.st_ino, seen.st_size, seen.st_mtime_ns)


def write_file(path: str, text: str, like: Optional[os.stat_result] = None) -> None:
    """Replace a regular file whole, so that a reader never sees half a
    report: a fresh temporary file (mkstemp: unpredictable, O_EXCL) in the
    same directory, on disk (fsync) before it is renamed over the target.
    Anything else at the target (a link, a device such as /dev/null, a FIFO,
    a directory) is left alone. Written 0600 like the log (a page carries
    the same text: systemctl's output with -v, failure messages), or with
    the mode (and, as root, the owner) of `like`, the file it replaces."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(info.st_mode):
            raise OutputError("not a regular file" + (
                " (a symbolic link)" if stat.S_ISLNK(info.st_mode) else ""))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".svcctl-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)      # mkstemp made it 0600
            if like is not None:
                os.fchmod(handle.fileno(), stat.S_IMODE(like.st_mode) & 0o777)
                if os.geteuid() == 0:
                    os.fchown(handle.fileno(), like.st_uid, like.st_gid)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


SYSLOG_ADDRESS = "/dev/log"
SYSLOG_MAX = 4000       # characters of a line: syslog relays cut longer ones
TITLE_MAX = 200         # of the action and units in it


def syslog_line(report: Report) -> str:
    """One line a run: run id, user, action and units, exit code, each
    outcome's count, then each outcome's NodeSet, the worst first. At most
    SYSLOG_MAX, cut at the end: the exit code and the counts always survive,
    then the problems' nodes (the nodes that are ok go first)."""
    title = report.title()
    title = title if len(title) <= TITLE_MAX else title[:TITLE_MAX - 3] + "..."
    outcomes = sorted(report.outcomes.items(), key=lambda item: -SEVERITY[item[0]])
    line = "run %s by %s: %s on %d nodes: exit %d; %s; %s" % (
        report.run_id, report.user, title, len(report.nodes), report.exit_code(),
        ", ".join("%s %d" % (name, len(nodes)) for name, nodes in outcomes),
        "; ".join("%s: %s" % (name, nodes) for name, nodes in outcomes))
    return line if len(line) <= SYSLOG_MAX else line[:SYSLOG_MAX - 3] + "..."


def send_syslog(path: str, line: str, failed: bool) -> None:
    """With the standard library's syslog, facility user: info, or err when
    the exit code is not 0. No syslog socket is an error said on stderr
    (syslog(3) itself would drop the line silently)."""
    import syslog
    if not os.path.exists(path):
        raise OutputError("no syslog socket there")
    syslog.openlog(PROG, syslog.LOG_PID, syslog.LOG_USER)
    syslog.syslog(syslog.LOG_ERR if failed else syslog.LOG_INFO, line)
    syslog.closelog()


_RUN_ID_RE = Regex(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


class Skipped(list):
    """The log lines left out, said by file and line: the first ones kept,
    the others counted (a log of junk must not fill memory with messages)."""
    KEPT = 20

    def __init__(self):
        super().__init__()
        self.count = 0

    def add(self, path: str, number: int, why: str) -> None:
        self.count += 1
        if len(self) < self.KEPT:
            self.append("%s:%d: skipped: %s" % (printable(path), number,
                                                printable(why)[:200]))


# Which run a log line is of, found without parsing the line (a replay reads
# one run of a log of millions of lines): a cheap filter only, whatever the
# JSON's spacing (`jq -c` writes none); the line it lets through is parsed,
# and its parsed run_id is the one that counts.
_LOGGED_RUN_ID_RE = Regex(rb'"run_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"')


def logged_run_id(line: bytes) -> Optional[str]:
    """The run_id the filter finds in a log line (None: none), unparsed."""
    match = _LOGGED_RUN_ID_RE.search(line)
    return match.group(1).decode() if match else None
LOG_LINE_MAX = 1 << 20
RUN_LINES_MAX = 10 * MAX_NODES      # a run's lines read back: its nodes x units


def log_lines_of(handle) -> Iterable[Tuple[int, bytes]]:
    """(number, line) of a log, a line cut at LOG_LINE_MAX bytes (the rest of
    an overlong line is dropped: it will not parse)."""
    number = 0
    while True:
        line = handle.readline(LOG_LINE_MAX)
        if not line:
            return
        number += 1
        yield number, line
        while len(line) == LOG_LINE_MAX and not line.endswith(b"\n"):
            line = handle.readline(LOG_LINE_MAX)


def report_from_log(path: str, run_id: Optional[str] = None) -> Tuple[Report, Skipped]:
    """Rebuild a run's report from its log lines (the last run by default),
    and say which lines were skipped and why. Only that run is read into
    memory (a cron log grows); everything read back is checked again: names
    re-validated, text made printable."""
    try:
        if run_id is None:      # the last one: only it is kept, not every line's
            run_id = last_run_id(path)
        records: List[dict] = []
        skipped_lines = Skipped()
        with open_to_read(path) as handle:
            for number, line in log_lines_of(handle):
                found = logged_run_id(line)
                if found is not None and found != run_id:
                    continue            # another run's line: not read
                try:
                    if found is None:
                        raise ValueError("not an svcctl log line (no run_id)")
                    if len(records) >= RUN_LINES_MAX:   # a forged run: memory stays bounded
                        raise ValueError("more than %d lines in run %s" % (RUN_LINES_MAX,
                                                                           run_id))
                    record = read_log_record(line)
                    if record["run_id"] != run_id:
                        continue        # the filter's match was not its run_id
                    records.append(record)
                except (ValueError, TypeError, KeyError, UsageError) as exc:
                    skipped_lines.add(path, number, str(exc))
    except OSError as exc:
        raise UsageError("%s: cannot read: %s" % (printable(path), exc.strerror))
    if not records:
        raise UsageError("%s: %s" % (printable(path), "no svcctl run in this log"
                                     if run_id is None else "no run %s in this log"
                                     % printable(run_id)))
    return logged_report(records), skipped_lines


def last_run_id(path: str) -> Optional[str]:
    """The run_id of the log's last svcctl line: the filter finds the last
    line that may hold one, its parse says which it holds (the filter's
    match could be text inside a value of a line that is not svcctl's)."""
    candidates: List[bytes] = []
    with open_to_read(path) as handle:
        for _, line in log_lines_of(handle):
            if _LOGGED_RUN_ID_RE.search(line):
                candidates = (candidates + [line])[-RUN_ID_CANDIDATES:]
    for line in reversed(candidates):
        try:
            record = parse_log_line(line)
        except ValueError:
            continue
        run_id = record.get("run_id")
        if isinstance(run_id, str) and _RUN_ID_RE.fullmatch(run_id):
            return run_id
    return None


RUN_ID_CANDIDATES = 8       # the log's last lines that may name a run (1 MiB each at most)


SOME_OUTCOMES = ("problems", "all")      # besides each outcome's name


def outcome_nodes(report: Report, names: Sequence[str]) -> NodeSet:
    """The nodes of a run that had one of these outcomes (a node's is its
    worst unit's): an outcome's name, `problems` (every problem outcome) or
    `all`."""
    for name in names:
        if name not in OUTCOMES and name not in SOME_OUTCOMES:
            raise UsageError("unknown outcome %s (one of: %s)" % (
                printable(name), ", ".join(list(OUTCOMES) + list(SOME_OUTCOMES))))
    return fold(result.node for result in report.nodes
                if result.outcome in names or "all" in names
                or "problems" in names and OUTCOMES[result.outcome].problem)


class LastRun:
    """`@last:OUTCOME` on a command line: the nodes that had it in the last
    run of the log (--log, else svcctl.conf's), the log read once, when first
    named; each name said on `stderr` with the run it came from."""

    def __init__(self, path: Optional[str], stderr=None):
        self.path, self.stderr = path, stderr
        self.report: Optional[Report] = None
        self.named: Dict[str, NodeSet] = {}

    def __call__(self, name: str) -> NodeSet:
        if name not in self.named:
            try:
                nodes = outcome_nodes(self.read(), [name])
            except UsageError as exc:
                raise UsageError("@last:%s: %s" % (printable(name), exc))
            self.named[name] = nodes
            if self.stderr is not None:
                self.stderr.write("%s: @last:%s = %s (%d), from run %s of %s\n" % (
                    PROG, name, nodes or "no node", len(nodes), self.report.run_id,
                    iso_time(self.report.started)))
        return self.named[name]

    def read(self) -> Report:
        if self.report is None:
            if not self.path:
                raise UsageError("no log to read the last run from (--log FILE, or "
                                 "svcctl.conf's log)")
            # another user's log (its nodes someone else's choice), a link or
            # a device is refused before, as the run's --log (check_files)
            self.report = report_from_log(self.path)[0]
        return self.report


@dataclass
class History:
    """Runs of a log, node by node: each node's worst outcome in each run, a
    byte a cell (the outcome's index + 1; 0: not in that run), and the first
    problem's message of each problem cell (each text kept once)."""
    path: str
    runs: List[dict] = field(default_factory=list)  # id, time, title, user
    cells: Dict[str, bytearray] = field(default_factory=dict)
    messages: Dict[Tuple[str, int], str] = field(default_factory=dict)  # problems
    texts: Dict[str, str] = field(default_factory=dict)     # each message once

    @property
    def nodes(self) -> List[str]:
        return list(fold(self.cells))

    def outcome(self, node: str, run: int) -> Optional[str]:
        row = self.cells[node]
        return OUTCOME_TABLE[row[run] - 1].name if run < len(row) and row[run] else None


def read_history(path: str, since: Optional[float] = None,
                 last: Optional[int] = None) -> Tuple["History", Skipped]:
    """Every run of a log (since a time; the `last` runs only), as each node's
    worst outcome per run, and the first problem's message. Each line is
    parsed and then forgotten: memory holds the history, not the log (a log
    of 1,000 runs x 1,000 nodes is a million lines); a line is checked in full
    only when it opens a run or tells a problem. With `last`, the log is read
    twice: first which runs are the last ones (their ids only), then only
    their lines are parsed (what a console polls is 40 runs, not 20,000)."""
    history, skipped = History(printable(path)), Skipped()
    column_of: Dict[str, Optional[int]] = {}
    try:
        wanted = None if last is None else last_run_ids(path, last)
        with open_to_read(path) as handle:
            for number, line in log_lines_of(handle):
                if wanted is not None:
                    if logged_run_id(line) not in wanted:
                        continue        # an earlier run's line (or none's): not read
                try:
                    record = parse_log_line(line)
                    if wanted is not None and record.get("run_id") not in wanted:
                        continue
                    run_id, node, outcome = (record.get("run_id"), record.get("node"),
                                             record.get("outcome"))
                    # a node or run already in the history was checked then
                    if node not in history.cells:
                        check_node(node)
                    if not (run_id in column_of or _RUN_ID_RE.fullmatch(run_id)) \
                            or outcome not in OUTCOMES:
                        raise ValueError
                except (ValueError, TypeError, UsageError):
                    skipped.add(path, number, "not an svcctl log line")
                    continue
                if run_id not in column_of:
                    try:            # its first good line opens the run's column
                        column_of[run_id] = history_run(history, record, since)
                    except (ValueError, TypeError, KeyError, UsageError) as exc:
                        skipped.add(path, number, str(exc))
                        continue
                column = column_of[run_id]
                if column is not None:
                    history_cell(history, column, node, outcome, record)
    except OSError as exc:
        raise UsageError("%s: cannot read: %s" % (printable(path), exc.strerror))
    return history, skipped


def last_run_ids(path: str, count: int) -> Set[str]:
    """The ids of the log's last `count` runs (by the filter alone: a line
    it lets through that is not svcctl's costs a column, never a wrong one),
    memory bounded by `count`."""
    ids: Dict[str, None] = {}       # in the order last seen
    with open_to_read(path) as handle:
        for _, line in log_lines_of(handle):
            run_id = logged_run_id(line)
            if run_id is not None:
                ids.pop(run_id, None)
                ids[run_id] = None
                if len(ids) > count:
                    del ids[next(iter(ids))]
    return set(ids)


def history_run(history: "History", record: dict, since: Optional[float]) -> Optional[int]:
    """A new run's column (None: before --since); a bad line raises."""
    record = check_log_record(record)
    if since is not None and record["time"] < since:
        return None
    what = record["subject"] or ",".join(record["units"] or [])
    history.runs.append({"id": record["run_id"], "time": record["time"],
                         "title": record["action"] + (" " + what if what else ""),
                         "user": record["user"]})
    return len(history.runs) - 1


def history_cell(history: "History", column: int, node: str, outcome: str,
                 record: dict) -> None:
    row = history.cells.setdefault(node, bytearray())
    if len(row) <= column:
        row.extend(bytes(column + 1 - len(row)))
    worse = not row[column] or SEVERITY[outcome] > row[column] - 1
    if worse:
        row[column] = SEVERITY[outcome] + 1
    # the message of the outcome shown: a worse unit's replaces a milder one's
    if OUTCOMES[outcome].exit_code != EXIT_OK and worse:
        try:
            record = check_log_record(record)
        except (ValueError, TypeError, KeyError, UsageError):
            return
        text = (record["message"] or record["reason"] or record["answer"]).split("\n")[0]
        message = "%s: %s%s" % (record["unit"], outcome, ": " + text if text else "")
        # the same text on many nodes and runs is kept once
        history.messages[(node, column)] = history.texts.setdefault(message, message)


def parse_age(text: str) -> float:
    """--since: `7d`, `12h`, `30m`, or an ISO date; the time it means."""
    from datetime import datetime, timezone
    match = re.fullmatch(r"(\d{1,6})([dhm])", text.strip())
    if match:
        return time.time() - int(match.group(1)) * {"d": 86400, "h": 3600,
                                                     "m": 60}[match.group(2)]
    try:                        # a date without a zone is UTC, as the log's times
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError("--since takes 7d, 12h, 30m or a date, not %s" % printable(text))
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def logged_report(records: List[dict]) -> Report:
    first = records[0]
    nodes: Dict[str, NodeResult] = {}
    units: List[str] = []
    for record in records:
        unit = UnitResult(**{key: record[key] for key in UNIT_FIELDS})
        if unit.unit not in units:
            units.append(unit.unit)
        result = nodes.setdefault(record["node"], NodeResult(
            record["node"], [], record["reason"], record["duration"]))
        result.units.append(unit)
    return Report(first["action"], first["units"] if first["units"] is not None else [
                      u for u in units if ACTIONS[first["action"]].kind != "node"],
                  [nodes[n] for n in fold(nodes)], first["time"], first["elapsed"],
                  command=first["command"], user=first["user"], run_id=first["run_id"],
                  interrupted_by=first["interrupted_by"], notes=first["notes"],
                  subject=first["subject"], services=first["services"])


def read_log_record(line: bytes) -> dict:
    """One log line, checked field by field; ValueError says what is wrong."""
    return check_log_record(parse_log_line(line))


def parse_log_line(line: bytes) -> dict:
    """A log line's JSON object, not checked yet."""
    try:
        record = json.loads(line.decode("utf-8", "replace"))
    except RecursionError:
        raise ValueError("nested too deeply")
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def check_log_record(record: dict) -> dict:
    """A parsed log line, checked field by field; ValueError says what is wrong."""
    action = ACTIONS.get(record.get("action"))
    if action is None:
        raise ValueError("unknown action")
    run_id = _text(record, "run_id")
    if not _RUN_ID_RE.fullmatch(run_id):
        raise ValueError("bad run_id")
    unit = _text(record, "unit")
    if unit not in (step.unit for step in node_steps(action, [Step(unit)])) \
            or action.kind != "node" and normalise_unit(unit) != unit:
        raise ValueError("bad unit name")
    if record.get("outcome") not in OUTCOMES:
        raise ValueError("unknown outcome")
    interrupted = record.get("interrupted_by") or ""
    if interrupted and interrupted not in EXIT_FOR_SIGNAL:
        raise ValueError("bad interrupted_by")
    return {
        "run_id": run_id, "action": record["action"], "unit": unit,
        "node": check_node(_text(record, "node")), "outcome": record["outcome"],
        "before": _logged_state(record.get("before")),
        "after": _logged_state(record.get("after")),
        "rc": _number(record, "rc", int, 0, 255),
        "message": _text(record, "message", multiline=True),
        "answer": _text(record, "answer"), "service": _text(record, "service"),
        "declared": _text(record, "declared"), "drift": record.get("drift") is True,
        "journal": _text(record, "journal", multiline=True),
        "reason": _text(record, "reason"),
        "duration": _number(record, "duration", float, 0, 1e9),
        "time": _time(record.get("time")), "elapsed": _number(record, "elapsed", float,
                                                              0, 1e9) or 0.0,
        "command": _text(record, "command"), "user": _text(record, "user"),
        "subject": _text(record, "subject"), "interrupted_by": interrupted,
        "units": _names(record.get("units"), normalise_unit),
        "services": _names(record.get("services"), str) or [],
        "notes": _names(record.get("notes"), str) or [],
    }


def _text(record: dict, key: str, multiline: bool = False) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("%s is not text" % key)
    value = value[:LOG_TEXT_MAX]
    if multiline:
        return "\n".join(printable(line, keep_tabs=True) for line in value.split("\n"))
    return printable(value)


def _number(record: dict, key: str, kind, low: float, high: float):
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not low <= value <= high or (kind is int and not isinstance(value, int)):
        raise ValueError("bad %s" % key)
    return kind(value)


def _names(values, check) -> Optional[List[str]]:
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("a list of names expected")
    return [printable(check(value)) for value in values[:10000]]


def _logged_state(value) -> Optional[UnitState]:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("bad unit state")
    return UnitState.from_properties({key: printable(value[key][:STATE_VALUE_MAX])
                                      for key in STATE_KEYS if key in value})


def _time(value) -> float:
    from datetime import datetime
    try:
        stamp = datetime.fromisoformat(value).timestamp()
    except (TypeError, ValueError, OverflowError):
        raise ValueError("bad time")
    if not 0 <= stamp < 253402214400:       # shown again as a UTC date
        raise ValueError("bad time")
    return stamp


# =============================================================================
# Cluster file: load, validate, select services, plan their waves
# =============================================================================
# A YAML file (see cluster.example.yaml) declares groups and services:
#   groups:   {NAME: NODESET, ...}            usable as @NAME in this file
#   services: {NAME: {unit, nodes, state, enabled, requires, after}, ...}

FILE_KEYS = ("groups", "services")
SERVICE_KEYS = ("unit", "nodes", "state", "enabled", "requires", "after")
_NAME_RE = Regex(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*", re.ASCII)
FILE_MAX_ENTRIES = 1000         # services, and groups
FILE_NODE_BUDGET = 20           # all its NodeSets together: 20 x --max-nodes


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

    @property
    def declared(self) -> Declared:
        return Declared(self.name, self.state, self.enabled)


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

    def __init__(self, path: str, yaml, limit: int):
        self.path = path
        self.yaml = yaml
        self.limit = limit
        self.constructor = yaml.SafeLoader("")
        self.key_line: Dict[int, int] = {}      # id(value node) -> its key's line
        # every NodeSet of the file together: a small file must not name
        # millions of nodes in many groups (each costs memory and time)
        self.budget = FILE_NODE_BUDGET * limit

    def error(self, node, where: str, message: str) -> UsageError:
        return UsageError("%s:%d: %s: %s" % (printable(self.path),
                                             node.start_mark.line + 1, where, message))

    def mapping(self, node, where: str, allowed: Optional[Sequence[str]] = None) -> dict:
        if not isinstance(node, self.yaml.MappingNode):
            raise self.error(node, where, "must be a mapping")
        if len(node.value) > FILE_MAX_ENTRIES:
            raise self.error(node, where, "more than %d entries" % FILE_MAX_ENTRIES)
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
        try:
            value = self.constructor.construct_object(node) \
                if isinstance(node, self.yaml.ScalarNode) else node
        except (self.yaml.YAMLError, ValueError, KeyError, TypeError, OverflowError):
            # a tag that does not fit: !!int abc, !!bool maybe, !!timestamp 2001-13-45
            raise self.error(node, where, "must be %s" % what)
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
            self.spend(sum(pattern_size(p, self.budget) for p in patterns), node, where)
            nodes = parse_nodes(patterns, resolver=resolver, limit=self.limit)
        except UsageError as exc:
            raise self.error(node, where, str(exc))
        self.spend(len(nodes), node, where)
        return nodes

    def prescan(self, root) -> None:
        """Before any NodeSet is expanded: all the patterns of the file
        together must fit the budget (a 22 KB file could name 100 million)."""
        total = 0
        for node in self.yaml_scalars(root):
            try:
                total += pattern_size(node.value, self.budget - total)
            except UsageError:
                continue        # said with its line when the value is read
            if total > self.budget:
                raise self.error(node, "NodeSets", "the file names more than %d nodes in "
                                 "all (%d times --max-nodes)" % (
                                     self.budget, FILE_NODE_BUDGET))

    def yaml_scalars(self, node) -> Iterable:
        """Every scalar of the tree (aliases are refused: no node twice)."""
        stack = [node]
        while stack:
            node = stack.pop()
            if isinstance(node, self.yaml.ScalarNode):
                yield node
            elif isinstance(node, self.yaml.MappingNode):
                stack.extend(value for _, value in node.value)
            elif isinstance(node, self.yaml.SequenceNode):
                stack.extend(node.value)

    def spend(self, count: int, node, where: str) -> None:
        self.budget -= count
        if self.budget < 0:
            raise self.error(node, where, "the file names more than %d nodes in all "
                             "(%d times --max-nodes)" % (FILE_NODE_BUDGET * self.limit,
                                                         FILE_NODE_BUDGET))


def compose_yaml(path: str, text: str, yaml):
    """The YAML node tree, safely: no tags run, no aliases (a few of them can
    make a small file walk billions of nodes), bounded nesting."""
    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise UsageError("%s:%d: YAML: aliases are not allowed" % (
                    printable(path), event.start_mark.line + 1))
            return super().compose_node(parent, index)
    try:
        return yaml.compose(text, Loader=Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UsageError("%s:%s: YAML: %s" % (printable(path),
                                               mark.line + 1 if mark else "?",
                                               printable(str(getattr(exc, "problem", exc)))))
    except RecursionError:
        raise UsageError("%s: YAML: nested too deeply" % printable(path))


def load_cluster_file(path: str, limit: int = MAX_NODES) -> ClusterFile:
    """Load and validate a cluster file; any error is one UsageError naming
    the file, the line and the key. Nothing is contacted."""
    return parse_cluster_file(path, read_text_file(path), limit)


def parse_cluster_file(path: str, text: str, limit: int = MAX_NODES) -> ClusterFile:
    """The text of the cluster file at `path` (read, or about to be saved by
    the console's editor), validated as --check-config validates it."""
    import yaml     # here, not at the top: only cluster files need it (start-up time)
    root = compose_yaml(path, text, yaml)
    reader = _FileReader(path, yaml, limit)
    if root is None:
        raise UsageError("%s: empty file" % printable(path))
    top = reader.mapping(root, "top level", FILE_KEYS)
    reader.prescan(root)
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
        services[name] = read_service(reader, name, value, resolver)
    check_services(path, reader, services)
    return ClusterFile(path, groups, dependency_order(path, services))


def cluster_checked(cluster: ClusterFile) -> str:
    """What --check-config (and the console's editor) says of a valid file."""
    return "%s: ok, %d services, %d groups" % (printable(cluster.path), len(cluster.services),
                                               len(cluster.groups))


def read_service(reader: _FileReader, name: str, value, resolver) -> Service:
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
    return service


def check_services(path: str, reader: _FileReader, services: Dict[str, Service]) -> None:
    """One unit per node is declared once; dependencies exist."""
    by_unit: Dict[str, List[Service]] = {}
    for service in services.values():
        for other in by_unit.get(service.unit, []):
            if other.nodes & service.nodes:
                raise UsageError("%s:%d: services.%s: unit %s is already declared by "
                                 "service %s on %s" % (
                                     printable(path), service.line, service.name,
                                     service.unit, other.name,
                                     other.nodes & service.nodes))
        by_unit.setdefault(service.unit, []).append(service)
        for dep in service.requires + service.after:
            if dep not in services or dep == service.name:
                raise UsageError("%s:%d: services.%s: %s %s" % (
                    printable(path), service.line, service.name,
                    "depends on itself" if dep == service.name else "unknown service",
                    printable(dep)))


def dependency_order(path: str, services: Dict[str, Service]) -> List[Service]:
    """Services with each one after what it requires or follows; cycles refused."""
    order: List[Service] = []
    state: Dict[str, str] = {}
    for service in services.values():
        stack = [(service, iter(service.requires + service.after))]
        chain = [service.name]
        if state.get(service.name) == "done":
            continue
        state[service.name] = "open"
        while stack:        # depth first, without recursion (deep chains)
            current, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                stack.pop()
                chain.pop()
                state[current.name] = "done"
                order.append(current)
            elif state.get(dep) == "open":
                cycle = chain[chain.index(dep):] + [dep]
                raise UsageError("%s:%d: services.%s: dependency cycle: %s" % (
                    printable(path), services[dep].line, dep, " -> ".join(cycle)))
            elif state.get(dep) != "done":
                state[dep] = "open"
                chain.append(dep)
                stack.append((services[dep], iter(services[dep].requires
                                                  + services[dep].after)))
    return order


def select_services(cluster: ClusterFile, names: Sequence[str], reverse: bool,
                    with_deps: bool = True) -> List[Service]:
    """The named services (all if none) and, unless told not to, what they
    require (or, tearing down, what requires them), in dependency order."""
    known = {s.name for s in cluster.services}
    for name in names:
        if name not in known:
            raise UsageError("%s: unknown service %s" % (printable(cluster.path),
                                                         printable(name)))
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
    ordered = list(reversed(services)) if action.reverse else list(services)
    deps = service_dependencies(action, services)
    wave_of: Dict[str, int] = {}
    for service in ordered:
        wave_of[service.name] = max([0] + [
            wave_of[dep] + (0 if nodes_of[service.name] <= nodes_of[dep] else 1)
            for dep, _ in deps[service.name]])
    total = max(wave_of.values(), default=-1) + 1
    failed: set = set()
    interrupted = ""
    for number in range(total):
        members = [s for s in ordered if wave_of[s.name] == number and nodes_of[s.name]]
        decided: Dict[str, List[UnitResult]] = {}
        runnable = []
        for service in members:
            # a requirement that failed in an earlier wave, or was skipped in
            # this one (ordered before it), blocks; one that runs in this wave
            # is checked on each node by the node's script
            blocking = [d for d, strong in deps[service.name] if strong and d in failed]
            if blocking or interrupted:
                failed.add(service.name)
                reason = "interrupted before its wave" if interrupted else \
                    "requires %s, which failed" % ", ".join(blocking)
                for node in nodes_of[service.name]:
                    decided.setdefault(node, []).append(judge_skipped(
                        Step(service.unit, declared=service.declared), reason))
            else:
                runnable.append(service)
        results, interrupted = yield Wave(
            wave_jobs(runnable, deps, nodes_of),
            [NodeResult(node, units) for node, units in decided.items()],
            number=number + 1, total=total, kind="wave")
        for service in runnable:
            for node in nodes_of[service.name]:
                result = results.get(node)
                if result and any(u.unit == service.unit and OUTCOMES[u.outcome].problem
                                  for u in result.units):
                    failed.add(service.name)


def service_dependencies(action: Action, services: Sequence[Service]
                         ) -> Dict[str, List[Tuple[str, bool]]]:
    """For each service, what must run before it in this action, and whether
    that is a requirement (strong) or ordering only. Queries have none."""
    selected = {s.name for s in services}
    deps: Dict[str, List[Tuple[str, bool]]] = {s.name: [] for s in services}
    if action.kind not in ("change", "apply"):
        return deps
    for service in services:
        for dep, strong in [(d, True) for d in service.requires] + \
                [(d, False) for d in service.after]:
            if dep in selected:
                first, then = (service.name, dep) if action.reverse else (dep, service.name)
                deps[then].append((first, strong))
    return deps


def wave_jobs(runnable: Sequence[Service], deps: Dict[str, List[Tuple[str, bool]]],
              nodes_of: Dict[str, NodeSet]) -> List[Job]:
    """One job per set of nodes that run the same steps in this wave."""
    services_on: Dict[str, List[Service]] = {}     # (not `node in NodeSet`: a
    for service in runnable:                        # parse per node and service)
        for node in nodes_of[service.name]:
            services_on.setdefault(node, []).append(service)
    by_steps: Dict[Tuple[Step, ...], List[str]] = {}
    for node in fold(services_on):
        steps: List[Step] = []
        index_of: Dict[str, int] = {}
        for service in services_on[node]:
            requires = tuple(index_of[d] for d, strong in deps[service.name]
                             if strong and d in index_of)
            index_of[service.name] = len(steps)
            steps.append(Step(service.unit, requires, service.declared))
        by_steps.setdefault(tuple(steps), []).append(node)
    return [Job(fold(nodes), steps) for steps, nodes in by_steps.items()]


# =============================================================================
# Command line: options, site defaults, outputs, one error handler
# =============================================================================

EXAMPLES = """\
examples:
  svcctl start httpd node[1-8]            start httpd.service on 8 nodes
  svcctl status demo,web @web -x node3    two units on group @web but node3
  svcctl -w @web -x node3 status demo     the same, clush's way
  svcctl restart httpd @web --batch 25%   rolling restart, a quarter at a time
  svcctl start httpd @web --settle 5      and watch 5 s that it stays up
  svcctl is-active sshd @all -qq          nothing printed unless a node says no
  svcctl list-units --failed @all         the morning check
  svcctl cat httpd @web --diff            which nodes' unit files differ
  svcctl status /home @all                a path means its unit (home.mount)
  svcctl ping @all                        which nodes answer
  svcctl --dry-run stop demo node[1-4]    show the remote command, run nothing
  svcctl -c cluster.yaml status           a cluster file: states and drift
  svcctl -c apply                         /etc/svcctl/cluster.yaml, applied
  svcctl report run.log --html page.html  a logged run as an HTML page
  svcctl gui --log run.log                a web console on 127.0.0.1:8765

exit codes: 0 ok, 1 failed, 2 usage, 3 query answered no, 4 unreachable or
timed out, 129 hung up, 130 interrupted, 143 terminated.
"""
DEFAULT_CLUSTER_FILE = "/etc/svcctl/cluster.yaml"
COMMAND_WORDS = ["report", "gui"]      # in the ACTION's place, but not runs


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line through svcctl's handler."""

    def error(self, message):
        raise UsageError(message + " (see svcctl --help)")


class _Refused(argparse.Action):
    """A systemctl habit svcctl cannot honour: stop, and say what to type."""

    def __init__(self, option_strings, dest, hint="", **kwargs):
        kwargs.setdefault("nargs", 0)
        super().__init__(option_strings, dest, **kwargs)
        self.hint = hint

    def __call__(self, parser, namespace, values, option_string=None):
        raise UsageError("%s: %s" % (option_string, self.hint))


def _typed(kind, hint: str):
    """An option type whose error says what the option is (and is not)."""
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%s, not %s" % (hint, printable(text)))
    return convert


VERSION_LINE = "%s %s" % (PROG, __version__)       # --version's answer


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="systemctl for a whole cluster: run one systemd "
        "action on every node of a NodeSet over SSH and print one grouped answer.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", metavar="ACTION", nargs="?",
                        help="; ".join("%s: %s" % (a.name, a.help) for a in ACTION_TABLE)
                        + "; report LOGFILE: show a logged run again; gui: a web "
                        "console on this machine (--listen)")
    parser.add_argument("targets", metavar="UNIT[,UNIT...] NODESET", nargs="*",
                        help="units (not for daemon-reload, ping, list-units), then "
                        "NodeSets (unless given by -w, -g, -a, --hostfile); with -c: "
                        "service names")
    _node_options(parser.add_argument_group("choosing nodes, as clush does"))
    _connection_options(parser.add_argument_group("connection"))
    _action_options(parser.add_argument_group("the action"))
    _output_options(parser.add_argument_group("output"))
    _file_options(parser.add_argument_group("cluster file"))
    _console_options(parser.add_argument_group("web console (svcctl gui)"))
    _habit_options(parser.add_argument_group(
        "systemctl's options: each does what a systemctl user means, or stops"))
    parser.add_argument("--version", action="version", version=VERSION_LINE)
    return parser


def _node_options(group) -> None:
    add = group.add_argument
    add("-w", dest="where", action="append", default=[], metavar="NODESET",
        help="nodes to run on (the NodeSets are then not given after the units)")
    add("-x", "--exclude", action="append", default=[], metavar="NODESET",
        help="exclude these nodes")
    add("-g", "--group", dest="groups", action="append", default=[], metavar="GROUP",
        help="run on this ClusterShell group")
    add("-X", dest="exclude_groups", action="append", default=[], metavar="GROUP",
        help="exclude this group")
    add("-a", "--all", action="store_true", help="run on all nodes (the group source's)")
    add("-s", "--groupsource", metavar="SOURCE", type=_typed(
        _source_name, "-s takes a group source name"), help="group source for -g, -X, -a, "
        "@GROUP and -r")
    add("--hostfile", "--machinefile", dest="hostfiles", action="append", default=[],
        metavar="FILE", help="nodes from a file, one or more a line (- reads stdin)")
    add("--pick", type=_typed(int, "--pick takes a number of nodes"), metavar="N",
        help="pick N nodes at random among those chosen")
    add("--max-nodes", type=_typed(int, "--max-nodes takes a number"), metavar="N",
        help="refuse NodeSets of more nodes (default %d)" % MAX_NODES)


def _connection_options(group) -> None:
    add = group.add_argument
    add("-f", "--fanout", type=_typed(int, "-f is clush's fanout, a number of nodes "
                                           "(systemctl's --force is not supported)"),
        help="nodes contacted at once (clush.conf, 64)")
    add("-t", "--connect-timeout", metavar="SECONDS",
        type=_typed(float, "-t is clush's connect timeout in seconds (systemctl's "
                           "--type is not supported)"),
        help="ssh connect timeout (clush.conf, 10)")
    add("-u", "--command-timeout", metavar="SECONDS",
        type=_typed(float, "-u takes a number of seconds"),
        help="per-node bound for the whole run, 0 for none (default 300)")
    add("-l", "--login", dest="user", metavar="USER",
        help="ssh login user (clush's -l; give it before the ACTION)")
    add("-o", "--ssh-options", metavar="OPTIONS", help="extra ssh options")
    add("--sudo", action="store_const", const=True,
        help="run systemctl through `sudo -n` (never prompts for a password)")
    add("--persist", action="store_const", const=True,
        help="keep ssh connections open between runs (OpenSSH ControlPersist)")
    add("--persist-for", type=_typed(int, "--persist-for takes a number of seconds"),
        metavar="SECONDS", help="with --persist: how long an idle connection stays "
        "open (600)")


def _action_options(group) -> None:
    add = group.add_argument
    add("--now", action="store_true", help="with enable, disable, mask: also start/stop")
    add("--settle", type=_typed(float, "--settle takes a number of seconds"),
        metavar="SECONDS", help="after starting units, watch them this long: one that "
        "dies or keeps restarting is failed (default 0: read once, a quarter second "
        "after systemctl returns)")
    add("--journal", type=_typed(int, "--journal takes a number of lines"), default=5,
        metavar="N", help="each failed unit comes with the last N lines of that run "
        "from the node's journal, folded across nodes (default 5; 0: none)")
    add("--batch", metavar="COUNT", help="rolling: act on COUNT nodes at a time (N or N%%)")
    add("--max-fail", metavar="COUNT",
        help="with --batch: stop before the next batch once more nodes failed")
    add("--batch-wait", type=_typed(float, "--batch-wait takes a number of seconds"),
        metavar="SECONDS", help="with --batch: pause between batches")
    add("-p", "--property", dest="properties", action="append", default=[],
        metavar="PROP[,PROP]", help="with show: the properties to show; with journal: "
        "--priority (journalctl's -p)")
    add("--failed", action="store_true", help="with list-units: the failed units")
    add("--state", metavar="STATE", help="with list-units: units in this state")
    add("--diff", action="store_true",
        help="with cat: show how each node differs from the most common version")
    add("--lines", type=_typed(int, "--lines takes a number of lines"), metavar="N",
        help="with journal: the last N lines of each unit (default 10)")
    add("--until", metavar="TIME", help="with journal: lines before TIME (journalctl's)")
    add("--grep", metavar="RE", help="with journal: lines matching RE (journalctl's)")
    add("--priority", metavar="PRIORITY", help="with journal: lines of this priority or "
        "more urgent (err, warning..., or a range err..warning)")
    add("--boot", action="store_true", help="with journal: lines of this boot only")
    add("--mask", action="store_true", help="with journal: mask numbers, addresses and "
        "ids, so that lines that differ only there fold (the distinct values counted)")
    add("--raw", action="store_true", help="with journal: lines as journalctl prints "
        "them (times, hosts, PIDs kept: they will not fold)")
    add("--compare", metavar="NODESET", help="with journal: also read these nodes, and "
        "show first the lines that only the other nodes have")
    add("--dry-run", action="store_true",
        help="show the plan in words (-v: and the remote commands), contact nothing; "
        "apply --dry-run reads the states (one status query) and says what it would "
        "change")


def _output_options(group) -> None:
    add = group.add_argument
    add("-q", "--quiet", action="count", default=0,
        help="only problems and the summary; -qq: nothing at all when all is well "
        "(report --history -qq: no text at all, for --html from cron)")
    add("-v", "--verbose", action="store_true", help="show systemctl's own output")
    add("-b", dest="gather", action="store_true",
        help="gather identical results (always done; accepted for clush's habit)")
    add("-L", dest="line_mode", action="store_true",
        help="one line per node and unit, by node: `node1: demo.service: active`")
    add("-r", "--regroup", action="store_true",
        help="name nodes by their ClusterShell groups (@web) where groups match")
    add("--json", action="store_true", help="print one JSON document")
    add("--log", metavar="FILE", help="append one JSON line per node and unit")
    add("--html", metavar="FILE", help="write a self-contained HTML report")
    add("--syslog", action="store_const", const=True,
        help="send a one-line summary to syslog")
    add("--run", metavar="ID", help="with report: which logged run (default: the last)")
    add("--history", action="store_true", help="with report: every run of the log, "
        "nodes with the same story folded (problems only; -v: every node; -L: one line "
        "per node; --html: a story x run matrix)")
    add("--since", metavar="AGE", help="with report --history: runs since 7d, 12h, "
        "30m or a date; with journal: lines since then (or any journalctl --since)")
    add("--color", choices=("auto", "always", "never"),
        help="colour (auto: on a terminal, unless NO_COLOR or TERM=dumb; "
        "CLICOLOR_FORCE forces it)")
    add("-O", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="set a svcctl.conf key for this run")


def _file_options(group) -> None:
    add = group.add_argument
    add("-c", "--config", nargs="?", const="", metavar="FILE",
        help="cluster file: act on its services (all, or those named); without "
        "FILE: %s" % DEFAULT_CLUSTER_FILE)
    add("-n", "--nodes", action="append", default=[], metavar="NODESET",
        help="with -c: only these nodes; with report: --nodes OUTCOME[,OUTCOME] "
        "prints the run's NodeSet of these outcomes (problems, all too), exit 1 if none; "
        "with journal, -n N is --lines N (journalctl's)")
    add("--no-deps", action="store_true",
        help="with -c: only the named services, not what they depend on")
    add("--check-config", action="store_true",
        help="with -c: validate the file, contact nothing")


def _console_options(group) -> None:
    add = group.add_argument
    add("--listen", metavar="ADDR:PORT", help="with gui: where to listen (default "
        "127.0.0.1:8765; port 0: any free port)")
    add("--allow-remote", action="store_true", help="with gui: accept a --listen address "
        "that is not loopback (plain HTTP: put TLS and a login in front)")


def _habit_options(group) -> None:
    add = group.add_argument
    add("--no-pager", action="store_true", help="accepted: svcctl never pages")
    add("--full", action="store_true", help="accepted: svcctl never cuts lines "
        "(systemctl's -l: put it as --full, -l is clush's login user)")
    add("--user", action=_Refused, hint="svcctl acts on the system manager; systemctl's "
        "per-user manager is not supported (the ssh login user is -l USER or "
        "--login USER)", help="refused: see the message")
    add("--no-block", action=_Refused, hint="svcctl waits for each job, to report what "
        "happened; bound the wait with -u SECONDS", help="refused: see the message")
    add("-H", "--host", action=_Refused, nargs=1, hint="svcctl reaches the nodes "
        "itself: name them as a NodeSet (svcctl ACTION UNIT NODE, or -w NODE)",
        help="refused: see the message")


# --- site defaults: /etc/svcctl/svcctl.conf, ~/.config/svcctl, $SVCCTL_CONF --

def _yes_no(text: str) -> bool:
    if text.lower() in ("yes", "true", "on", "1"):
        return True
    if text.lower() in ("no", "false", "off", "0"):
        return False
    raise ValueError("yes or no, not %s" % printable(text))


def _choice(*choices: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in choices:
            raise ValueError("one of %s, not %s" % (", ".join(choices), printable(text)))
        return text
    return check


def _count_text(text: str) -> str:
    parse_count(text, 100, "a count")
    return text


def _node_count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError("a number of nodes, not %s" % printable(text))
    return int(text)


def _path_text(text: str) -> str:
    if not text or "\x00" in text:
        raise ValueError("a file path")
    return text


def _source_name(text: str) -> str:
    if not re.fullmatch(_SOURCE, text, re.ASCII):
        raise ValueError("invalid group source %s" % printable(text))
    return text


# key: (option dest, check). A key sets the option's default; the command
# line wins.
SITE_KEYS: Dict[str, Tuple[str, Callable[[str], object]]] = {
    "fanout": ("fanout", lambda t: check_fanout(int(t))),
    "connect_timeout": ("connect_timeout", lambda t: check_seconds(float(t))),
    "command_timeout": ("command_timeout", lambda t: check_seconds(float(t))),
    "user": ("user", check_user),
    "ssh_options": ("ssh_options", check_ssh_options),
    "sudo": ("sudo", _yes_no),
    "persist": ("persist", _yes_no),
    "persist_for": ("persist_for", int),
    "settle": ("settle", lambda t: check_seconds(float(t), "settle")),
    "batch": ("batch", _count_text),
    "batch_wait": ("batch_wait", lambda t: check_seconds(float(t), "batch_wait")),
    "max_fail": ("max_fail", _count_text),
    "max_nodes": ("max_nodes", int),
    "groupsource": ("groupsource", _source_name),
    "log": ("log", _path_text),
    "html": ("html", _path_text),
    "syslog": ("syslog", _yes_no),
    "color": ("color", _choice("auto", "always", "never")),
    "cluster_file": ("cluster_file", _path_text),
    "confirm_nodes": ("confirm_nodes", _node_count),    # the console asks above it
}
BUILT_IN = {"settle": 0.0, "batch_wait": 0.0, "max_nodes": MAX_NODES, "persist_for": 600,
            "color": "auto", "sudo": False, "persist": False, "syslog": False,
            "cluster_file": DEFAULT_CLUSTER_FILE, "confirm_nodes": 10}


def site_config_paths() -> List[str]:
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(
        os.path.expanduser("~"), ".config")
    paths = ["/etc/svcctl/svcctl.conf", os.path.join(config_home, "svcctl",
                                                    "svcctl.conf")]
    return paths + ([os.environ["SVCCTL_CONF"]] if os.environ.get("SVCCTL_CONF") else [])


def read_site_config(paths: Sequence[str], overrides: Sequence[str]) -> Dict[str, object]:
    """The keys of the site's files, later ones winning, then -O KEY=VALUE.
    Unknown keys and bad values: one line naming the file and the line."""
    values: Dict[str, object] = {}
    for index, path in enumerate(paths):
        if not os.path.exists(path) and index < 2:
            continue                # the standard places are optional, $SVCCTL_CONF not
        for number, line in enumerate(read_text_file(path).split("\n"), 1):
            line = without_comment(line)
            if not line or line[0] in "#;" or line == "[svcctl]":
                continue
            key, value = re.split(r"\s*[=:]\s*", line, 1) if re.search("[=:]", line) \
                else (line, None)
            where = "%s:%d" % (printable(path), number)
            if value is None:
                raise UsageError("%s: expected KEY = VALUE" % where)
            values[key] = site_value(key, value, where)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError("-O %s: expected KEY=VALUE" % printable(item))
        values[key.strip()] = site_value(key.strip(), value.strip(), "-O")
    return values


_UNTIL_COMMENT_RE = Regex(r"""(?:'[^']*'|"[^"]*"|[^\s'"]+|\s+(?!#))*""")


def without_comment(line: str) -> str:
    """A line of svcctl.conf without its comment, as sh reads one: `#` at the
    start of a line or after a blank, outside quotes (`ssh_options =
    -oProxyCommand="nc %h 22 #x"` keeps its `#`). After an unclosed quote
    nothing is cut: the value is checked whole. -O values are never cut."""
    kept = _UNTIL_COMMENT_RE.match(line).group()
    rest = line[len(kept):]
    return (kept if not rest or rest.lstrip().startswith("#") else line).strip()


def site_value(key: str, text: str, where: str) -> object:
    if key not in SITE_KEYS:
        raise UsageError("%s: unknown key %s (known: %s)" % (
            where, printable(key), ", ".join(SITE_KEYS)))
    try:
        return SITE_KEYS[key][1](text)
    except (ValueError, UsageError) as exc:
        raise UsageError("%s: %s: %s" % (where, key, printable(str(exc))))


# Site keys that go with some commands only: they apply where they fit, and
# are left out elsewhere (never an error for a command that did not ask).
RUN_ONLY_KEYS = ("log", "html", "syslog", "batch", "batch_wait", "max_fail")


def apply_site_defaults(args: argparse.Namespace) -> None:
    """Options not given on the command line take -O's values, then the
    site's, then svcctl's own (clush.conf's are read with the connection
    settings). -O KEY=VALUE is the option typed: it applies where the option
    would, or is refused where it would be. A site's log, html, syslog and
    rolling keys are for runs: not for report or --check-config, nor for a
    cluster file's waves (batch, max_fail); its max_fail goes with a batch,
    the site's or the command line's. Only the key itself is ever shadowed."""
    site = read_site_config(site_config_paths(), ())
    typed = read_site_config((), args.overrides)
    if args.action == "report" or args.check_config:
        site = {k: v for k, v in site.items() if k not in RUN_ONLY_KEYS}
    if args.config is not None:
        site = {k: v for k, v in site.items() if k not in ("batch", "max_fail")}
    typed_max_fail = args.max_fail is not None or "max_fail" in typed
    for key, (dest, _) in SITE_KEYS.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, typed.get(key, site.get(key, BUILT_IN.get(key))))
    if args.batch is None and not typed_max_fail:
        args.max_fail = None        # a site's max_fail is for its rolling runs


# --- reading the command line ------------------------------------------------

# A short option cluster that ends in -l: the flags before it take no value.
_LOGIN_WORD_RE = Regex(r"-[bvqLra]*l", re.ASCII)


def check_habits(argv: Sequence[str], parser: argparse.ArgumentParser) -> None:
    """`svcctl status -l httpd node1`: a systemctl user's -l (--full) would
    be read as clush's login user: stop, and say what to type instead. Where
    the ACTION stands is asked of the parser itself (abbreviations, -c's
    optional FILE): a -l after it is systemctl's."""
    for index, word in enumerate(argv):
        if word == "--":
            return
        if _LOGIN_WORD_RE.match(word) and action_before(argv[:index], parser):
            raise UsageError("-l after the ACTION: systemctl's -l (--full) is what svcctl "
                             "always does, drop it; for the ssh login user, put -l USER "
                             "before the ACTION or use --login USER")


def action_before(words: Sequence[str], parser: argparse.ArgumentParser) -> bool:
    try:
        args, _ = parser.parse_known_intermixed_args(list(words))
    except UsageError:
        return False
    return args.action is not None or args.config in list(ACTIONS) + COMMAND_WORDS


def prepared_words(argv: Sequence[str]) -> List[str]:
    """Two places where argparse and a clush user part ways, before parsing:
    `-o -oKey=Value` (clush takes the next word whatever it looks like; argparse
    reads it as an option unless it is joined to its flag), and `-f--` or
    `--log=--` (argparse turns that value into a list, which nothing expects,
    even after a `--`: it reads options there too)."""
    for word in argv:
        if word.startswith("-") and word.endswith("--") and (
                word.endswith("=--") or not word.startswith("--")):
            raise UsageError("%s: -- is not a value (it ends the options)" % printable(word))
    words, rest = [], list(argv)
    while rest and rest[0] != "--":
        word = rest.pop(0)
        if word in ("-o", "--ssh-options") and rest and rest[0].startswith("-") \
                and rest[0] != "--":
            word = "--ssh-options=" + rest.pop(0)
        words.append(word)
    return words + rest


def read_command_line(argv: Sequence[str]) -> argparse.Namespace:
    if list(argv) == ["--version"]:
        # answered before the parser is built (a tenth of svcctl's start),
        # as argparse answers it: on stdout, then exit 0
        sys.stdout.write(VERSION_LINE + "\n")
        raise SystemExit(EXIT_OK)
    parser = build_parser()
    argv = prepared_words(argv)
    check_habits(argv, parser)
    args = parser.parse_intermixed_args(argv)
    # `-c status`: -c took the ACTION for its FILE; it means the default file
    if args.config and args.config in list(ACTIONS) + COMMAND_WORDS \
            and not os.path.exists(args.config):
        if args.action is not None:
            args.targets.insert(0, args.action)
        args.action, args.config = args.config, ""
    if args.action is not None and args.action not in list(ACTIONS) + COMMAND_WORDS:
        raise UsageError("unknown ACTION %s (one of: %s)" % (
            printable(args.action), ", ".join(list(ACTIONS) + COMMAND_WORDS)))
    if args.action == "journal":
        take_journalctl_habits(args)
    apply_site_defaults(args)
    if args.config == "":
        args.config = args.cluster_file
    for option, value in (("--log", args.log), ("--html", args.html)):
        if value == "":             # `--log "$LOG"` with LOG unset, in a crontab
            raise UsageError("%s needs a file name" % option)
    check_files(args)
    if args.regroup:
        check_group_source(args.groupsource)
    return args


def take_journalctl_habits(args: argparse.Namespace) -> None:
    """`svcctl journal -p err -n 20`: journalctl's -p (priority) and -n
    (lines) mean what they mean there; elsewhere -p is show's property and -n
    a cluster file's nodes."""
    if args.properties:
        if args.priority is not None or len(args.properties) > 1:
            raise UsageError("journal: give the priority once (-p or --priority)")
        args.priority, args.properties = args.properties[0], []
    counts = [value for value in args.nodes if value.isdigit()]
    if counts:
        if args.lines is not None or len(counts) > 1:
            raise UsageError("journal: give the number of lines once (-n or --lines)")
        args.lines = int(counts[0])
        args.nodes = [value for value in args.nodes if not value.isdigit()]


def check_files(args: argparse.Namespace) -> None:
    """Before anything runs: where --log and --html would be refused at the
    end (no directory, a link, a device, another user's log), and an output
    that would replace one of the run's own inputs or the other output."""
    inputs = [("-c", args.config)] + [("--hostfile", p) for p in args.hostfiles
                                       if p != "-"]
    if args.action == "report" and args.targets:
        inputs.append(("LOGFILE", args.targets[0]))
    seen = [(option, path) for option, path in inputs if path]
    for option, path in (("--log", args.log), ("--html", args.html)):
        if not path:
            continue
        check_output_target(option, path)
        for other, known in seen:
            if _same_file(path, known):
                raise UsageError("%s %s is also %s: it would be overwritten"
                                 % (option, printable(path), other))
        seen.append((option, path))


def check_output_target(option: str, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError("%s %s: no directory %s" % (option, printable(path),
                                                     printable(directory)))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError("%s %s: cannot write in %s" % (option, printable(path),
                                                        printable(directory)))
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError("%s %s: %s" % (option, printable(path), exc.strerror))
    try:
        if stat.S_ISLNK(info.st_mode):
            raise OutputError("it is a symbolic link")
        if option == "--log":
            check_own_file(info)
        elif not stat.S_ISREG(info.st_mode):
            raise OutputError("not a regular file")
    except OutputError as exc:
        raise UsageError("%s %s: %s" % (option, printable(path), exc))


def _same_file(path: str, other: str) -> bool:
    try:
        return os.path.realpath(path) == os.path.realpath(other) or \
            os.path.samefile(path, other)
    except (OSError, ValueError):
        return False


def check_group_source(source: Optional[str]) -> None:
    """-r names nodes by the groups of a source: one that is not there (or a
    groups.conf that does not parse) is said now, not after the run."""
    try:
        sources = std_group_resolver().sources()
    except Exception as exc:    # noqa: BLE001 -- configparser's, ClusterShell's
        raise UsageError("ClusterShell groups: %s" % printable(str(exc)))
    if source and source not in sources:
        raise UsageError("-r: no group source %s (there are: %s)" % (
            printable(source), ", ".join(sources) or "none"))


def dry_run(request: Request) -> str:
    """The plan in words, wave by wave (-v: and every remote command it would
    send); nothing contacted (the same plan as the real run drives it)."""
    protocol = request.protocol("@@svcctl-DRYRUN")
    out = [render_dry_run(protocol, request.nodes, request.connection(create=False))]
    deps = service_dependencies(request.action, request.services) \
        if request.by_service else {}

    def perform(wave: Wave, interrupted: str) -> Tuple[Dict[str, NodeResult], str]:
        out.append(render_wave(request.action, wave, deps, request.now, request.max_fail))
        if request.display.verbose:
            out.extend("%s %d, %s (%d):\n%s\n" % (wave.kind, wave.number, job.nodes,
                                                  len(job.nodes),
                                                  remote_command(protocol, job.steps))
                       for job in wave.jobs)
        return {}, ""
    drive_plan(request.plan(), perform, {}, [])
    return "".join(out)


def apply_query(request: Request) -> Request:
    """apply --dry-run's only contact: a status query of the same units."""
    return replace(request, action=ACTIONS["status"], dry_run=False)


def dry_apply(request: Request, observer: Optional[Observer] = None) -> Tuple[str, int]:
    """apply --dry-run: one status query reads the states (the only contact),
    then says what apply would change where; changes nothing. The exit code
    is the query's problems' (unreachable 4, not found 1), else 0."""
    report = start(apply_query(request), observer)
    problems = [name for name in report.outcomes if OUTCOMES[name].problem]
    code = OUTCOMES[worst(problems)].exit_code if problems else EXIT_OK
    if report.interrupted_by:
        code = report.exit_code()
    return render_would_do(report, {s.name: s.declared for s in request.services}), code


def show_logged_run(args: argparse.Namespace, stdout, stderr) -> int:
    """svcctl report LOGFILE: a logged run again, as it was shown."""
    if len(args.targets) != 1:
        raise UsageError("report needs one LOGFILE")
    if args.log or args.syslog:
        raise UsageError("report reads a log: --log and --syslog do not go with it")
    if args.since and not args.history:
        raise UsageError("--since goes with --history")
    if args.nodes:
        if args.history or args.html or args.json:
            raise UsageError("report --nodes prints a NodeSet only: --history, --html "
                             "and --json do not go with it")
        report, skipped_lines = report_from_log(args.targets[0], args.run)
        say_skipped(skipped_lines, stderr)
        nodes = outcome_nodes(report, [name.strip() for names in args.nodes
                                       for name in names.split(",")])
        stdout.write("%s\n" % nodes if nodes else "")
        return EXIT_OK if nodes else EXIT_FAILED     # as grep: 1, none
    if args.history:
        history, skipped_lines = read_history(args.targets[0], parse_age(args.since)
                                              if args.since else None)
        say_skipped(skipped_lines, stderr)
        if args.quiet < 2:      # -qq: the page only (cron mails no text)
            stdout.write(render_history_text(history, args.verbose,
                                             per_node=args.line_mode))
        code = publish_files([(args.html, lambda path: write_file(
            path, render_history_html(history)))], stderr)
        return worse_exit(code, EXIT_FAILED if skipped_lines.count else EXIT_OK)
    report, skipped_lines = report_from_log(args.targets[0], args.run)
    say_skipped(skipped_lines, stderr)
    display = Display(args.verbose, args.quiet, use_color(args.color, stdout), args.json,
                      args.line_mode, (args.groupsource or "") if args.regroup else None)
    groups = site_groups(fold(r.node for r in report.nodes), args.groupsource)
    code = publish(report, display, [(args.html, lambda path: write_file(
        path, render_html(report, groups)))], stdout, stderr)
    return worse_exit(code, EXIT_FAILED if skipped_lines.count else EXIT_OK)


def say_skipped(skipped: Skipped, stderr) -> None:
    for line in skipped:
        stderr.write("%s: %s\n" % (PROG, line))
    if skipped.count > len(skipped):
        stderr.write("%s: %d more lines skipped\n" % (PROG, skipped.count - len(skipped)))


def publish(report: Report, display: Display, outputs: Sequence[Tuple[Optional[str],
            Callable[[str], None]]], stdout, stderr) -> int:
    """Write the files first (the log is what cron keeps), then the terminal
    output; whatever fails is said on stderr and makes the exit code 1, and
    never stops the other outputs."""
    code = publish_files(outputs, stderr)
    if display.json:
        for chunk in json_chunks(report):
            stdout.write(chunk)
    else:
        stdout.write(render_text(report, display))
    stdout.flush()
    return code


def publish_files(outputs: Sequence[Tuple[Optional[str], Callable[[str], None]]],
                  stderr) -> int:
    code = EXIT_OK
    for path, write in outputs:
        if not path:
            continue
        try:
            write(path)
        except (OSError, OutputError) as exc:
            stderr.write("%s: cannot write %s: %s\n" % (
                PROG, printable(path), printable(str(getattr(exc, "strerror", None)
                                                     or exc))))
            code = EXIT_FAILED
        except Exception as exc:    # noqa: BLE001 -- a bug must not lose the rest
            stderr.write("%s: internal error writing %s: %s\n" % (
                PROG, printable(path), printable(repr(exc))[:300]))
            code = EXIT_FAILED
    return code


def run_outputs(request: Request, report: Report) -> List[Tuple[Optional[str],
                                                                 Callable[[str], None]]]:
    return [(request.log, lambda path: append_log(path, log_lines(report))),
            (request.html, lambda path: write_file(path, render_html(
                report, request.page_groups(), request.cluster()))),
            (SYSLOG_ADDRESS if request.syslog else None,
             lambda path: send_syslog(path, syslog_line(report),
                                      report.exit_code() != EXIT_OK))]


class LivePage(Observer):
    """With --html, a run of several batches or waves rewrites its page after
    each one, and the page refreshes itself until the final one replaces it."""

    def __init__(self, request: Request):
        self.path = request.html
        self.groups, self.cluster = request.page_groups(), request.cluster()
        self.last = 0.0

    def between_waves(self, so_far: Callable[[], Tuple[Report, List[str]]]) -> None:
        if time.monotonic() - self.last < LIVE_REFRESH:
            return              # batches faster than the page reloads: skip some
        self.last = time.monotonic()
        report, pending = so_far()
        try:
            write_file(self.path, render_html(report, self.groups, self.cluster, pending,
                                              refresh=LIVE_REFRESH))
        except (OSError, OutputError):
            pass                # said once, by the final page's write


LIVE_REFRESH = 3        # seconds between reloads of a live page


def site_groups(nodes: NodeSet, source: Optional[str] = None,
                most: int = 300) -> Dict[str, NodeSet]:
    """ClusterShell's groups (of `source`) that hold some of these nodes, for
    an HTML page's filter and grid: best effort, a failing source gives none."""
    resolver = std_group_resolver()
    try:
        names = resolver.grouplist(source)
    except Exception:       # noqa: BLE001 -- the site's sources are theirs
        return {}
    groups = {}
    for name in names[:most]:
        if not re.fullmatch(_NAME, name, re.ASCII):
            continue
        try:
            members = NodeSet.fromlist(resolver.group_nodes(name, source),
                                       resolver=RESOLVER_NOGROUP) & nodes
        except Exception:   # noqa: BLE001
            continue
        if members:
            groups["@" + name] = members
    return groups


def new_progress(request: Request, stderr) -> Optional[Progress]:
    """A live status line on a terminal; per-wave lines there, or with -v."""
    live = hasattr(stderr, "isatty") and stderr.isatty()
    if request.display.quiet or not (live or request.display.verbose):
        return None
    return Progress(len(request.nodes), stderr, live, True, request.batch_wait)


def main(argv: Optional[Sequence[str]] = None, stdout=None, stderr=None,
         stdin=None) -> int:
    """Entry point; returns the exit code (tests call it in-process). One
    error handler maps every expected error to `svcctl: message`, exit 2."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = read_command_line(argv)
        if args.check_config:
            if not args.config:
                raise UsageError("--check-config goes with -c FILE")
            cluster = load_cluster_file(args.config, args.max_nodes)
            stdout.write(cluster_checked(cluster) + "\n")
            code = publish_files([(args.html, lambda path: write_file(
                path, render_cluster_page(cluster)))], stderr)
            if args.verbose:        # the services in dependency order
                stdout.write("".join("  %s: %s on %s, declared %s%s\n" % (
                    s.name, s.unit, s.nodes, s.declared.text(), "".join(
                        "; %s %s" % (key, ", ".join(getattr(s, key)))
                        for key in ("requires", "after") if getattr(s, key)))
                    for s in cluster.services))
            return code
        if args.action == "report":
            return show_logged_run(args, stdout, stderr)
        if args.action == "gui":
            return serve_console(args, stdout, stderr)
        request = make_request(args, argv, stdout, stdin, stderr)
        if request.dry_run and request.action.kind == "apply":
            text, code = dry_apply(request, new_progress(request, stderr))
            stdout.write(text)
            return code
        if request.dry_run:
            stdout.write(dry_run(request))
            return EXIT_OK
        report = start(request, Observers([new_progress(request, stderr),
                                           LivePage(request) if request.html else None]))
    except UsageError as exc:
        stderr.write("%s: %s\n" % (PROG, exc))
        return EXIT_USAGE
    code = publish(report, request.display, run_outputs(request, report), stdout, stderr)
    return worse_exit(report.exit_code(), code)


def console_main() -> None:
    """Console script: no traceback for Ctrl-C, a closed pipe, or a terminal
    whose encoding cannot show a character (it is escaped)."""
    for name in ("stdin", "stdout", "stderr"):
        if getattr(sys, name) is None:      # started with it closed (`>&-`)
            setattr(sys, name, open(os.devnull, "r" if name == "stdin" else "w"))
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        code = main()
    except KeyboardInterrupt:
        code = EXIT_FOR_SIGNAL["SIGINT"]
    except OSError as exc:
        # `svcctl ... | head`: the reader left, say nothing more; a full disk
        # (`> /dev/full`) is said. Either way, nothing more to stdout.
        if not isinstance(exc, BrokenPipeError):
            sys.stderr.write("%s: cannot write the output: %s\n" % (
                PROG, printable(exc.strerror or str(exc))))
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_FAILED
    sys.exit(code)


# =============================================================================
# Web console: `svcctl gui`, the same runs launched and watched from a browser
# =============================================================================

# The console turns a form into the words a user would type and hands them to
# prepare() and start(): one judge, one renderer, one NodeSet parser. What it
# adds is the HTTP side, and the protections of a local root-power web app
# (Jupyter's token, Cockpit's cookie and origin checks): a token printed once,
# a session cookie, the Host header (DNS rebinding), the Origin and a CSRF
# token on every POST, a strict CSP, bounded requests.

CONSOLE_LISTEN = "127.0.0.1:8765"
CONSOLE_BODY_MAX = 64 * 1024        # bytes of a request's JSON body
CONSOLE_WORDS_MAX = 200             # words of a command line sent to it
CONSOLE_SESSIONS_MAX = 64           # browsers that opened the URL; the oldest go
CONSOLE_RUNS_KEPT = 50              # finished runs kept in memory (the log keeps all)
CONSOLE_RUNNING_MAX = 4             # runs at a time, of which one changing run
CONSOLE_HISTORY_MAX = 200           # logged runs listed
CONSOLE_CONNECTIONS_MAX = 64        # open connections at a time
CONSOLE_POLL_NODES = 1000           # nodes in one answer: 10,000 done at once come in 10
CONSOLE_HISTORY_RUNS = 40           # runs in the history's matrix, the latest
CONSOLE_STORIES_MAX = 500           # rows of it (folded stories), the first ones
# The editor's POST: a cluster file (svcctl reads FILE_MAX_BYTES of one) as
# JSON, whose escapes may double it. It keeps the file it replaces as FILE.prev.
CONSOLE_FILE_BODY_MAX = 2 * FILE_MAX_BYTES
FILE_PREVIOUS = ".prev"
CONSOLE_FILE_ACTIONS = ("status", "apply", "start", "stop")  # the cluster tab's buttons

# What a browser may not ask for: options that write files, or change how
# svcctl connects or reads its configuration. The console's own settings come
# from its command line. (option, its dest in the parser's namespace)
CONSOLE_REFUSED = (
    ("--log", "log"), ("--html", "html"), ("--syslog", "syslog"),
    ("--persist", "persist"), ("--persist-for", "persist_for"), ("-O", "overrides"),
    ("-o", "ssh_options"), ("--hostfile", "hostfiles"), ("-c", "config"),
    ("-l", "user"), ("--max-nodes", "max_nodes"), ("--dry-run", "dry_run"),
    ("--check-config", "check_config"), ("--listen", "listen"),
    ("--allow-remote", "allow_remote"))


class ConsoleError(Exception):
    """A request the console refuses: the HTTP status and one line."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.extra = extra


def parse_listen(text: str) -> Tuple[str, int]:
    """`ADDR:PORT` (`[::1]:PORT` for IPv6; `localhost` is 127.0.0.1): an
    address, not a host name, so that where it listens is what it says."""
    import ipaddress
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    host = "127.0.0.1" if host == "localhost" else host
    try:
        if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            raise ValueError
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        raise UsageError("--listen takes ADDR:PORT (127.0.0.1:8765, [::1]:0), not %s"
                         % printable(text))


def is_loopback(host: str) -> bool:
    import ipaddress
    return ipaddress.ip_address(host).is_loopback


def console_argv(argv, cluster: Optional[str], log: Optional[str]) -> List[str]:
    """The words a browser sent -> the command line prepare() reads, with the
    console's own cluster file and log. Options that only the console's
    command line may set are refused, read by the real parser (abbreviations,
    joined values and option clusters included)."""
    if not isinstance(argv, list) or not all(isinstance(w, str) for w in argv) \
            or not 0 < len(argv) <= CONSOLE_WORDS_MAX or \
            any(len(w) > 4096 or "\x00" in w for w in argv):
        raise UsageError("argv: a list of 1 to %d words" % CONSOLE_WORDS_MAX)
    try:
        args = build_parser().parse_intermixed_args(prepared_words(argv))
    except SystemExit:          # -h, --help, --version: argparse prints and exits
        raise UsageError("help and version are for the command line, not the console")
    for option, dest in CONSOLE_REFUSED:
        if getattr(args, dest, None) not in (None, False, []):
            raise UsageError("%s is not taken from the console: its settings come from "
                             "`svcctl gui`'s command line" % option)
    return (["-c", cluster] if cluster else []) + list(argv) + \
        (["--log", log] if log else [])


def node_entry(action: Action, result: NodeResult) -> dict:
    """A node as the console shows it: its --json fields and its text."""
    return dict(node_dict(result), lines=node_lines(action, result, True))


def finished_state(report: Report, display: Display) -> dict:
    """A finished run for the console: the --json document, each node with
    its text, the grouped text, and a node check's three lists."""
    action = ACTIONS[report.action]
    state = document(report, with_nodes=False)
    state.update(done=True, progress=summary_line(report), text=render_text(
        report, replace(display, color=False, json=False, quiet=0)),
        nodes=[node_entry(action, result) for result in report.nodes],
        check=[[title, [[str(nodes), len(nodes), reason]
                        for reason, nodes in lists.items()]]
               for title, lists in node_check_lists(report)]
        if action.no_when_failed else None,
        tones={view.service: service_tone(view) for view in service_views(report)})
    state["next"] = len(state["nodes"])
    return state


def state_page(state: dict, start: int) -> dict:
    """A finished run's document with CONSOLE_POLL_NODES of its nodes from
    `start`: a run of 10,000 nodes comes in pages, none of them huge (the
    rest of the document, its text and NodeSets, with the first only)."""
    nodes = state["nodes"][start:start + CONSOLE_POLL_NODES]
    page = dict(state) if start == 0 else {key: state[key] for key in (
        "id", "done", "progress", "next")}
    page.update(nodes=nodes, start=start, more=start + len(nodes) < len(state["nodes"]))
    return page


class ConsoleRun(Observer):
    """One run launched from the console: told by the engine of each node as
    it finishes (the page polls for them), of the waves and pauses (the
    terminal's Progress words them), then of the end."""

    def __init__(self, request: Request):
        self.id = os.urandom(6).hex()
        self.request = request
        self.signals = Signals()
        self.progress = Progress(len(request.nodes), None, False, False,
                                 request.batch_wait)
        self.lock = threading.Lock()
        self.finished: List[dict] = []
        self.pause_left: Optional[float] = None
        self.state: Optional[dict] = None    # once done
        self.thread: Optional[threading.Thread] = None
        self.started = time.time()

    @property
    def changes(self) -> bool:
        """Does it change the nodes? (what --sudo would wrap: the table says)"""
        return self.request.action.privileged

    def wave_started(self, wave: Wave) -> None:
        with self.lock:
            self.progress.wave_started(wave)
            self.pause_left = None

    def waiting(self, seconds_left: float) -> None:
        self.pause_left = seconds_left

    def tick(self) -> None:
        self.pause_left = None

    def node_done(self, result: NodeResult) -> None:
        entry = node_entry(self.request.action, result)
        with self.lock:
            self.progress.node_done(result)
            self.finished.append(entry)

    def wave_ended(self, wave: Wave, results: Dict[str, NodeResult]) -> None:
        with self.lock:
            self.progress.wave_ended(wave, results)

    def perform(self) -> None:
        """The run's thread: start(), then the log (and the site's outputs)."""
        from ClusterShell.Task import task_terminate
        import io
        try:
            report = start(self.request, self, self.signals)
            said = io.StringIO()
            publish_files(run_outputs(self.request, report), said)
            state = finished_state(report, self.request.display)
            state["notes"] = state["notes"] + [   # a log that could not be written
                line[len(PROG) + 2:] for line in said.getvalue().splitlines()]
        except Exception as exc:    # noqa: BLE001 -- said on the page, not lost
            state = {"done": True, "error": printable(str(exc))[:500], "nodes": [],
                     "next": 0, "text": "", "progress": "not run"}
        finally:
            task_terminate()        # this thread's ClusterShell task
        state.update(id=self.id, command=self.request.command)
        with self.lock:
            self.state = state

    def view(self, since: int = 0, start: int = 0) -> dict:
        """As far as it has come: the nodes finished since `since` (in the
        order they finished, CONSOLE_POLL_NODES at most: "more" says there
        are others), the progress; once done, the whole run (its nodes a
        page from `start`)."""
        with self.lock:
            if self.state is not None:
                return state_page(self.state, start)
            nodes = self.finished[since:since + CONSOLE_POLL_NODES]
            count = len(self.finished)
            status = self.progress.status(self.pause_left)
        return {"id": self.id, "done": False, "command": self.request.command,
                "action": str(self.request.action), "total": len(self.request.nodes),
                "progress": status[len(PROG) + 2:], "nodes": nodes,
                "next": since + len(nodes) if since <= count else count,
                "more": since + len(nodes) < count}

    def summary(self) -> dict:
        state = self.state or {}
        return {"id": self.id, "run_id": state.get("run_id"), "time": iso_time(self.started),
                "title": self.request.command, "user": self.request.user,
                "state": "running" if self.state is None else
                "exit %s" % state.get("exit_code", "-")}


class Console:
    """The console's state: its token and sessions, its runs; every method is
    called from the HTTP server's threads."""

    def __init__(self, host: str, port: int, cluster: Optional[ClusterFile],
                 log: Optional[str], confirm_nodes: int, max_nodes: int = MAX_NODES):
        import secrets
        self.token = secrets.token_urlsafe(32)
        self.host, self.port = host, port
        self.cluster, self.log, self.confirm_nodes = cluster, log, confirm_nodes
        self.max_nodes = max_nodes      # the cluster file's, as --check-config reads it
        self.sessions: Dict[str, str] = {}      # session cookie -> its CSRF token
        self.runs: Dict[str, ConsoleRun] = {}
        self.opened: Tuple[str, dict] = ("", {})    # the logged run read last (paged)
        self.lock = threading.Lock()
        self.saving = threading.Lock()  # one save of the cluster file at a time
        self.history_lock = threading.Lock()    # one read of the log's history at a time

    # --- who may ask ---------------------------------------------------------

    def hosts(self) -> List[str]:
        """What the Host header may say: the listening address, or localhost
        when it is loopback (a DNS name pointing here is refused: rebinding)."""
        names = ["[%s]" % self.host if ":" in self.host else self.host]
        if is_loopback(self.host):
            names += ["localhost", "127.0.0.1", "[::1]"]
        return ["%s:%d" % (name, self.port) for name in names]

    def cookie_name(self) -> str:
        return "svcctl_%d" % self.port      # cookies are shared between ports

    def new_session(self) -> Tuple[str, str]:
        import secrets
        session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.lock:
            while len(self.sessions) >= CONSOLE_SESSIONS_MAX:
                self.sessions.pop(next(iter(self.sessions)))
            self.sessions[session] = csrf
        return session, csrf

    def session_of(self, cookie: str) -> Optional[str]:
        """The session a cookie names, compared in constant time."""
        import hmac
        found = None
        with self.lock:
            for session in self.sessions:
                if hmac.compare_digest(session.encode(), cookie.encode()):
                    found = session
        return found

    def is_token(self, text: str) -> bool:
        import hmac
        return hmac.compare_digest(self.token.encode(), text.encode())

    def csrf_of(self, session: Optional[str]) -> str:
        with self.lock:
            return self.sessions.get(session or "", "")

    def csrf_ok(self, session: Optional[str], text: str) -> bool:
        import hmac
        expected = self.csrf_of(session)
        return bool(expected) and hmac.compare_digest(expected.encode(), text.encode())

    # --- what they may ask ---------------------------------------------------

    def prepared(self, body: dict) -> Request:
        """A request's JSON -> a validated run, as the CLI makes it."""
        use_file = bool(body.get("cluster"))
        if use_file and not self.cluster:
            raise UsageError("no cluster file: start the console with -c FILE")
        argv = console_argv(body.get("argv"), self.cluster.path if use_file else None,
                            self.log)
        return prepare(argv)

    # count and preview are questions: a refusal is their answer (200, with
    # "error"), not a failed request (a browser logs those as errors, and a
    # half-typed NodeSet is not one)

    def count(self, body: dict) -> dict:
        """The nodes a typed NodeSet names, by the CLI's rules."""
        text = body.get("nodes")
        try:
            if not isinstance(text, str) or not text.strip() or len(text) > 65536:
                raise UsageError("nodes: a NodeSet")
            request = prepare(console_argv(["ping"] + text.split(), None, None))
        except UsageError as exc:
            return {"error": "%s: %s" % (PROG, exc)}
        return {"count": len(request.nodes), "nodes": str(request.nodes)[:2000]}

    def preview(self, body: dict) -> dict:
        """What --dry-run -v prints: the plan in words and the remote commands;
        and the question Launch will ask first."""
        try:
            request = self.prepared(body)
        except UsageError as exc:
            return {"error": "%s: %s" % (PROG, exc)}
        shown = replace(request, display=replace(request.display, verbose=True))
        return {"command": request.command, "count": len(request.nodes),
                "text": dry_run(shown), "confirm": self.confirmation(request)}

    def confirmation(self, request: Request) -> str:
        count = len(request.nodes)
        if not request.action.privileged or count <= self.confirm_nodes:
            return ""
        return "%s on %d nodes (%s)?" % (" ".join([str(request.action)] + (
            [request.subject or ",".join(request.units)] if request.units or
            request.subject else [])), count, short_nodes(request.nodes, 60))

    def launch(self, body: dict) -> dict:
        request = self.prepared(body)
        question = self.confirmation(request)
        if question and body.get("confirmed") is not True:
            raise ConsoleError(409, "confirm: " + question, confirm=question)
        run = ConsoleRun(request)
        with self.lock:
            running = [r for r in self.runs.values() if r.state is None]
            busy = [r for r in running if r.changes] if run.changes else []
            if busy or len(running) >= CONSOLE_RUNNING_MAX:
                raise ConsoleError(409, "another run is going: %s (one changing run at "
                                   "a time)" % (busy or running)[0].request.command)
            self.runs[run.id] = run
            done = [key for key, r in self.runs.items() if r.state is not None]
            for key in done[:max(0, len(done) - CONSOLE_RUNS_KEPT)]:
                del self.runs[key]
            run.thread = threading.Thread(target=run.perform, name="svcctl-run-" + run.id)
            run.thread.start()
        return {"id": run.id, "command": request.command, "targets": list(request.nodes)}

    def view(self, run_id: str, since: int, start: int) -> dict:
        with self.lock:
            run = self.runs.get(run_id)
            opened_id, opened = self.opened
        if run is not None:
            return run.view(since, start)
        if opened_id == run_id:     # its next page: the log is not read again
            return state_page(opened, start)
        if self.log and _RUN_ID_RE.fullmatch(run_id):
            try:
                report, _ = report_from_log(self.log, run_id)
            except UsageError as exc:
                raise ConsoleError(404, str(exc))
            state = finished_state(report, Display())
            state.update(id=run_id, logged=True)
            with self.lock:
                self.opened = (run_id, state)
            return state_page(state, start)
        raise ConsoleError(404, "no run %s" % printable(run_id)[:64])

    def stop(self, run_id: str) -> dict:
        """The Stop button: as Ctrl-C stops the CLI."""
        with self.lock:
            run = self.runs.get(run_id)
        if run is None:
            raise ConsoleError(404, "no run %s here" % printable(run_id)[:64])
        run.signals.stop()
        return {"id": run_id, "stopping": run.state is None}

    def listing(self) -> dict:
        """This session's runs, newest first, then the log's."""
        with self.lock:
            runs = [run.summary() for run in reversed(list(self.runs.values()))]
        ids = {run["run_id"] for run in runs}
        logged: List[dict] = []
        if self.log and os.path.exists(self.log):
            with self.history_lock:
                history, _ = read_history(self.log, last=CONSOLE_HISTORY_MAX)
            logged = [{"id": r["id"], "time": iso_time(r["time"]), "title": r["title"],
                       "user": r["user"], "state": "logged"}
                      for r in reversed(history.runs[-CONSOLE_HISTORY_MAX:])
                      if r["id"] not in ids]
        return {"runs": runs, "logged": logged, "log": self.log}

    def history(self) -> dict:
        """The log's runs as the history page folds them: a row per story
        (the nodes with the same outcomes in the same runs), a column per
        run, the latest CONSOLE_HISTORY_RUNS."""
        matrix: dict = {"runs": [], "labels": [], "rows": [], "messages": {}}
        if self.log and os.path.exists(self.log):
            with self.history_lock:     # one at a time: each may read a large log
                history, _ = read_history(self.log, last=CONSOLE_HISTORY_RUNS)
            matrix = history_matrix(history, CONSOLE_HISTORY_RUNS)
        rows = len(matrix["rows"])
        return {"log": self.log, "runs": matrix["runs"],
                "labels": matrix["labels"][:CONSOLE_STORIES_MAX],
                "rows": matrix["rows"][:CONSOLE_STORIES_MAX], "stories": rows,
                "messages": {key: text for key, text in matrix["messages"].items()
                             if int(key.split(",")[0]) < CONSOLE_STORIES_MAX},
                "symbols": [o.symbol for o in OUTCOME_TABLE]}

    # --- the cluster file's editor -------------------------------------------

    def file_path(self) -> str:
        """The console's own cluster file: the only path a request reaches."""
        if not self.cluster:
            raise ConsoleError(404, "no cluster file: start the console with -c FILE")
        return self.cluster.path

    def cluster_file(self) -> dict:
        """The file's text, its version (what a save must have started from),
        and why it cannot be saved from here, if so."""
        path = self.file_path()
        text = read_text_file(path)
        return {"path": path, "text": text, "version": text_version(text),
                "readonly": read_only_reason(path), "previous": path + FILE_PREVIOUS}

    def save_file(self, body: dict) -> dict:
        """A new text, checked as --check-config checks the file, saved only
        when valid and when the file is still the version it was edited from;
        the old one kept as FILE.prev."""
        path = self.file_path()
        text, version = body.get("text"), body.get("version")
        if not isinstance(text, str) or not isinstance(version, str):
            raise UsageError("text and version: the new text, and the version it was "
                             "edited from")
        reason = read_only_reason(path)
        if reason:
            raise ConsoleError(403, "%s is read-only here: %s" % (printable(path), reason))
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:      # a lone surrogate, which JSON can carry
            raise UsageError("%s: not UTF-8 text" % printable(path))
        if len(data) > FILE_MAX_BYTES:
            raise UsageError("%s: larger than %d bytes" % (printable(path), FILE_MAX_BYTES))
        with self.saving:
            like = os.lstat(path)       # the file read, to compare before writing
            current = read_text_file(path)
            if text_version(current) != version:
                raise ConsoleError(409, "%s changed since it was opened here: reload it "
                                   "(this text is not saved)" % printable(path))
            cluster = parse_cluster_file(path, text, self.max_nodes)
            if not same_file_still(path, like):
                # another editor (or a link swapped in) since it was read: its
                # text would be lost, and a link's mode given to FILE.prev
                raise ConsoleError(409, "%s changed while it was being saved: reload "
                                   "it (this text is not saved)" % printable(path))
            for target, new in ((path + FILE_PREVIOUS, current), (path, text)):
                try:
                    write_file(target, new, like)
                except (OSError, OutputError) as exc:
                    raise ConsoleError(500, "cannot write %s: %s" % (
                        printable(target), printable(str(getattr(exc, "strerror", None)
                                                         or exc))))
            with self.lock:
                self.cluster = cluster
        return {"saved": cluster_checked(cluster), "version": text_version(text),
                "previous": path + FILE_PREVIOUS}

    def stop_all(self, signame: str) -> List[ConsoleRun]:
        """Stop every run as `signame` does; wait until each is reported and
        logged. Returns the runs that were still going."""
        with self.lock:
            going = [run for run in self.runs.values() if run.state is None]
        for run in going:
            run.signals.stop(signame)
        for run in going:
            if run.thread:
                run.thread.join()
        return going

    def page(self, csrf: str) -> str:
        with self.lock:
            cluster = self.cluster
        data = {"csrf": csrf, "outcomes": list(OUTCOMES), "confirm": self.confirm_nodes,
                "log": self.log, "cluster": cluster.path if cluster else None,
                "services": [s.name for s in cluster.services] if cluster else [],
                "actions": [[a.name, a.kind, a.help] for a in ACTION_TABLE
                            if cluster or not a.file_only],
                "fileactions": list(CONSOLE_FILE_ACTIONS) if cluster else []}
        return CONSOLE_PAGE % {
            "data": page_data(data), "version": escape(__version__),
            "log": escape(self.log) if self.log else
            "none: runs are kept only while the console runs (start it with --log FILE)",
            "cluster": CONSOLE_FILE_TOOLS % {"path": escape(cluster.path),
                                             "body": render_cluster_body(cluster)}
            if cluster else
            "<p>No cluster file: start the console with <code>-c FILE</code>.</p>"}


def text_version(text: str) -> str:
    """What the editor sends back to say which file it edited."""
    import hashlib
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_only_reason(path: str) -> str:
    """Why the console may not replace this file ("" if it may): not a regular
    file (a link is not followed), not writable by its user, or made
    read-only on purpose (no write bit: root could, but an admin who did
    chmod a-w means it)."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return "cannot read it: %s" % exc.strerror
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file" + (" (a symbolic link: edit the file it names)"
                                       if stat.S_ISLNK(info.st_mode) else "")
    directory = os.path.dirname(os.path.abspath(path))
    if not (os.access(path, os.W_OK) and os.access(directory, os.W_OK | os.X_OK)):
        return "not writable by %s (the file or its directory)" % current_user()
    if not info.st_mode & 0o222:
        return "its mode %o has no write permission" % stat.S_IMODE(info.st_mode)
    return ""


class ConsoleHandler:
    """Every request: the Host, then the session or the token, then the
    route; a POST also its Origin, CSRF token, type and size. (A mixin,
    joined to http.server's handler when the console starts: that module
    costs 60 ms of every other command's start-up.)"""

    server_version = PROG
    sys_version = ""
    timeout = 30                # a client that stalls loses its thread

    ROUTES = {("GET", "/"): "page", ("GET", "/console.js"): "script",
              ("GET", "/console.css"): "style", ("GET", "/api/runs"): "listing",
              ("POST", "/api/runs"): "launch", ("POST", "/api/count"): "count",
              ("POST", "/api/preview"): "preview", ("GET", "/api/file"): "cluster_file",
              ("POST", "/api/file"): "save_file", ("GET", "/api/history"): "history"}
    _RUN_PATH_RE = Regex(r"/api/runs/([A-Za-z0-9_-]{1,64})(/stop)?")

    def log_message(self, format, *args) -> None:
        """Quiet: the console's terminal shows its URL, not every request."""

    def do_GET(self) -> None:
        self.serve("GET")

    def do_POST(self) -> None:
        self.serve("POST")

    def refuse_method(self) -> None:
        self.reply(405, {"error": "method not allowed"})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = refuse_method

    def serve(self, method: str) -> None:
        from urllib.parse import parse_qs, urlsplit
        console: Console = self.server.console
        try:
            host = self.headers.get("Host", "")
            if host.lower() not in console.hosts():
                raise ConsoleError(403, "wrong Host header (only %s)" % ", ".join(
                    console.hosts()))
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if method == "GET" and url.path == "/" and "token" in query:
                return self.open_session(console, query["token"][0])
            session, bearer = self.authenticated(console)
            name, run_id, allowed = self.route(method, url.path)
            if method == "POST":
                body = self.checked_body(console, host, session, bearer,
                                         CONSOLE_FILE_BODY_MAX if name == "save_file"
                                         else CONSOLE_BODY_MAX)
            if name == "page":
                return self.reply(200, console.page(console.csrf_of(session)),
                                  "text/html; charset=utf-8")
            if name in ("script", "style"):
                return self.reply(200, CONSOLE_SCRIPT if name == "script" else
                                  page_style() + CONSOLE_STYLE,
                                  "text/javascript" if name == "script" else "text/css")
            if name == "view":
                numbers = [query.get(key, ["0"])[0] for key in ("since", "from")]
                since, start = [int(n) if n.isascii() and n.isdigit() else 0
                                for n in numbers]
                return self.reply(200, console.view(run_id, since, start))
            if name == "stop":
                return self.reply(200, console.stop(run_id))
            if name in ("listing", "cluster_file", "history"):
                return self.reply(200, getattr(console, name)())
            return self.reply(200, getattr(console, name)(body))
        except ConsoleError as exc:
            self.reply(exc.status, dict(exc.extra, error=str(exc)))
        except UsageError as exc:   # the CLI's one-line refusal, as it says it
            self.reply(400, {"error": "%s: %s" % (PROG, exc)})
        except Exception as exc:    # noqa: BLE001 -- a bug: said, the console goes on
            self.reply(500, {"error": "internal error: %s" % printable(repr(exc))[:300]})

    def route(self, method: str, path: str) -> Tuple[str, str, str]:
        """(handler, run id, ""), or 404 / 405 naming the allowed method."""
        name = self.ROUTES.get((method, path))
        if name:
            return name, "", ""
        match = self._RUN_PATH_RE.fullmatch(path)
        other = "POST" if method == "GET" else "GET"
        if match:
            wanted = "POST" if match.group(2) else "GET"
            if method == wanted:
                return ("stop" if match.group(2) else "view"), match.group(1), ""
            raise ConsoleError(405, "%s only" % wanted, allow=wanted)
        if (other, path) in self.ROUTES:
            raise ConsoleError(405, "%s only" % other, allow=other)
        raise ConsoleError(404, "no such page")

    def open_session(self, console: Console, token: str) -> None:
        """The printed URL, once per browser: a session cookie (HttpOnly,
        SameSite=Strict), then the same page without the token in the URL
        (nor in the history, nor in a Referer)."""
        if not console.is_token(token):
            raise ConsoleError(403, "wrong token")
        session, _ = console.new_session()
        self.reply(303, {"to": "/"}, headers=[
            ("Location", "/"), ("Set-Cookie", "%s=%s; HttpOnly; SameSite=Strict; Path=/"
                                % (console.cookie_name(), session))])

    def authenticated(self, console: Console) -> Tuple[Optional[str], bool]:
        """(session, False) from the cookie, or (None, True) from an
        `Authorization: Bearer TOKEN` header (scripts); else 403."""
        from http.cookies import CookieError, SimpleCookie
        cookies = SimpleCookie()
        try:
            cookies.load(self.headers.get("Cookie", ""))
        except CookieError:
            pass
        morsel = cookies.get(console.cookie_name())
        session = console.session_of(morsel.value) if morsel else None
        if session:
            return session, False
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token and console.is_token(token.strip()):
            return None, True
        raise ConsoleError(403, "token required: open the URL `svcctl gui` printed")

    def checked_body(self, console: Console, host: str, session: Optional[str],
                     bearer: bool, limit: int) -> dict:
        """A POST changes things: it must come from the console's own page
        (Origin, else Referer; and the page's CSRF token) or from a script
        with the token, be JSON (no form can send it), and be small."""
        from urllib.parse import urlsplit
        origin = self.headers.get("Origin")
        if origin is None and self.headers.get("Referer"):
            parts = urlsplit(self.headers["Referer"])
            origin = "%s://%s" % (parts.scheme, parts.netloc)
        if origin is not None and origin != "http://" + host:
            raise ConsoleError(403, "cross-origin request refused")
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise ConsoleError(403, "cross-site request refused")
        if not bearer and (origin is None or not console.csrf_ok(
                session, self.headers.get("X-Svcctl-CSRF", ""))):
            raise ConsoleError(403, "missing or wrong CSRF token or Origin")
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise ConsoleError(415, "JSON only (Content-Type: application/json)")
        if "Transfer-Encoding" in self.headers:
            raise ConsoleError(411, "a Content-Length is required")
        length = self.headers.get("Content-Length", "")
        if not (length.isascii() and length.isdigit()):
            raise ConsoleError(411, "a Content-Length is required")
        if int(length) > limit:
            raise ConsoleError(413, "request body over %d bytes" % limit)
        try:
            body = json.loads(self.rfile.read(int(length)) or b"{}")
        except (ValueError, RecursionError):
            raise ConsoleError(400, "the body is not JSON")
        if not isinstance(body, dict):
            raise ConsoleError(400, "the body is not a JSON object")
        return body

    def reply(self, status: int, payload, kind: str = "application/json",
              headers: Sequence[Tuple[str, str]] = ()) -> None:
        data = (payload if isinstance(payload, str) else page_data(payload)).encode()
        self.send_response(status)
        for key, value in [("Content-Type", kind), ("Content-Length", str(len(data)))] \
                + CONSOLE_HEADERS + list(headers):
            self.send_header(key, value)
        if status == 405:
            self.send_header("Allow", payload.get("allow", "GET, POST"))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


# Sent with every answer: nothing but the console's own script, style and
# requests; never framed, sniffed, cached, or named in a Referer.
CONSOLE_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "
     "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
     "frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin")]


def console_server(address: Tuple[str, int]):
    """http.server's threading server with the console's handler; each
    request in a daemon thread (a stalled browser never holds the exit), at
    most CONSOLE_CONNECTIONS_MAX at a time: whoever can connect (before any
    token is checked) cannot tie up threads the runs need; more are closed."""
    import socket
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    handler = type("ConsoleRequestHandler", (ConsoleHandler, BaseHTTPRequestHandler), {})
    slots = threading.BoundedSemaphore(CONSOLE_CONNECTIONS_MAX)

    def process_request(server, request, client_address):
        if not slots.acquire(blocking=False):
            server.shutdown_request(request)
            return
        try:
            ThreadingHTTPServer.process_request(server, request, client_address)
        except Exception:
            slots.release()
            raise

    def process_request_thread(server, request, client_address):
        try:
            ThreadingHTTPServer.process_request_thread(server, request, client_address)
        finally:
            slots.release()
    server_class = type("ConsoleServer", (ThreadingHTTPServer,), {
        "daemon_threads": True, "request_queue_size": 32,
        "address_family": socket.AF_INET6 if ":" in address[0] else socket.AF_INET,
        "process_request": process_request,
        "process_request_thread": process_request_thread,
        # a client gone mid-request (reset, broken pipe) is no error of ours:
        # socketserver would print its traceback to stderr, and a full stderr
        # pipe then blocks every thread and the console's exit
        "handle_error": lambda server, request, client_address: None})
    return server_class(address, handler)


def serve_console(args: argparse.Namespace, stdout, stderr) -> int:
    """svcctl gui: print the URL (with its token), serve until SIGINT,
    SIGTERM or SIGHUP; a run still going is stopped as that signal stops the
    CLI, reported and logged before the console exits."""
    if args.targets:
        raise UsageError("gui takes no UNIT or NodeSet: they are typed in the browser")
    host, port = parse_listen(args.listen or CONSOLE_LISTEN)
    if host in ("0.0.0.0", "::"):
        raise UsageError("--listen %s: name one address (every request's Host header "
                         "must name it)" % host)
    if not is_loopback(host) and not args.allow_remote:
        raise UsageError("--listen %s is not a loopback address: anyone who reaches it "
                         "with the token acts as %s; use ssh -L, or add --allow-remote "
                         "behind a TLS proxy with its own login" % (host, current_user()))
    cluster = load_cluster_file(args.config, args.max_nodes) if args.config else None
    try:
        server = console_server((host, port))
    except OSError as exc:
        raise UsageError("--listen %s:%d: %s" % (host, port, exc.strerror))
    port = server.server_address[1]
    console = server.console = Console(host, port, cluster, args.log, args.confirm_nodes,
                                       args.max_nodes)
    stdout.write("http://%s:%d/?token=%s\n" % (
        "[%s]" % host if ":" in host else host, port, console.token))
    stdout.flush()
    if not is_loopback(host):
        stderr.write("%s: WARNING: listening on %s, beyond this machine, over plain "
                     "HTTP: the token and every result cross the network in clear\n"
                     % (PROG, host))
    stderr.write("%s: console on port %d; log: %s; Ctrl-C stops it\n" % (
        PROG, port, printable(args.log) if args.log else "none"))
    stderr.flush()
    caught: List[str] = []
    woken = threading.Event()

    def on_signal(signum, frame) -> None:
        caught.append(signal.Signals(signum).name)
        woken.set()
    previous = {signum: signal.signal(signum, on_signal) for signum in Signals.CAUGHT}
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                               name="svcctl-console")
    serving.start()
    try:
        while not woken.wait(1):
            pass
    finally:
        signame = caught[0] if caught else "SIGINT"
        stopped = console.stop_all(signame)
        server.shutdown()
        server.server_close()
        serving.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for run in stopped:
        stderr.write("%s: %s: %s\n" % (PROG, signame, run.state.get("progress", "")))
    stderr.write("%s: console stopped (%s)\n" % (PROG, signame))
    return EXIT_FOR_SIGNAL[signame] if stopped else EXIT_OK


# =============================================================================
# Templates: the HTML page (kept here, like bottle's, so the logic reads
# without them)
# =============================================================================

HTML_STYLE = """\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fdfdfb}
h1{font-size:1.3em;margin:0 0 .3em} h2{font-size:1.1em;margin:1.2em 0 .4em}
h3{font-size:1em;margin:.8em 0 .2em} h3 small{font-weight:normal;color:#555}
.meta{color:#555;margin-bottom:1em} .meta code{background:#eee;padding:0 .3em}
table{border-collapse:collapse;margin:.5em 0 1em} td,th{padding:.2em .6em;
text-align:left;border-bottom:1px solid #ddd;vertical-align:top}
td code,p code{overflow-wrap:anywhere;word-break:break-all}
tr.pick{cursor:pointer} tr.pick:hover,tr.pick:focus,tr.pick.on{background:#eef3fb}
.grid{display:flex;flex-wrap:wrap;gap:3px;margin:.3em 0 .8em}
.grid b{display:inline-block;font:11px/17px ui-monospace,monospace;padding:0 4px;
border-radius:3px;cursor:pointer;white-space:nowrap;-webkit-print-color-adjust:exact;
print-color-adjust:exact}
.grid b::after{margin-left:3px;font-weight:bold}
.grid b:focus{outline:2px solid #000;outline-offset:1px}
.grid b.dim{opacity:.2} .grid b.hid,section.hid{display:none}
.grid b.pe{background:#eee;color:#666} .grid b.pe::after{content:'\\00b7'}
.sw{display:inline-block;width:15px;height:15px;font:bold 11px/15px sans-serif;
text-align:center;border-radius:2px;-webkit-print-color-adjust:exact;print-color-adjust:exact}
.tools input{font:inherit;padding:.15em .3em} #shown{color:#555}
.check{display:flex;flex-wrap:wrap;gap:1em;margin:.5em 0 1em}
.check>div{flex:1 1 16em;border:1px solid #ddd;border-radius:4px;padding:0 .8em}
pre{background:#f4f4f0;padding:.8em;overflow:auto;max-height:40em}
#detail{min-height:3em;white-space:pre-wrap}
.drift{background:#fbe3c0}
svg.graph{max-width:100%;height:auto;background:#fff;border:1px solid #ddd}
.graph text{font:12px system-ui,sans-serif;fill:#222} .graph .name{font-weight:bold}
.svc rect{fill:#eef1f8;stroke:#556} .svc.good rect{fill:#d9f0e6}
.svc.drift rect{fill:#fbe3c0;stroke:#E69F00;stroke-width:2}
.svc.bad rect{fill:#f8d9cc;stroke:#D55E00;stroke-width:2}
.edge{fill:none;stroke:#556;stroke-width:1.5;marker-end:url(#arrow)}
.edge.after{stroke-dasharray:5 4} .legend{color:#555;font-size:.9em}
.history{display:flex;overflow:auto;max-height:75vh;border:1px solid #ddd}
.names{flex:none;background:#fff;position:sticky;left:0}
#hover{color:#222;font-weight:bold}
.names div{height:14px;font:11px/14px ui-monospace,monospace;padding:0 6px;
white-space:pre} .names .story{cursor:pointer;font-weight:bold} .matrix canvas{display:block;cursor:pointer}
@media print{pre{max-height:none}}
"""

# The pages' one script: a node's result on click or Enter, the summary's
# rows highlighting their nodes, the filter (ClusterShell's NodeSet syntax,
# @groups given in the page, or outcome names), the history's matrix.
HTML_SCRIPT = r"""
(function () {
"use strict";
var data = JSON.parse(document.getElementById("data").textContent);
var detail = document.getElementById("detail");
var show = function (text) { if (detail) { detail.textContent = text; } };
var cells = function () { return Array.prototype.slice.call(document.querySelectorAll(".grid b")); };
var outcomeOf = function (cell) {
  var m = /(?:^| )o(\d+)(?: |$)/.exec(cell.className);
  return m ? data.outcomes[+m[1]] : "pending";
};
var describe = function (cell) {
  var d = cell.getAttribute("data-d");
  show([cell.textContent + ": " + outcomeOf(cell)].concat(d === null ? [] : data.details[+d]).join("\n"));
};
var lit = null;
var highlight = function (row) {
  var name = "o" + row.getAttribute("data-o");
  lit = lit === name ? null : name;
  cells().forEach(function (c) { c.classList.toggle("dim", lit !== null && !c.classList.contains(lit)); });
  document.querySelectorAll("tr.pick").forEach(function (r) { r.classList.toggle("on", r === row && lit !== null); });
};
document.addEventListener("click", function (e) {
  var t = e.target;
  if (t.tagName === "B" && t.parentNode.classList.contains("grid")) { describe(t); }
  var row = t.closest ? t.closest("tr.pick") : null;
  if (row) { highlight(row); }
});
document.addEventListener("keydown", function (e) {
  var t = e.target;
  if (e.key !== "Enter" && e.key !== " ") { return; }
  if (t.tagName === "B") { describe(t); e.preventDefault(); }
  else if (t.classList && t.classList.contains("pick")) { highlight(t); e.preventDefault(); }
});
// A filter names at most LIMIT nodes in all, every operand of every operator
// and group counted: counted first from the text, built only then.
var LIMIT = 200000;
var rangeItems = function (text) {
  return text.split(",").map(function (item) {
    var m = /^(\d+)(?:-(\d+)(?:\/(\d+))?)?$/.exec(item.trim());
    if (!m) { throw new Error("bad range: " + item); }
    var low = +m[1], high = m[2] === undefined ? low : +m[2], step = +(m[3] || 1);
    if (high < low || step < 1) { throw new Error("bad range: " + item); }
    return {low: low, high: high, step: step, count: Math.floor((high - low) / step) + 1,
            pad: m[1].length > 1 && m[1].charAt(0) === "0" ? m[1].length : 0};
  });
};
var brackets = function (text) {      // [text before, ranges, text before, ranges..., rest]
  var out = [], at = 0;
  for (;;) {
    var open = text.indexOf("[", at);
    if (open < 0) { out.push(text.slice(at)); return out; }
    var close = text.indexOf("]", open);
    if (close < 0) { throw new Error("missing ]"); }
    out.push(text.slice(at, open), rangeItems(text.slice(open + 1, close)));
    at = close + 1;
  }
};
var operands = function (text) {      // [[operator, operand]...], operators outside brackets
  var out = [], op = ",", part = "", level = 0;
  for (var i = 0; i <= text.length; i++) {
    var ch = text.charAt(i);
    if (i === text.length || (level === 0 && ",!&^".indexOf(ch) >= 0)) {
      if (!part.trim()) { throw new Error("empty NodeSet element"); }
      out.push([op, part.trim()]);
      op = ch; part = ""; continue;
    }
    if (ch === "[") { level++; } else if (ch === "]") { level--; }
    part += ch;
  }
  return out;
};
var size = function (text, depth) {
  if (depth > 8) { throw new Error("groups nested too deeply"); }
  var total = 0;
  operands(text).forEach(function (pair) {
    var item = pair[1], n = 1;
    if (item.charAt(0) === "@") {
      if (data.groups[item] === undefined) { throw new Error("unknown group " + item); }
      n = size(data.groups[item], depth + 1);
    } else {
      brackets(item).forEach(function (piece, k) {
        if (k % 2) { n *= piece.reduce(function (sum, r) { return sum + r.count; }, 0); }
        else if (/[\[\]@\s]/.test(piece)) { throw new Error("bad node name: " + item); }
      });
    }
    total += n;
    if (total > LIMIT) { throw new Error("too many nodes (more than " + LIMIT + ")"); }
  });
  return total;
};
var expand = function (text) {       // counted already: builds at most LIMIT names
  var out = [""];
  brackets(text).forEach(function (piece, k) {
    var next = [];
    if (k % 2 === 0) { out.forEach(function (h) { next.push(h + piece); }); }
    else {
      out.forEach(function (h) {
        piece.forEach(function (r) {
          for (var n = r.low; n <= r.high; n += r.step) {
            var s = String(n);
            while (s.length < r.pad) { s = "0" + s; }
            next.push(h + s);
          }
        });
      });
    }
    out = next;
  });
  return out;
};
var build = function (text) {
  var result = new Set();
  operands(text).forEach(function (pair) {
    var op = pair[0], item = pair[1];
    var other = new Set(item.charAt(0) === "@" ? build(data.groups[item]) : expand(item));
    if (op === ",") { other.forEach(function (n) { result.add(n); }); }
    else if (op === "!") { other.forEach(function (n) { result.delete(n); }); }
    else if (op === "&") { result.forEach(function (n) { if (!other.has(n)) { result.delete(n); } }); }
    else { other.forEach(function (n) { if (result.has(n)) { result.delete(n); } else { result.add(n); } }); }
  });
  return result;
};
var nodeset = function (text) {
  size(text, 0);
  return build(text);
};
var select = function (text) {
  var words = text.split(/\s*[,!&^]\s*/);
  var named = words.filter(function (w) { return data.outcomes.indexOf(w) >= 0 || w === "pending"; });
  if (named.length === words.length && !/[!&^]/.test(text)) { return {outcomes: words}; }
  if (named.length) { throw new Error("outcomes (" + named.join(", ") + ") and NodeSets cannot be mixed"); }
  return {nodes: nodeset(text)};
};
var redraw = null;    // the history's matrix, once drawn
var input = document.getElementById("filter"), timer = null;
var filter = function () {
  var text = input.value.trim(), note = document.getElementById("shown"), wanted = null, shown = 0;
  if (text) {
    try { wanted = select(text); } catch (err) { note.textContent = err.message; return; }
  }
  if (redraw) { redraw(wanted); return; }
  var all = cells();
  all.forEach(function (c) {
    var keep = wanted === null || (wanted.nodes ? wanted.nodes.has(c.textContent) :
      wanted.outcomes.indexOf(outcomeOf(c)) >= 0);
    c.classList.toggle("hid", !keep);
    if (keep) { shown++; }
  });
  document.querySelectorAll("section").forEach(function (s) {
    s.classList.toggle("hid", s.querySelector(".grid b:not(.hid)") === null);
  });
  note.textContent = wanted === null ? "" : shown + " of " + all.length + " shown";
};
if (input) {
  input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(filter, 120); });
}
var matrix = document.getElementById("matrix"), names = document.getElementById("names");
if (matrix && data.rows) {
  // one row a story (its nodes folded), opened to its nodes on a click; drawn
  // in tiles of TILE rows: a browser draws no canvas over 65,535 pixels high
  var S = 14, TILE = 2000, opened = {}, lines = [];
  var draw = function (wanted) {
    var codes = wanted && wanted.outcomes ? wanted.outcomes.map(function (o) {
      return String.fromCharCode(97 + data.outcomes.indexOf(o)); }) : null;
    var shown = 0;
    lines = [];
    data.rows.forEach(function (cells, r) {
      if (codes && !codes.some(function (c) { return cells.indexOf(c) >= 0; })) { return; }
      var inside = wanted && wanted.nodes ? data.nodes[r].filter(function (n) { return wanted.nodes.has(n); }) : data.nodes[r];
      if (!inside.length) { return; }
      shown += inside.length;
      lines.push([r, null, inside.length]);
      if (opened[r] || (wanted && wanted.nodes)) { inside.forEach(function (n) { lines.push([r, n]); }); }
    });
    names.textContent = "";
    matrix.textContent = "";
    lines.forEach(function (line) {
      var div = document.createElement("div"), all = data.nodes[line[0]].length;
      if (line[1] === null) {
        div.className = "story";
        div.tabIndex = 0;
        div.setAttribute("data-r", line[0]);
        div.textContent = (opened[line[0]] ? "\u25be " : "\u25b8 ") + data.labels[line[0]] +
          (all > 1 ? " (" + (line[2] < all ? line[2] + " of " : "") + all + ")" : "");
      } else { div.textContent = "  " + line[1]; }
      names.appendChild(div);
    });
    for (var first = 0; first < Math.max(1, lines.length); first += TILE) {
      var canvas = document.createElement("canvas"), ctx = canvas.getContext("2d");
      var part = lines.slice(first, first + TILE);
      canvas.width = Math.max(1, data.runs.length * S);
      canvas.height = Math.max(1, part.length * S);
      canvas.setAttribute("data-first", first);
      ctx.font = "bold 10px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      part.forEach(function (line, y) {
        var row = data.rows[line[0]];
        for (var x = 0; x < row.length; x++) {
          var c = row.charCodeAt(x) - 97;
          if (c < 0) { continue; }
          ctx.fillStyle = data.colors[c];
          ctx.fillRect(x * S, y * S + 1, S - 1, S - 2);
          ctx.fillStyle = data.inks[c];      // a symbol too: colour is never the only cue
          ctx.fillText(data.symbols[c], x * S + S / 2, y * S + S / 2 + 1);
        }
      });
      matrix.appendChild(canvas);
    }
    var note = document.getElementById("shown");
    if (note) { note.textContent = wanted ? shown + " nodes shown" : ""; }
  };
  redraw = draw;
  var toggle = function (t) {
    if (!t.classList || !t.classList.contains("story")) { return; }
    var r = +t.getAttribute("data-r");
    opened[r] = !opened[r];
    filter();
    var again = names.querySelector('.story[data-r="' + r + '"]');
    if (again) { again.focus(); }
  };
  names.addEventListener("click", function (e) { toggle(e.target); });
  names.addEventListener("keydown", function (e) {
    if (e.key === "Enter" || e.key === " ") { toggle(e.target); e.preventDefault(); }
  });
  draw(null);
  var at = function (e) {
    var box = e.target.getBoundingClientRect();
    var x = Math.floor((e.clientX - box.left) / S);
    var y = Math.floor((e.clientY - box.top) / S) + +(e.target.getAttribute("data-first") || 0);
    return e.target.tagName !== "CANVAS" || y < 0 || x < 0 || y >= lines.length ||
      x >= data.runs.length ? null : [x, lines[y]];
  };
  var runText = function (run) { return "run " + run[0] + " (" + run[1] + ", " + run[2] + " by " + run[3] + ")"; };
  var who = function (line) { return line[1] === null ? data.labels[line[0]] : line[1]; };
  matrix.addEventListener("mousemove", function (e) {
    var p = at(e), hover = document.getElementById("hover");
    if (p && hover) { hover.textContent = who(p[1]) + ", " + runText(data.runs[p[0]]); }
  });
  matrix.addEventListener("click", function (e) {
    var p = at(e);
    if (!p) { return; }
    var r = p[1][0], c = data.rows[r].charCodeAt(p[0]) - 97, message = data.messages[r + "," + p[0]];
    var text = who(p[1]) + " in " + runText(data.runs[p[0]]) + ": " +
      (c < 0 ? "not in this run" : data.symbols[c] + " " + data.outcomes[c]);
    show(message ? text + "\n" + message : text);
  });
}
}());
"""

HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="%(csp)s">
%(refresh)s<title>%(title)s</title>
<style>%(style)s</style></head><body>
<h1>%(title)s</h1>
<div class="meta">%(meta)s</div>
%(body)s
<script type="application/json" id="data">%(data)s</script>
<script>%(script)s</script>
</body></html>
"""

# The web console's page: its script and style are served by the console
# itself (CSP script-src 'self'); the page's data is a JSON block, never run.
CONSOLE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>svcctl console</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/console.css"></head><body>
<h1>svcctl console <small>%(version)s</small></h1>
<div class="meta">log: <code>%(log)s</code></div>
<nav id="tabs"><button data-tab="run" class="on">Run</button><button data-tab="check">Node check</button><button data-tab="results">Results</button><button data-tab="cluster">Cluster file</button></nav>
<section id="run" class="tab">
<div class="form">
<label>Action <select id="action"></select></label>
<label>Units <input id="units" size="28" list="services" placeholder="httpd,sshd or services" autocomplete="off"></label>
<label>NodeSet <input id="nodes" size="32" placeholder="node[1-8], @web!node3" autocomplete="off"> <span id="count"></span></label>
<label id="usefile" class="hid"><input type="checkbox" id="cluster"> the cluster file (units: its services, NodeSet: -n)</label>
</div>
<div class="form">
<label>--batch <input id="batch" size="4"></label>
<label>--max-fail <input id="maxfail" size="4"></label>
<label>--batch-wait <input id="batchwait" size="4"></label>
<label>--settle <input id="settle" size="4"></label>
<label>-u <input id="timeout" size="4"></label>
<label><input type="checkbox" id="now"> --now</label>
<label><input type="checkbox" id="sudo"> --sudo</label>
<label><input type="checkbox" id="verbose"> -v</label>
</div>
<p><button id="preview">Preview</button> <button id="launch">Launch</button> <button id="stop" disabled>Stop</button></p>
<p id="error" class="error"></p>
<pre id="plan" class="hid"></pre>
<div id="runview"></div>
</section>
<section id="check" class="tab hid">
<p><label>NodeSet <input id="checknodes" size="40" placeholder="@all" autocomplete="off"></label>
<button id="checkgo">Check</button> <button id="checkfile" class="hid">Check the cluster file's nodes</button></p>
<p id="checkerror" class="error"></p>
<div id="checkview"></div>
</section>
<section id="results" class="tab hid">
<p><button id="refresh">Refresh</button> <span id="resultsnote"></span></p>
<h2>History</h2>
<p id="historynote" class="legend"></p>
<div id="historybox"><table id="history"></table></div>
<pre id="historydetail" class="hid"></pre>
<h2>Runs</h2>
<table id="runlist"></table>
<div id="resultview"></div>
</section>
<section id="cluster" class="tab hid">%(cluster)s</section>
<datalist id="services"></datalist>
<script type="application/json" id="data">%(data)s</script>
<script src="/console.js"></script>
</body></html>
"""

# The cluster tab: its buttons (drawn by the script, one row a service), the
# run they launch, the drift after a status, the file's page, its editor.
CONSOLE_FILE_TOOLS = """
<h2>Run on <code>%(path)s</code></h2>
<table id="fileruns"></table>
<p id="fileerror" class="error"></p>
<div id="drift"></div>
<div id="fileview"></div>
%(body)s
<h2>Edit <code>%(path)s</code></h2>
<p id="filenote" class="legend"></p>
<textarea id="filetext" rows="24" cols="100" spellcheck="false" readonly></textarea>
<p><button id="filesave" disabled>Save</button> <button id="fileload">Reload</button></p>
<p id="filesaveerror" class="error"></p>
"""

CONSOLE_STYLE = """
h1 small{font-weight:normal;color:#555;font-size:.7em}
nav button{font:inherit;padding:.3em .9em;border:1px solid #bbb;background:#f4f4f0;
cursor:pointer} nav button.on{background:#fff;border-bottom-color:#fff;font-weight:bold}
.tab{border-top:1px solid #bbb;padding-top:.5em} .hid{display:none}
.form{display:flex;flex-wrap:wrap;gap:.4em 1.2em;margin:.5em 0}
.form input,.form select{font:inherit;padding:.1em .3em}
.error{color:#b00;font-weight:bold;white-space:pre-wrap} #count{color:#555}
.progress{font-weight:bold;margin:.5em 0}
#runlist tr{cursor:pointer} #runlist tr:hover{background:#eef3fb}
#filetext{font:12px/1.4 ui-monospace,monospace;width:100%;box-sizing:border-box}
#historybox{overflow:auto;max-height:60vh} #history td,#history th{padding:0 1px;border:0}
#history td.label{font:11px/16px ui-monospace,monospace;padding-right:6px;white-space:pre}
#history b{display:inline-block;width:14px;height:16px;font:11px/16px ui-monospace,monospace;
text-align:center;cursor:pointer} #history b.out{color:#bbb}
#history th button{font:10px ui-monospace,monospace;padding:0;width:14px;border:0;background:none;
cursor:pointer} #history th button:hover,#history b:hover{outline:1px solid #000}
"""

# The console's script: the form becomes the words of a command line (the
# server checks them as the CLI does); a run is polled every half second for
# the nodes finished since the last poll. Everything from the server or the
# nodes is put in the page as text (textContent), never as HTML.
CONSOLE_SCRIPT = r"""
(function () {
"use strict";
var data = JSON.parse(document.getElementById("data").textContent);
var $ = function (id) { return document.getElementById(id); };
var el = function (tag, text, cls) {
  var e = document.createElement(tag);
  if (text !== undefined && text !== null) { e.textContent = text; }
  if (cls) { e.className = cls; }
  return e;
};
var api = function (method, path, body) {
  var init = {method: method, credentials: "same-origin", headers: {}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-Svcctl-CSRF"] = data.csrf;
    init.body = JSON.stringify(body);
  }
  return fetch(path, init).then(function (r) {
    return r.json().then(function (j) {
      if (!r.ok) { var e = new Error(j.error || ("HTTP " + r.status)); e.reply = j; throw e; }
      return j;
    });
  });
};
var openTab = function (name) {
  document.querySelectorAll("#tabs button").forEach(function (o) { o.classList.toggle("on", o.getAttribute("data-tab") === name); });
  document.querySelectorAll("section.tab").forEach(function (s) { s.classList.toggle("hid", s.id !== name); });
  if (name === "results") { listRuns(); showHistory(); }
  if (name === "cluster" && data.cluster && fileVersion === null) { loadFile(); }
};
document.querySelectorAll("#tabs button").forEach(function (b) {
  b.addEventListener("click", function () { openTab(b.getAttribute("data-tab")); });
});
var kinds = {};
data.actions.forEach(function (a) {
  kinds[a[0]] = a[1];
  var o = el("option", a[0]);
  o.value = a[0];
  o.title = a[2];
  $("action").appendChild(o);
});
data.services.forEach(function (s) { var o = el("option"); o.value = s; $("services").appendChild(o); });
if (data.cluster) { $("usefile").classList.remove("hid"); $("checkfile").classList.remove("hid"); }

var words = function (text) { return text.trim().split(/\s+/).filter(Boolean); };
var form = function () {
  var argv = [], useFile = $("cluster").checked, action = $("action").value;
  [["batch", "--batch"], ["maxfail", "--max-fail"], ["batchwait", "--batch-wait"],
   ["settle", "--settle"], ["timeout", "-u"]].forEach(function (p) {
    var v = $(p[0]).value.trim();
    if (v) { argv.push(p[1], v); }
  });
  [["now", "--now"], ["sudo", "--sudo"], ["verbose", "-v"]].forEach(function (p) {
    if ($(p[0]).checked) { argv.push(p[1]); }
  });
  argv.push(action);
  var units = $("units").value.trim(), nodes = $("nodes").value.trim();
  if (useFile) {
    argv = argv.concat(units.split(/[\s,]+/).filter(Boolean));
    if (nodes) { argv.push("-n", nodes); }
  } else {
    if (units && kinds[action] !== "node") { argv.push(units); }
    argv = argv.concat(words(nodes));
  }
  return {argv: argv, cluster: useFile};
};

var counting = null;
$("nodes").addEventListener("input", function () {
  clearTimeout(counting);
  counting = setTimeout(function () {
    var text = $("nodes").value.trim();
    if (!text) { $("count").textContent = ""; return; }
    api("POST", "/api/count", {nodes: text}).then(function (r) {
      $("count").textContent = r.error || (r.count + " node" + (r.count === 1 ? "" : "s"));
    }, function (e) { $("count").textContent = e.message; });
  }, 250);
});

// A run's view: progress, the grid (pending cells first, filled as nodes
// finish), a node's text on click, then the grouped text; for a node check,
// the three lists.
var View = function (box) {
  this.box = box;
  box.textContent = "";
  this.progress = box.appendChild(el("p", "", "progress"));
  this.lists = box.appendChild(el("div", null, "check hid"));
  this.grid = box.appendChild(el("div", null, "grid"));
  this.detail = box.appendChild(el("pre", "Click a node to see its result.", "hid"));
  this.detail.id = box.id + "-detail";
  this.text = box.appendChild(el("pre", null, "hid"));
  this.cells = new Map();
  this.lines = new Map();
  var view = this;
  this.grid.addEventListener("click", function (e) {
    var name = e.target.getAttribute("data-node");
    if (name !== null) { view.show(name); }
  });
  this.grid.addEventListener("keydown", function (e) {
    var name = e.target.getAttribute("data-node");
    if (name !== null && (e.key === "Enter" || e.key === " ")) { view.show(name); e.preventDefault(); }
  });
};
View.prototype.cell = function (name) {
  var c = this.cells.get(name);
  if (!c) {
    c = el("b", name, "pe");
    c.setAttribute("data-node", name);
    c.tabIndex = 0;
    this.grid.appendChild(c);
    this.cells.set(name, c);
  }
  return c;
};
View.prototype.pending = function (names) {
  var view = this, frag = document.createDocumentFragment();
  names.forEach(function (n) { var c = el("b", n, "pe"); c.setAttribute("data-node", n); c.tabIndex = 0; view.cells.set(n, c); frag.appendChild(c); });
  this.grid.appendChild(frag);
};
View.prototype.node = function (entry) {
  var index = data.outcomes.indexOf(entry.outcome);
  this.cell(entry.node).className = "o" + index;
  this.lines.set(entry.node, [entry.node + ": " + entry.outcome].concat(entry.lines));
};
View.prototype.show = function (name) {
  this.detail.classList.remove("hid");
  this.detail.textContent = (this.lines.get(name) || [name + ": not finished yet"]).join("\n");
};
View.prototype.update = function (state) {
  var view = this;
  this.progress.textContent = state.error ? "error: " + state.error : state.progress;
  state.nodes.forEach(function (n) { view.node(n); });
  if (state.done && state.start === 0) {
    this.text.textContent = state.text + (state.notes || []).filter(function (n) {
      return state.text.indexOf(n) < 0; }).map(function (n) { return "svcctl: " + n + "\n"; }).join("");
    this.text.classList.toggle("hid", !state.text);
    if (state.check) { this.checkLists(state.check); }
  }
};
View.prototype.checkLists = function (lists) {
  var box = this.lists;
  box.textContent = "";
  box.classList.remove("hid");
  lists.forEach(function (list) {
    var count = 0, div = el("div");
    list[1].forEach(function (item) { count += item[1]; });
    div.appendChild(el("h3", list[0] + " (" + count + ")"));
    if (!list[1].length) { div.appendChild(el("p", "none")); }
    list[1].forEach(function (item) {
      var p = el("p");
      p.appendChild(el("code", item[0]));
      p.appendChild(document.createTextNode(" (" + item[1] + ")" + (item[2] ? ": " + item[2] : "")));
      div.appendChild(p);
    });
    box.appendChild(div);
  });
};

// Poll a run until it is done; then() is told when it is, with the finished
// document (its first page: the others carry nodes only). The server sends
// a bounded page of nodes at a time: while "more" come, the next page is
// asked at once (a big run's grid fills in a few batches, not one).
var watch = function (id, view, then) {
  var since = 0, start = 0, done = null;
  var poll = function () {
    api("GET", "/api/runs/" + encodeURIComponent(id) + "?since=" + since + "&from=" + start).then(function (state) {
      view.update(state);
      since = state.next;
      if (state.done) { start = state.start + state.nodes.length; done = done || state; }
      if (state.done && !state.more) { if (then) { then(done); } } else { setTimeout(poll, state.more ? 0 : 500); }
    }, function (e) {
      view.progress.textContent = e.message;
      if (then) { then(null); }
    });
  };
  poll();
};

var running = null;      // the Run tab's run, which its Stop button stops
// Launch asks the preview first: a refusal is shown, a big change confirmed,
// before anything is posted to /api/runs.
var launch = function (body, view, errorBox, then) {
  errorBox.textContent = "";
  return api("POST", "/api/preview", body).then(function (p) {
    if (p.error) { errorBox.textContent = p.error; return null; }
    if (p.confirm && !window.confirm(p.confirm)) { errorBox.textContent = "not launched"; return null; }
    body.confirmed = p.confirm !== "";
    return start(body, view, errorBox, then);
  }, function (e) { errorBox.textContent = e.message; });
};
var start = function (body, view, errorBox, then) {
  return api("POST", "/api/runs", body).then(function (r) {
    var v = new View(view), mine = view === $("runview");
    v.progress.textContent = r.command;
    v.pending(r.targets);
    if (mine) { running = r.id; $("stop").disabled = false; }
    watch(r.id, v, function (state) {
      if (mine && running === r.id) { running = null; $("stop").disabled = true; }
      if (then && state) { then(state); }
    });
  }, function (e) { errorBox.textContent = e.message; });
};
$("preview").addEventListener("click", function () {
  $("error").textContent = "";
  api("POST", "/api/preview", form()).then(function (r) {
    if (r.error) { $("plan").classList.add("hid"); $("error").textContent = r.error; return; }
    $("plan").classList.remove("hid");
    $("plan").textContent = r.command + "\n" + r.text + (r.confirm ? "\nLaunch will ask: " + r.confirm : "");
  }, function (e) { $("plan").classList.add("hid"); $("error").textContent = e.message; });
});
$("launch").addEventListener("click", function () { launch(form(), $("runview"), $("error")); });
$("stop").addEventListener("click", function () {
  if (running) { api("POST", "/api/runs/" + encodeURIComponent(running) + "/stop", {}).catch(function (e) { $("error").textContent = e.message; }); }
});
$("checkgo").addEventListener("click", function () {
  launch({argv: ["ping"].concat(words($("checknodes").value))}, $("checkview"), $("checkerror"));
});
$("checkfile").addEventListener("click", function () {
  launch({argv: ["ping"], cluster: true}, $("checkview"), $("checkerror"));
});

var listRuns = function () {
  api("GET", "/api/runs").then(function (r) {
    var table = $("runlist");
    table.textContent = "";
    var head = el("tr");
    ["started", "run", "by", "state"].forEach(function (h) { head.appendChild(el("th", h)); });
    table.appendChild(head);
    r.runs.concat(r.logged).forEach(function (run) {
      var row = el("tr");
      row.tabIndex = 0;
      [run.time, run.title, run.user, run.state].forEach(function (t) { row.appendChild(el("td", t)); });
      row.addEventListener("click", function () { watch(run.id, new View($("resultview"))); });
      table.appendChild(row);
    });
    $("resultsnote").textContent = r.log ? "this console's runs, then the log's" :
      "this console's runs only: no log (start it with --log FILE)";
  }, function (e) { $("resultsnote").textContent = e.message; });
};
$("refresh").addEventListener("click", function () { listRuns(); showHistory(); });

// The history: a row per story (the nodes with the same outcomes in the
// same runs, folded by the server as the history page folds them), a
// column per run; a column's head or a cell opens that run.
var openRun = function (id) { watch(id, new View($("resultview"))); };
var showHistory = function () {
  api("GET", "/api/history").then(function (h) {
    var table = $("history"), head = el("tr");
    table.textContent = "";
    $("historynote").textContent = !h.log ? "no log: no history (start the console with --log FILE)" :
      h.runs.length + " runs, the latest last; " + h.stories + " stories of nodes" +
      (h.stories > h.labels.length ? " (the first " + h.labels.length + " shown)" : "") +
      "; click a run (a column) to open it";
    head.appendChild(el("th", "nodes"));
    h.runs.forEach(function (run) {
      var th = el("th"), b = th.appendChild(el("button", "\u25be"));
      b.title = run[1] + " " + run[2] + " by " + run[3] + " (run " + run[0] + ")";
      b.setAttribute("data-run", run[0]);
      head.appendChild(th);
    });
    table.appendChild(head);
    h.labels.forEach(function (label, r) {
      var row = el("tr");
      row.appendChild(el("td", label, "label"));
      for (var k = 0; k < h.runs.length; k++) {
        var c = h.rows[r].charCodeAt(k) - 97, td = el("td"), b = td.appendChild(el("b", c < 0 ? "\u00b7" : "", c < 0 ? "out" : "o" + c));
        b.setAttribute("data-run", h.runs[k][0]);
        b.title = label + " in run " + h.runs[k][0] + ": " + (c < 0 ? "not in it" : data.outcomes[c]) +
          (h.messages[r + "," + k] ? "\n" + h.messages[r + "," + k] : "");
        row.appendChild(td);
      }
      table.appendChild(row);
    });
  }, function (e) { $("historynote").textContent = e.message; });
};
$("history").addEventListener("click", function (e) {
  var id = e.target.getAttribute("data-run");
  if (id) {
    $("historydetail").classList.toggle("hid", e.target.tagName !== "B");
    $("historydetail").textContent = e.target.title;
    openRun(id);
  }
});

// The cluster file: a run on one service or all, through the Run tab's own
// path (preview, confirmation, /api/runs with the console's file); after a
// status, each service's drift, and the graph coloured as the report's.
var drift = function (state) {
  var box = $("drift");
  box.textContent = "";
  document.querySelectorAll("section#cluster g.svc").forEach(function (g) {
    var tone = (state.tones || {})[g.getAttribute("data-service")];
    g.setAttribute("class", "svc" + (tone ? " " + tone : ""));
  });
  if (!state.services) { return; }
  var table = box.appendChild(el("table")), head = el("tr");
  ["service", "unit", "declared", "states", "drift"].forEach(function (h) { head.appendChild(el("th", h)); });
  table.appendChild(head);
  state.services.forEach(function (v) {
    var row = el("tr", null, v.drift ? "drift" : ""), states = el("td");
    [v.service, v.unit, v.declared].forEach(function (t) { row.appendChild(el("td", t)); });
    Object.keys(v.states).forEach(function (k) { states.appendChild(el("div", k + ": " + v.states[k])); });
    row.appendChild(states);
    row.appendChild(el("td", v.drift || "none"));
    table.appendChild(row);
  });
};
if (data.cluster) {
  [""].concat(data.services).forEach(function (name) {
    var row = el("tr");
    row.appendChild(el("td", name || "all services"));
    data.fileactions.forEach(function (action) {
      var b = el("button", action);
      b.setAttribute("data-action", action);
      b.setAttribute("data-service", name);
      b.addEventListener("click", function () {
        $("drift").textContent = "";
        launch({argv: [action].concat(name ? [name] : []), cluster: true}, $("fileview"), $("fileerror"), drift);
      });
      row.appendChild(el("td")).appendChild(b);
    });
    $("fileruns").appendChild(row);
  });
}

// The editor: the file as it is on disk and its version; a save is checked
// by the server as --check-config checks a file (its one line shown as is),
// refused if the file changed since; once saved, the page is drawn again
// from the new file.
var fileVersion = null;
var loadFile = function () {
  api("GET", "/api/file").then(function (f) {
    $("filetext").value = f.text;
    fileVersion = f.version;
    $("filetext").readOnly = !!f.readonly;
    $("filesave").disabled = !!f.readonly;
    var said = sessionStorage.getItem("svcctl-saved");
    sessionStorage.removeItem("svcctl-saved");
    $("filenote").textContent = f.readonly ? "read-only: " + f.readonly : said ||
      "Saved only when valid (checked as --check-config checks it); the previous version is kept as " + f.previous + ".";
  }, function (e) { $("filenote").textContent = e.message; });
};
if (data.cluster) {
  $("fileload").addEventListener("click", loadFile);
  $("filesave").addEventListener("click", function () {
    $("filesaveerror").textContent = "";
    api("POST", "/api/file", {text: $("filetext").value, version: fileVersion}).then(function (r) {
      sessionStorage.setItem("svcctl-saved", "saved: " + r.saved + "; the previous version is " + r.previous);
      location.hash = "cluster";
      location.reload();
    }, function (e) { $("filesaveerror").textContent = e.message; });
  });
}
if (location.hash === "#cluster" || location.hash === "#results") { openTab(location.hash.slice(1)); }
}());
"""


if __name__ == "__main__":
    console_main()
