#!/usr/bin/env python3
"""A real test cluster: systemd nodes in systemd-nspawn containers, over SSH.

    python3 tests/cluster.py up [-n N]     boot node1..nodeN (default 8, or as
                                           many as are already up)
    python3 tests/cluster.py down          stop every node, clean up
    python3 tests/cluster.py status        list nodes and their state
    python3 tests/cluster.py freeze|thaw|kill NODE   fault injection

`eval "$(python3 tests/cluster.py up)"` exports CLUSTERSHELL_CFGDIR so that
svcctl and clush reach the cluster: groups @all @odd @even @web (odd nodes),
and two fault endpoints, `down1` (connection refused) and `hang1` (accepts TCP,
never speaks).

One root file system is built once with debootstrap and cached in CACHE; every
node boots from it read-only with its own overlay (--volatile=overlay), its
own hostname, its own cgroup and its own sshd on 127.0.0.(10+N).
Facts behind these choices: ../shared/REFERENCE.md, section 5.
"""

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

CACHE = os.environ.get("SVCCTL_CLUSTER_CACHE", "/var/cache/svcctl-testcluster")
STATE = os.environ.get("SVCCTL_CLUSTER_STATE", "/run/svcctl-testcluster")
BASE = os.path.join(CACHE, "rootfs")
KEY = os.path.join(CACHE, "id_ed25519")
CGROUP_DIR = "svcctl-testcluster"
CGROUP_ROOTS = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup/freezer")
DOWN_ADDR = "127.0.0.2"     # nothing listens there: connection refused
HANG_ADDR = "127.0.0.3"     # accepts TCP and never speaks
PACKAGES = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap",
            "ssh": "openssh-client", "ssh-keygen": "openssh-client"}
INCLUDE = "systemd,systemd-sysv,dbus,openssh-server,sudo,python3,zsh"

UNITS = {
    "demo.service": "[Unit]\nDescription=svcctl demo\n[Service]\n"
                    "ExecStart=/bin/sleep infinity\n[Install]\n"
                    "WantedBy=multi-user.target\n",
    "demo-fail.service": "[Unit]\nDescription=svcctl demo that fails\n[Service]\n"
                         "Type=oneshot\nExecStart=/bin/false\n",
    "demo-slow.service": "[Unit]\nDescription=svcctl demo slow to start\n"
                         "[Service]\nType=oneshot\nExecStart=/bin/sleep 20\n"
                         "TimeoutStartSec=60\n",
    "demo-reload.service": "[Unit]\nDescription=svcctl demo with reload\n"
                           "[Service]\nExecStart=/bin/sleep infinity\n"
                           "ExecReload=/bin/true\n[Install]\n"
                           "WantedBy=multi-user.target\n",
    "demo@.service": "[Unit]\nDescription=svcctl demo instance %i\n[Service]\n"
                     "ExecStart=/bin/sleep infinity\n[Install]\n"
                     "WantedBy=multi-user.target\n",
    "demo-masked.service": "[Unit]\nDescription=svcctl demo, masked\n"
                           "[Service]\nExecStart=/bin/sleep infinity\n",
    # units that die once started: at once, a moment later, in a restart loop
    "demo-crash.service": "[Unit]\nDescription=svcctl demo, dies at once\n"
                          "StartLimitIntervalSec=0\n[Service]\nExecStart=/bin/false\n",
    "demo-late.service": "[Unit]\nDescription=svcctl demo, dies after 1.5 s\n"
                         "StartLimitIntervalSec=0\n[Service]\n"
                         "ExecStart=/bin/sh -c 'sleep 1.5; exit 2'\n",
    "demo-loop.service": "[Unit]\nDescription=svcctl demo, restarts in a loop\n"
                         "StartLimitIntervalSec=0\n[Service]\n"
                         "ExecStart=/bin/sh -c 'sleep 0.3; exit 3'\n"
                         "Restart=on-failure\nRestartSec=0.2\n",
    "demo-slowfail.service": "[Unit]\nDescription=svcctl demo, starts in 2.5 s, dies "
                             "4 s later\nStartLimitIntervalSec=0\n[Service]\n"
                             "ExecStartPre=/bin/sleep 2.5\n"
                             "ExecStart=/bin/sh -c 'sleep 4; exit 1'\n",
    # a daemon that refuses its configuration: the same story on most nodes,
    # another on node7 and node8 (%H: the node's name)
    "demo-config.service": "[Unit]\nDescription=svcctl demo, refuses its configuration\n"
                           "StartLimitIntervalSec=0\n[Service]\nType=notify\n"
                           "ExecStart=/bin/sh -c 'case %H in node7|node8) echo \"cannot "
                           "bind 0.0.0.0:6817: Address already in use\" >&2;; *) echo "
                           "\"/etc/demo.conf line 12: unknown key SlurmctldHost2\" >&2;; "
                           "esac; exit 78'\n",
    # the types real daemons have: start returns once they say they are up
    "demo-notify.service": "[Unit]\nDescription=svcctl demo, Type=notify\n"
                           "[Service]\nType=notify\nNotifyAccess=all\n"
                           "ExecStart=/bin/sh -c 'systemd-notify --ready; "
                           "exec sleep infinity'\n",
    "demo-notify@.service": "[Unit]\nDescription=svcctl demo %i, Type=notify\n"
                            "[Service]\nType=notify\nNotifyAccess=all\n"
                            "ExecStart=/bin/sh -c 'systemd-notify --ready; "
                            "exec sleep infinity'\n",
    "demo-forking.service": "[Unit]\nDescription=svcctl demo, Type=forking\n"
                            "[Service]\nType=forking\n"
                            "ExecStart=/bin/sh -c 'sleep infinity &'\n",
}
WEB_UNIT = "[Unit]\nDescription=svcctl web, odd nodes only\n[Service]\n" \
           "ExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
