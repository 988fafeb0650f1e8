"""Synthetic node output in svcctl's remote framing, for the pure tests."""
import io
import json
import re

import svcctl

MARKER = "@@svcctl-0123456789ab"


def state(load="loaded", active="inactive", sub="dead", file="disabled"):
    return [b"LoadState=" + load.encode(), b"ActiveState=" + active.encode(),
            b"SubState=" + sub.encode(), b"UnitFileState=" + file.encode()]


def framed(*units, marker=MARKER):
    """A node's output for units given as (name, before, after, rc, output);
    before=None for a query, which runs nothing and reads the state once."""
    m = marker.encode() + b" "
    out = []
    if units[0][1] is not None:
        out.append(m + b"state before " + b" ".join(t for u in units for t in u[1]))
        for name, _, _, rc, output in units:
            out += [m + b"unit " + name.encode()] + [line.encode() for line in output]
            out.append(m + b"rc %d" % rc)
    else:
        out += [line.encode() for u in units for line in u[4]]
    out.append(m + b"state after " + b" ".join(t for u in units for t in u[2]))
    return out


def frame(unit, before, after, rc=0, output=(), marker=MARKER):
    """One unit's whole output but the end marker."""
    return framed((unit, before, after, rc, output), marker=marker)


def journal(lines):
    """A failed unit's journal lines as a node sends them: a `.` first (see
    _JOURNAL)."""
    return [b"." + b"".join(lines[:1])] + list(lines[1:])


def entry(message, node=1, seq=1):
    """One entry as `journalctl -o json --output-fields=MESSAGE` prints it:
    its head (cursor, times, sequence number, boot id) differs from node to
    node, in length too (a node booted long ago, a journal long in use)."""
    boot, real, mono, number = "%032x" % (node * 7919), 1764000000000000 + seq * 1000, \
        10 ** (4 + node) + seq, 16 ** (2 * node) + seq
    cursor = "s=%032x;i=%x;b=%s;m=%x;t=%x;x=%016x" % (node, number, boot, mono, real,
                                                       seq * node)
    return json.dumps({"__CURSOR": cursor, "__REALTIME_TIMESTAMP": str(real),
                       "__MONOTONIC_TIMESTAMP": str(mono), "__SEQNUM": str(number),
                       "_BOOT_ID": boot, "MESSAGE": message},
                      separators=(",", ":")).encode()


def end(marker=MARKER):
    return [marker.encode() + b" end"]


INACTIVE = state()
ACTIVE = state(active="active", sub="running")
FAILED = state(active="failed", sub="failed", file="static")
MASKED = state(load="masked", sub="dead", file="masked")
MISSING = state(load="not-found", file="")


# --- a whole run in-process: ClusterShell's execution replaced by a stub -----

def stub_nodes(monkeypatch, reply, by_node=False):
    """Every node answers `reply(marker, command)` (lines, without the end);
    by_node: `reply(marker, command, node)`."""
    def execute(jobs, settings, signals, node_done, caps, observer=None):
        raw = {}
        for command, nodes in jobs:
            marker = re.search(r"m=(@@svcctl-[0-9a-f]+);", command).group(1)
            for node in nodes:
                raw[node] = svcctl.RawResult(
                    stdout=[line.encode() for line in (
                        reply(marker, command, node) if by_node else reply(marker, command))
                            + ["%s end" % marker]], rc=0)
                node_done(node, raw[node])
        return raw, ""
    monkeypatch.setattr(svcctl, "execute", execute)


def main(*argv):
    """svcctl's main() in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    return svcctl.main(list(argv), out, err), out.getvalue(), err.getvalue()
