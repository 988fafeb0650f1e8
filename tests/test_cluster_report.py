"""Integration: HTML reports of real runs, loaded in headless Chromium."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import IN_CI

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
