"""Synthetic node output in svcctl's remote framing, for the pure tests."""
MARKER = "@@svcctl-0123456789ab"


def state(load="loaded", active="inactive", sub="dead", file="disabled"):
    return [b"LoadState=" + load.encode(), b"ActiveState=" + active.encode(),
            b"SubState=" + sub.encode(), b"UnitFileState=" + file.encode()]


def frame(unit, before, after, rc=0, output=(), marker=MARKER):
    """One unit's section; before=None for a query (no state read before)."""
    m = marker.encode() + b" "
    head = m + b"unit " + unit.encode()
    if before is not None:
        head += b" before " + b" ".join(before)
    return ([head] + [line.encode() for line in output]
            + [m + b"rc %d after " % rc + b" ".join(after)])


def end(marker=MARKER):
    return [marker.encode() + b" end"]


INACTIVE = state()
ACTIVE = state(active="active", sub="running")
FAILED = state(active="failed", sub="failed", file="static")
MASKED = state(load="masked", sub="dead", file="masked")
MISSING = state(load="not-found", file="")
