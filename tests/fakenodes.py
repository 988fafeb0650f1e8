"""Fake nodes for tests that need no cluster (REFERENCE.md section 8,
"Simulating thousands of nodes"): clush.conf's ssh_path is a script that drops
ssh's options and the host name and runs the remote command locally, with a
fake `systemctl` first in PATH. Each node keeps its units' states in a
directory of its own.

- `down*` nodes: connection refused (ssh's message, rc 255);
- `html.service`: start fails, printing HTML and an escape sequence;
- `slow.service`: start takes FAKE_SLOW seconds (default 1);
- `sleepy.service`: start takes 60 s, or until the fake ssh process that runs
  it is killed (a node's session ends when sshd loses its client): a run
  stopped leaves nothing running only if its ssh processes were killed;
- `missing.service`: not found; anything else starts and stops."""
import os
import sys

FAKE_SSH = r"""#!/bin/sh
# fake ssh: the last two words are the host and the remote command
for last; do :; done
host=
for w; do [ "$w" = "$last" ] && break; host=$w; done
case $host in down*)
  echo "ssh: connect to host $host port 22: Connection refused" >&2; exit 255;;
esac
FAKE_SSH_PID=$$ FAKE_NODE=$host PATH="$FAKE_BIN:$PATH" exec /bin/sh -c "$last"
"""

FAKE_SYSTEMCTL = r"""#!/bin/sh
# fake systemctl: UNIT is active on this node when $FAKE_STATE/NODE/UNIT exists
d="$FAKE_STATE/$FAKE_NODE"
mkdir -p "$d"
case $1 in
show)
  shift 4
  for u; do
    a=inactive; s=dead; l=loaded
    [ -e "$d/$u" ] && { a=active; s=running; }
    [ "$u" = missing.service ] && l=not-found
    printf 'LoadState=%s\nActiveState=%s\nSubState=%s\nUnitFileState=disabled\n' $l $a $s
    printf 'Result=success\nExecMainCode=0\nExecMainStatus=0\nNRestarts=0\n\n'
  done;;
start)
  u=$3
  case $u in
    missing.service) echo "Failed to start $u: Unit $u not found."; exit 5;;
    html.service) printf '<img src=x onerror=alert(1)><script>alert(2)</script>\033[31m\n'
                  exit 1;;
    slow.service) sleep "${FAKE_SLOW:-1}";;
    sleepy.service)   # until its ssh "connection" is gone (at most 60 s)
      i=0; while [ $i -lt 600 ] && kill -0 "$FAKE_SSH_PID" 2>/dev/null; do
        sleep 0.1; i=$((i+1)); done;;
  esac
  : > "$d/$u";;
stop) rm -f "$d/$3";;
is-system-running) echo running;;
*) echo "fake systemctl: $*"; exit 1;;
esac
"""


def make_fake_cluster(root: str) -> dict:
    """Write the fake ssh, systemctl, clush.conf and groups under `root`;
    return the environment that makes svcctl use them."""
    bin_dir, cfg = os.path.join(root, "bin"), os.path.join(root, "cfg")
    os.makedirs(bin_dir, exist_ok=True)
    os.makedirs(os.path.join(cfg, "groups.d"), exist_ok=True)
    ssh = os.path.join(root, "ssh")
    for path, text in ((ssh, FAKE_SSH), (os.path.join(bin_dir, "systemctl"),
                                         FAKE_SYSTEMCTL)):
        with open(path, "w") as out:
            out.write(text)
        os.chmod(path, 0o755)
    with open(os.path.join(cfg, "clush.conf"), "w") as out:
        out.write("[Main]\nssh_path: %s\nconnect_timeout: 5\n" % ssh)
    with open(os.path.join(root, "svcctl.conf"), "w") as out:
        out.write("# the site's defaults: none\n")
    with open(os.path.join(cfg, "groups.conf"), "w") as out:
        out.write("[Main]\ndefault: fake\nautodir: $CFGDIR/groups.d\n")
    with open(os.path.join(cfg, "groups.d", "fake.yaml"), "w") as out:
        out.write("fake:\n  all: 'node[1-8]'\n  web: 'node[1,3,5,7]'\n")
    return dict(os.environ, CLUSTERSHELL_CFGDIR=cfg, FAKE_BIN=bin_dir,
                FAKE_STATE=os.path.join(root, "state"), NO_COLOR="1",
                SVCCTL_CONF=os.path.join(root, "svcctl.conf"), XDG_CONFIG_HOME=os.path.join(root, "xdg"),
                PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PYTHONUNBUFFERED="1", PATH=os.path.dirname(sys.executable) + os.pathsep
                + os.environ.get("PATH", "/usr/bin:/bin"))
