"""Shared fixtures: the real test cluster and helpers to run the installed svcctl."""
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
IN_CI = os.environ.get("CI") == "true"


def _cluster_unavailable():
    if os.geteuid() != 0:
        return "the test cluster needs root (systemd-nspawn)"
    if not shutil.which("apt-get") and not shutil.which("systemd-nspawn"):
        return "no systemd-nspawn and no apt-get to install it"
    return None


@pytest.fixture(scope="session")
def cluster():
    """Boot (or reuse) the 8-node test cluster; return the environment that
    reaches it. Never skipped in CI."""
    reason = _cluster_unavailable()
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    proc = subprocess.run([sys.executable, os.path.join(HERE, "cluster.py"), "up", "-n", "8"],
                          capture_output=True, text=True)
    match = re.search(r"export CLUSTERSHELL_CFGDIR=(\S+)", proc.stdout)
    if proc.returncode or not match:
        pytest.fail("cluster did not come up:\n" + proc.stderr[-2000:])
    env = dict(os.environ, CLUSTERSHELL_CFGDIR=match.group(1), NO_COLOR="1")
    return env


def svcctl_argv():
    """The installed console script; in CI it must be installed."""
    path = shutil.which("svcctl")
    if path:
        return [path]
    if IN_CI:
        pytest.fail("svcctl is not installed")
    return [sys.executable, os.path.join(ROOT, "svcctl.py")]


class Run:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.elapsed = elapsed

    def __repr__(self):
        return "rc=%s\n--- stdout\n%s--- stderr\n%s" % (self.rc, self.out, self.err)


@pytest.fixture
def svcctl(cluster):
    """svcctl(*args) -> Run, against the test cluster."""
    import time

    def run(*args, timeout=120):
        start = time.monotonic()
        proc = subprocess.run(svcctl_argv() + list(args), env=cluster,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        return Run(proc, time.monotonic() - start)
    return run


@pytest.fixture
def on_nodes(cluster):
    """on_nodes(nodes, shell command): set the scene with plain clush."""
    def run(nodes, command):
        proc = subprocess.run(["clush", "-S", "-w", nodes, command], env=cluster,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout
    return run


# What a test may change on a node and must put back: units running or
# failed (not those merely loaded: systemd unloads them when it likes), unit
# files' enablement and masks, users and their shells, the evil shell's mode,
# units written at run time.
NODE_SCENE = (
    "systemctl list-units --plain --no-legend --full 'demo*' 'web*' 'svcctl*' "
    "| awk '{print $1, $3, $4}'; systemctl list-unit-files --no-legend 'demo*' 'web*' "
    "| awk '{print $1, $2}'; cut -d: -f1,7 /etc/passwd; cat /run/evil-mode 2>/dev/null; "
    "ls /run/systemd/system /etc/systemd/system 2>/dev/null | grep -v wants; true")


def node_scene(env):
    proc = subprocess.run(["clush", "-w", "node[1-8]", NODE_SCENE], env=env,
                          capture_output=True, text=True, timeout=60)
    return sorted(filter(None, proc.stdout.splitlines())), proc.stderr


@pytest.fixture
def restore_units(on_nodes):
    """After the test: the demo units stopped and nothing failed, as the
    cluster boots (for files whose tests start units to set their scene)."""
    yield
    on_nodes("node[1-8]", "systemctl stop 'demo*' web 2>/dev/null; "
                          "systemctl reset-failed; true")


@pytest.fixture(autouse=True, scope="module")
def nodes_left_as_found(request):
    """Every cluster test file leaves the nodes as it found them: one test's
    leftovers must never fail another. Checked around each file that uses
    the cluster (around each test: 3.6 s a test, over 10 minutes in all); a
    difference fails the file's last test, naming what changed."""
    if not request.module.__name__.startswith("test_cluster_"):
        yield
        return
    env = request.getfixturevalue("cluster")
    before, _ = node_scene(env)
    yield
    after, problems = node_scene(env)
    added = [line for line in after if line not in before]
    gone = [line for line in before if line not in after]
    assert not (added or gone), "%s left the nodes changed:\n+ %s\n- %s\n%s" % (
        request.module.__name__, "\n+ ".join(added), "\n- ".join(gone), problems)


def wait_on_nodes(env, nodes, command, check, limit=30):
    """Run `command` on the nodes (clush -N, words) until check(words) is
    true: the moment a test waits for, not a sleep that a busy machine
    outlasts."""
    import time
    deadline = time.monotonic() + limit
    while True:
        words = subprocess.run(["clush", "-N", "-w", nodes, command], env=env,
                               capture_output=True, text=True).stdout.split()
        if check(words):
            return words
        if time.monotonic() > deadline:
            raise AssertionError("not seen on %s in %d s: %r" % (nodes, limit, words))
        time.sleep(0.2)


def restarted(env, nodes, unit):
    """A check for wait_on_nodes: every node's `unit` runs a new invocation
    (systemctl restart leaves NRestarts alone), read now."""
    ids = subprocess.run(["clush", "-N", "-w", nodes, "systemctl show -p InvocationID "
                          "--value " + unit], env=env, capture_output=True,
                         text=True).stdout.split()
    return lambda words: len(words) == len(ids) and not set(words) & set(ids)


def normalise(text):
    """Run times vary: blank them out so outputs compare byte for byte."""
    return re.sub(r"in \d+\.\d s", "in X s", text)
