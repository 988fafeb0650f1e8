"""Synthetic node output in svcctl's remote framing, for the pure tests."""
MARKER = "@@svcctl-0123456789ab"


def state(load="loaded", active="inactive", sub="dead", file="disabled"):
    return [b"LoadState=" + load.encode(), b"ActiveState=" + active.encode(),
            b"SubState=" + sub.encode(), b"UnitFileState=" + file.encode()]


def frame(unit, before, after, rc=0, output=(), marker=MARKER):
    m = marker.encode() + b" "
    return ([m + b"unit " + unit.encode(), m + b"before"] + before
            + [m + b"action"] + [line.encode() for line in output]
            + [m + b"rc %d" % rc, m + b"after"] + after)


def end(marker=MARKER):
    return [marker.encode() + b" end"]


INACTIVE = state()
ACTIVE = state(active="active", sub="running")
FAILED = state(active="failed", sub="failed", file="static")
MASKED = state(load="masked", sub="dead", file="masked")
MISSING = state(load="not-found", file="")