SUDOERS = "".join("%s ALL=(root) NOPASSWD: /usr/bin/systemctl, /bin/systemctl\n" % user
                  for user in ("ops", "zshop", "dashop"))
# Login users: (name, login shell). zshop and dashop have the login shells
# whose echo reads backslashes; evil's login shell plays a compromised node,
# as /run/evil-mode on that node says (nothing there: a plain sh).
USERS = (("ops", "/bin/sh"), ("nosudo", "/bin/sh"), ("zshop", "/usr/bin/zsh"),
         ("dashop", "/bin/dash"), ("evil", "/usr/local/bin/evil-shell"))
EVIL_SHELL = r"""#!/bin/sh
# A compromised node's reply, for svcctl's tests (sshd runs: evil-shell -c CMD).
flood() { head -c 300000000; }
case "$(cat /run/evil-mode 2>/dev/null)" in
  nonl) tr '\000' x </dev/zero | flood ;;
  lines) yes | flood ;;
  markers) m=$(printf '%s\n' "$2" | sed -n 's/.*m=\(@@svcctl-[0-9a-f]*\).*/\1/p')
           yes "$m state after LoadState=loaded ActiveState=active" | flood ;;
  *) exec /bin/sh "$@" ;;
esac
"""


def log(message):
    sys.stderr.write("cluster: %s\n" % message)
    sys.stderr.flush()


def node_addr(index):
    return "127.0.0.%d" % (10 + index)


def node_dir(name):
    return os.path.join(STATE, name)


# --- preparing the machine and the root file system -------------------------

def ensure_packages():
    missing = sorted({pkg for cmd, pkg in PACKAGES.items() if not shutil.which(cmd)})
    if missing:
        log("installing %s" % " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env,
                       stdout=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q"] + missing, check=True,
                       env=env, stdout=sys.stderr)


def debian_mirror():
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            with open(path) as handle:
                for line in handle:
                    words = line.split()
                    if words[:1] == ["URIs:"] and "debian" in words[1]:
                        return words[1]
                    if words[:1] == ["deb"] and "debian" in line and "security" not in line:
                        return [w for w in words if "://" in w][0]
        except OSError:
            continue
    return "http://deb.debian.org/debian"


