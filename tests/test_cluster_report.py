"""Integration: HTML reports of real runs, loaded in headless Chromium."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import IN_CI

pytestmark = pytest.mark.usefixtures("restore_units")

CHROMIUM = shutil.which("chromium")
# Chromium's own background traffic (updates, accounts): not the page's. It
# goes nowhere anyway: every request is sent to a dead local proxy.
CHROMIUM_OWN = re.compile(r"^https?://[^/]*\.(google|googleapis|gstatic)\.com/")


def load_in_chromium(path, tmp_path):
    """Return the page's DOM and every URL the browser requested."""
    if not CHROMIUM:
        if IN_CI:
            pytest.fail("chromium is not installed")
        pytest.skip("chromium is not installed")
    netlog = tmp_path / "netlog.json"
    proc = subprocess.run([
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-default-apps", "--disable-extensions", "--no-pings",
        "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
        "--user-data-dir=%s" % (tmp_path / "profile"), "--log-net-log=%s" % netlog,
        "--enable-logging=stderr", "--v=0",
        "--dump-dom", "file://%s" % path], capture_output=True, text=True, timeout=120)
    urls = set(re.findall(r'"url":"([^"]+)"', netlog.read_text()))
    load_in_chromium.console = proc.stderr
    return proc.stdout, {u for u in urls if not CHROMIUM_OWN.match(u)}


def csp_violations():
    """What Chromium's console said about the Content-Security-Policy."""
    return [line for line in load_in_chromium.console.splitlines()
            if "Content Security Policy" in line or "Content-Security-Policy" in line]


def test_report_of_a_mixed_run(svcctl, on_nodes, tmp_path):
    on_nodes("node[1-8]", "systemctl stop demo web; true")
    page, log = tmp_path / "report.html", tmp_path / "svcctl.log"
    run = svcctl("start", "demo,web,demo-fail", "@all,down1", "--html", str(page),
                 "--log", str(log), "--json")
    on_nodes("node[1-8]", "systemctl reset-failed")
    assert run.rc == 4
    doc = json.loads(run.out)
    html = page.read_text()
    assert html.count('<b class="o') == 9
    for result in doc["nodes"]:
        assert 'tabindex="0">%s</b>' % result["node"] in html
    assert "svcctl start demo.service,web.service,demo-fail.service: 9 nodes, exit 4" in html

    # the same page, rebuilt later from the log (a cron job's status page)
    again = tmp_path / "again.html"
    rebuilt = svcctl("report", str(log), "--html", str(again))
    assert rebuilt.rc == 0, rebuilt
    strip = lambda text: re.sub(r", [\d.]+ s, run", ", run", text)
    assert strip(again.read_text()) == strip(html)

    dom, urls = load_in_chromium(page, tmp_path)
    assert dom.count('<b class="o') == 9
    assert "unreachable: Connection refused" in dom
    assert urls <= {"file://%s" % page}, urls
    assert csp_violations() == []           # the page's own script and style pass


def test_report_of_a_cluster_file_status(svcctl, tmp_path):
    example = os.path.join(os.path.dirname(os.path.dirname(__file__)), "cluster.example.yaml")
    page = tmp_path / "status.html"
    run = svcctl("-c", example, "status", "--html", str(page))
    assert run.rc in (0, 3)
    html = page.read_text()
    assert "<h2>Services</h2>" in html
    assert "<td>db</td><td><code>demo@db.service</code></td><td>running, enabled</td>" in html
    assert html.count('<b class="o') == 20     # a grid per service: 4 + 4 + 4 + 8
    assert "<h2>Dependencies</h2>" in html


def test_chromium_check_would_see_a_request(tmp_path):
    """The network check can fail: a page that loads something is caught."""
    page = tmp_path / "leaky.html"
    page.write_text('<img src="http://127.0.0.1:9/pixel.png">')
    _, urls = load_in_chromium(page, tmp_path)
    assert "http://127.0.0.1:9/pixel.png" in urls


def test_chromium_check_would_see_a_script_the_policy_refuses(tmp_path):
    """The CSP check can fail: an inline handler on a report page is refused."""
    import svcctl
    report = svcctl.Report("start", ["demo.service"], [], 0, 0)
    page = tmp_path / "tampered.html"
    page.write_text(svcctl.render_html(report).replace(
        "<h2>Nodes</h2>", '<h2>Nodes</h2><img src="x" onerror="document.title=1">'
        '<script>document.title=2</script>'))
    dom, _ = load_in_chromium(page, tmp_path)
    assert len(csp_violations()) >= 2
    assert "<title>svcctl start" in dom


def test_rerun_on_the_nodes_that_failed(svcctl, on_nodes, tmp_path):
    """A rolling restart fails on two nodes (a drop-in breaks the unit
    there): `restart ... @last:failed` acts on exactly those, says which run
    it took them from; -x @last:unreachable; with -c; no log is one line."""
    log = str(tmp_path / "run.log")
    broken = "mkdir -p /run/systemd/system/demo.service.d && printf '[Service]\\n" \
             "ExecStart=\\nExecStart=/bin/false\\n' > /run/systemd/system/demo.service.d/" \
             "x.conf && systemctl daemon-reload"
    on_nodes("node[3,6]", broken)
    try:
        first = svcctl("restart", "demo", "node[1-8],down1", "--batch", "3", "--log", log)
        assert first.rc == 4, first
        other = str(tmp_path / "other.log")     # a log whose last run is that one
        shutil.copy(log, other)
        on_nodes("node[3,6]", "rm -rf /run/systemd/system/demo.service.d && "
                 "systemctl daemon-reload")
        again = svcctl("restart", "demo", "@last:failed", "--log", log, "--json")
        assert again.rc == 0, again
        assert {n["node"] for n in json.loads(again.out)["nodes"]} == {"node3", "node6"}
        assert re.match(r"svcctl: @last:failed = node\[3,6\] \(2\), from run [0-9a-f]{12} ",
                        again.err), again.err
        rest = svcctl("is-active", "demo", "node[1-8],down1", "-x", "@last:unreachable",
                      "--log", other, "--json")
        assert len(json.loads(rest.out)["nodes"]) == 8      # down1 was not reachable
        nodes = svcctl("report", log, "--nodes", "changed")
        assert (nodes.rc, nodes.out) == (0, "node[3,6]\n")
        cluster = tmp_path / "c.yaml"
        cluster.write_text("services:\n  demo: {unit: demo, nodes: 'node[1-8]'}\n")
        status = svcctl("-c", str(cluster), "status", "-n", "@last:changed", "--log", log,
                        "--json")
        assert {n["node"] for n in json.loads(status.out)["nodes"]} == {"node3", "node6"}
        none = svcctl("restart", "demo", "@last:failed", "--log", str(tmp_path / "no.log"))
        assert none.rc == 2 and none.err.count("\n") == 1 and none.out == "", none
    finally:
        on_nodes("node[1-8]", "rm -rf /run/systemd/system/demo.service.d; "
                 "systemctl daemon-reload; systemctl stop demo; systemctl reset-failed")