def ensure_base():
    """The cached root file system, built again when its package list changed."""
    stamp = os.path.join(CACHE, "include.stamp")
    if os.path.isdir(BASE) and os.path.exists(stamp) and open(stamp).read() == INCLUDE:
        return
    shutil.rmtree(BASE, ignore_errors=True)
    os.makedirs(CACHE, exist_ok=True)
    tmp = BASE + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    log("building the node root file system with debootstrap (about a minute)")
    subprocess.run(["debootstrap", "--variant=minbase", "--include=" + INCLUDE,
                    "bookworm", tmp, debian_mirror()], check=True,
                   stdout=sys.stderr)
    os.rename(tmp, BASE)
    write(stamp, INCLUDE)


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def configure_base():
    """Units, users, keys and sshd settings shared by every node (cached)."""
    if not os.path.exists(KEY):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", KEY],
                       check=True)
    with open(KEY + ".pub") as handle:
        pubkey = handle.read()
    spec = repr((3, sorted(UNITS.items()), WEB_UNIT, SUDOERS, USERS, EVIL_SHELL,
                 pubkey)).encode()
    stamp = os.path.join(BASE, "etc/svcctl-testcluster.stamp")
    digest = hashlib.sha256(spec).hexdigest()
    if os.path.exists(stamp) and open(stamp).read() == digest:
        return
    log("configuring the node root file system")
    # Unit files live where packages put them, so that mask/unmask work.
    for name, text in UNITS.items():
        write(os.path.join(BASE, "usr/lib/systemd/system", name), text)
        stale = os.path.join(BASE, "etc/systemd/system", name)
        if os.path.lexists(stale):
            os.remove(stale)
    os.symlink("/dev/null", os.path.join(BASE, "etc/systemd/system/demo-masked.service"))
    os.makedirs(os.path.join(BASE, "usr/local/lib/systemd/system"), exist_ok=True)
    write(os.path.join(BASE, "usr/local/bin/evil-shell"), EVIL_SHELL, 0o755)
    for user, shell in USERS:
        if subprocess.run(["chroot", BASE, "id", user],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            subprocess.run(["chroot", BASE, "useradd", "-m", "-s", shell, user],
                           check=True)
    for home, user in [("root", "root")] + [("home/" + u, u) for u, _ in USERS]:
        path = os.path.join(BASE, home, ".ssh/authorized_keys")
        write(path, pubkey, 0o600)
        subprocess.run(["chroot", BASE, "chown", "-R", "%s:%s" % (user, user),
                        "/" + home + "/.ssh"], check=True)
    write(os.path.join(BASE, "etc/sudoers.d/ops"), SUDOERS, 0o440)
    write(os.path.join(BASE, "etc/ssh/sshd_config.d/10-svcctl.conf"),
          "PasswordAuthentication no\nUseDNS no\nMaxStartups 100:30:200\n")
    # Quieter, faster nodes: nothing on the console, no getty, no timers.
    for unit in ("getty@tty1.service", "console-getty.service",
                 "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
                 "fstrim.timer", "systemd-tmpfiles-clean.timer"):
        link = os.path.join(BASE, "etc/systemd/system", unit)
        if not os.path.lexists(link):
            os.symlink("/dev/null", link)
    write(stamp, digest)


# --- the per-node files, the config dir, the fault endpoints -----------------

def write_config(count):
    cfgdir = os.path.join(STATE, "clustershell")
    ssh_config = os.path.join(STATE, "ssh_config")
    hosts = ["Host node* down* hang*", "  User root", "  IdentityFile %s" % KEY,
             "  IdentitiesOnly yes", "  StrictHostKeyChecking no",
             "  UserKnownHostsFile /dev/null", "  LogLevel ERROR",
             "Host down1", "  HostName %s" % DOWN_ADDR,
             "Host hang1", "  HostName %s" % HANG_ADDR]
    for index in range(1, count + 1):
        hosts += ["Host node%d" % index, "  HostName %s" % node_addr(index)]
    write(ssh_config, "\n".join(hosts) + "\n")
    write(os.path.join(cfgdir, "clush.conf"),
          "[Main]\nfanout: 64\nconnect_timeout: 5\ncommand_timeout: 0\n"
          "ssh_options: -F %s\n" % ssh_config)
    write(os.path.join(cfgdir, "groups.conf"),
          "[Main]\ndefault: testcluster\nautodir: $CFGDIR/groups.d\n")
    odd = ",".join(str(i) for i in range(1, count + 1, 2))
    even = ",".join(str(i) for i in range(2, count + 1, 2))
    groups = ["testcluster:", "  all: 'node[1-%d]'" % count,
              "  odd: 'node[%s]'" % odd, "  web: 'node[%s]'" % odd,
              "  faults: 'down1,hang1'"]
    if even:
        groups.append("  even: 'node[%s]'" % even)
    write(os.path.join(cfgdir, "groups.d/testcluster.yaml"), "\n".join(groups) + "\n")
    return cfgdir


def hang_server():
    """Accept TCP on HANG_ADDR:22 and never answer (runs detached)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((HANG_ADDR, 22))
    server.listen(512)
    held = []
    while True:
        conn, _ = server.accept()
        held.append(conn)
        del held[:-256]


def start_hang_server():
    pidfile = os.path.join(STATE, "hang.pid")
    if alive(read_pid(pidfile)):
        return
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "hang-server"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    write(pidfile, str(proc.pid))


def read_pid(path):
    try:
        return int(open(path).read())
    except (OSError, ValueError):
        return None


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:    # a zombie is not alive
        return open("/proc/%d/stat" % pid).read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def ssh_ready(addr):
    try:
        with socket.create_connection((addr, 22), timeout=1) as conn:
            conn.settimeout(1)
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def join_cgroups(name):
    """Give the node its own cgroup before it boots (REFERENCE.md section 5)."""
    for root in CGROUP_ROOTS:
        if os.path.isdir(root):
            path = os.path.join(root, CGROUP_DIR, name)
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "cgroup.procs"), "w") as handle:
                handle.write(str(os.getpid()))


def boot_node(index):
    name = "node%d" % index
    directory = node_dir(name)
    pid = read_pid(os.path.join(directory, "pid"))
    if alive(pid):
        return False
    write(os.path.join(directory, "hostname"), name + "\n")
    write(os.path.join(directory, "hosts"),
          "127.0.0.1 localhost\n%s %s\n" % (node_addr(index), name))
    write(os.path.join(directory, "sshd.conf"),
          "ListenAddress %s\n" % node_addr(index))
    units = os.path.join(directory, "units")
    os.makedirs(units, exist_ok=True)
    if index % 2:
        write(os.path.join(units, "web.service"), WEB_UNIT)
    cmd = ["systemd-nspawn", "-D", BASE, "--register=no", "--keep-unit",
           "--volatile=overlay", "-M", name, "-b", "--console=passive",
           "--bind-ro=%s/hostname:/etc/hostname" % directory,
           "--bind-ro=%s/hosts:/etc/hosts" % directory,
           "--bind-ro=%s/sshd.conf:/etc/ssh/sshd_config.d/20-listen.conf" % directory,
           "--bind-ro=%s:/usr/local/lib/systemd/system" % units]
    # Any node can serve as a ClusterShell gateway (tree mode): it needs the
    # library (pure Python: the host's copy) and, at the same paths as on the
    # host, the ssh settings and key that the root passes on to it.
    cmd += ["--bind-ro=%s:%s" % (path, path) for path in (
        os.path.join(STATE, "ssh_config"), KEY)]
    library = clustershell_dir()
    if library:
        cmd.append("--bind-ro=%s:/usr/lib/python3/dist-packages/ClusterShell" % library)
    with open(os.path.join(directory, "console.log"), "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: join_cgroups(name))
    write(os.path.join(directory, "pid"), str(proc.pid))
    return True


def clustershell_dir():
    try:
        import ClusterShell
    except ImportError:
        return None
    return os.path.dirname(os.path.abspath(ClusterShell.__file__))


def prepare_host():
    os.makedirs("/run/systemd/nspawn", exist_ok=True)
    if not os.path.ismount("/run/systemd/nspawn"):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/systemd/nspawn"],
                       check=True)
    with open("/proc/sys/fs/inotify/max_user_instances", "r+") as handle:
        if int(handle.read()) < 8192:
            handle.seek(0)
            handle.write("8192")


def up(count):
    if os.geteuid() != 0:
        sys.exit("cluster: must run as root")
    ensure_packages()
    ensure_base()
    configure_base()
    prepare_host()
    os.makedirs(STATE, exist_ok=True)
    write(os.path.join(STATE, "count"), str(count))
    cfgdir = write_config(count)
    start_hang_server()
    shrink(count)
    started = time.monotonic()
    booted = [index for index in range(1, count + 1) if boot_node(index)]
    deadline = time.monotonic() + 60 + 2 * count
    waiting = set(range(1, count + 1))
    while waiting and time.monotonic() < deadline:
        waiting = {i for i in waiting if not ssh_ready(node_addr(i))}
        if waiting:
            time.sleep(0.3)
    if waiting:
        sys.exit("cluster: nodes not answering after boot: %s"
                 % ",".join("node%d" % i for i in sorted(waiting)))
    wait_systemd(count, deadline)
    if booted:
        log("%d node(s) booted in %.1f s" % (len(booted), time.monotonic() - started))
    print("export CLUSTERSHELL_CFGDIR=%s" % cfgdir)


def shrink(count):
    """`up -n 8` after a larger cluster (the bench's): the nodes beyond count
    are stopped, so that the groups and the nodes agree."""
    extra = [name for name in node_names() if name[4:].isdigit() and int(name[4:]) > count]
    for name in extra:
        stop_process(read_pid(os.path.join(node_dir(name), "pid")), 5)
        kill(name)
        shutil.rmtree(node_dir(name), ignore_errors=True)
    if extra:
        log("%d node(s) beyond node%d stopped" % (len(extra), count))


def ssh_argv(node, *command):
    return ["ssh", "-F", os.path.join(STATE, "ssh_config"), "-oBatchMode=yes",
            "-oConnectTimeout=5", node] + list(command)


def wait_systemd(count, deadline):
    """sshd answers before systemd has finished booting: wait for that too."""
    for index in range(1, count + 1):
        while True:
            state = subprocess.run(ssh_argv("node%d" % index, "systemctl",
                                            "is-system-running"),
                                   capture_output=True, text=True).stdout.strip()
            if state in ("running", "degraded") or time.monotonic() > deadline:
                break
            time.sleep(0.3)


def stop_process(pid, bound=15.0):
    if not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + bound
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def node_names():
    if not os.path.isdir(STATE):
        return []
    names = [n for n in os.listdir(STATE) if n.startswith("node")]
    return sorted(names, key=lambda n: int(n[4:]) if n[4:].isdigit() else 0)


def down():
    pids = [read_pid(os.path.join(node_dir(n), "pid")) for n in node_names()]
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    for name in node_names():
        thaw(name)
    for pid in pids:
        stop_process(pid)
    for name in node_names():
        kill(name)                          # whatever a clean halt left behind
    stop_process(read_pid(os.path.join(STATE, "hang.pid")), 2)
    for root in CGROUP_ROOTS:
        top = os.path.join(root, CGROUP_DIR)
        for dirpath, dirnames, _ in sorted(os.walk(top, topdown=False), reverse=True):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
    shutil.rmtree(STATE, ignore_errors=True)
    log("cluster is down")


def status():
    for name in node_names():
        pid = read_pid(os.path.join(node_dir(name), "pid"))
        index = int(name[4:])
        state = "up" if alive(pid) and ssh_ready(node_addr(index)) else (
            "booted, no ssh" if alive(pid) else "down")
        print("%s %s %s" % (name, node_addr(index), state))
    print("hang1 %s %s" % (HANG_ADDR, "up" if alive(read_pid(
        os.path.join(STATE, "hang.pid"))) else "down"))


def freezer(name, state):
    path = os.path.join("/sys/fs/cgroup/freezer", CGROUP_DIR, name, "freezer.state")
    if os.path.exists(path):
        with open(path, "w") as handle:
            handle.write(state)


def freeze(name):
    """The node stops answering: TCP connects, sshd never speaks."""
    freezer(name, "FROZEN")


def thaw(name):
    freezer(name, "THAWED")


def cgroup_pids(name):
    """Every process of a node: nspawn, the node's init and all below."""
    pids = set()
    for dirpath, _, files in os.walk(os.path.join("/sys/fs/cgroup/systemd",
                                                  CGROUP_DIR, name)):
        if "cgroup.procs" in files:
            with open(os.path.join(dirpath, "cgroup.procs")) as handle:
                pids.update(int(line) for line in handle if line.strip())
    return pids


def kill(name):
    """The node dies at once (power cut). Killing nspawn alone would leave
    the node's init running in its own PID namespace: kill the whole cgroup."""
    freeze(name)                            # nothing forks while we kill
    for pid in cgroup_pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    thaw(name)
    end = time.monotonic() + 10
    while cgroup_pids(name) and time.monotonic() < end:
        time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "freeze",
                                            "thaw", "kill", "hang-server"))
    parser.add_argument("node", nargs="?")
    parser.add_argument("-n", type=int, help="number of nodes (default: as many as "
                        "are up, at least 8)")
    args = parser.parse_args()
    if args.command == "up":
        up(args.n or max([8] + [int(n[4:]) for n in node_names() if n[4:].isdigit()
                                and alive(read_pid(os.path.join(node_dir(n), "pid")))]))
    elif args.command == "down":
        down()
    elif args.command == "status":
        status()
    elif args.command == "hang-server":
        hang_server()
    else:
        if not args.node:
            parser.error("%s needs a node name" % args.command)
        {"freeze": freeze, "thaw": thaw, "kill": kill}[args.command](args.node)


if __name__ == "__main__":
    main()
