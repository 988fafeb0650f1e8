"""A client of `svcctl gui` for the tests: the console in a subprocess, HTTP
requests with any header, a run polled as the page polls it, and a headless
Chromium that keeps its console log."""
import glob
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import IN_CI, ROOT

SVCCTL = [sys.executable, os.path.join(ROOT, "svcctl.py")]


class Console:
    """`svcctl gui --listen 127.0.0.1:0` in a subprocess, and an HTTP client."""

    def __init__(self, root, env, *extra):
        self.root = root
        self.env = env
        self.log = os.path.join(root, "run.log")
        self.proc = subprocess.Popen(SVCCTL + ["gui", "--listen", "127.0.0.1:0", "--log",
                                               self.log] + list(extra),
                                     env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.proc.stderr.read()
        parts = urlsplit(self.url)
        self.port = parts.port
        self.token = parse_qs(parts.query)["token"][0]
        self.host = "127.0.0.1:%d" % self.port
        self.origin = "http://" + self.host

    def request(self, method, path, body=None, headers=None, bearer=True):
        """(status, headers, decoded JSON or text)"""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        sent = {"Host": self.host}
        if bearer:
            sent["Authorization"] = "Bearer " + self.token
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        conn.request(method, path, body=body, headers={k: v for k, v in sent.items()
                                                       if v is not None})
        reply = conn.getresponse()
        data = reply.read().decode()
        conn.close()
        if reply.getheader("Content-Type", "").startswith("application/json"):
            return reply.status, reply, json.loads(data)
        return reply.status, reply, data

    def session(self):
        """What a browser gets by opening the URL: (Cookie header, CSRF token)."""
        status, reply, _ = self.request("GET", "/?token=" + self.token, bearer=False)
        assert status == 303
        cookie = reply.getheader("Set-Cookie").split(";")[0]
        status, _, page = self.request("GET", "/", headers={"Cookie": cookie}, bearer=False)
        assert status == 200
        data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)'
                                    r'</script>', page).group(1))
        return cookie, data["csrf"]

    def launch(self, argv, **body):
        status, _, reply = self.request("POST", "/api/runs", dict(body, argv=argv))
        assert status == 200, reply
        return reply

    def wait(self, run_id, limit=60):
        """Poll as the page does; return every state seen, the last one done."""
        states, since, end = [], 0, time.monotonic() + limit
        while time.monotonic() < end:
            status, _, state = self.request("GET", "/api/runs/%s?since=%d" % (run_id, since))
            assert status == 200, state
            states.append(state)
            if state["done"]:
                return states
            since = state["next"]
            time.sleep(0.1)
        raise AssertionError("run %s not done in %d s" % (run_id, limit))

    def nothing_ran(self):
        """No node was contacted: the fake nodes keep no state, the log no line."""
        return not os.path.exists(os.path.join(self.root, "state")) and \
            not os.path.exists(self.log)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)


def leftovers(console):
    """Processes of these fake nodes still alive (their environment names
    them), other than the console itself: its ssh children and what they ran."""
    marker = ("FAKE_STATE=%s" % os.path.join(console.root, "state")).encode()
    found = []
    for path in glob.glob("/proc/[0-9]*/environ"):
        if path.split("/")[2] == str(console.proc.pid):
            continue
        try:
            with open(path, "rb") as handle:
                if marker in handle.read().split(b"\0"):
                    found.append(path.split("/")[2])
        except OSError:
            pass
    return found


def chromium(height=900):
    """A headless Debian Chromium through Selenium, its console log kept
    (a CSP violation is an error there); a fixture yields from it."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if IN_CI:
            pytest.fail("selenium is not installed")
        pytest.skip("selenium is not installed")
    driver_path, chromium = shutil.which("chromedriver"), shutil.which("chromium")
    if not (driver_path and chromium):
        if IN_CI:
            pytest.fail("chromium and chromium-driver are not installed")
        pytest.skip("chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,%d" % height,
                 "--user-data-dir=%s" % profile):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait_for(check, limit=20, seen=None):
    """check()'s first true value; an exception counts as not yet (an element
    the page has not drawn), and is said if nothing comes in time, with what
    `seen()` returns then (the page's text)."""
    end, error = time.monotonic() + limit, None
    while time.monotonic() < end:
        try:
            value = check()
        except Exception as exc:    # noqa: BLE001 -- selenium's, while the page draws
            value, error = None, exc
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("not seen in %d s%s%s" % (
        limit, "; last: %r" % error if error else "",
        "; the page says: %r" % seen()[-2000:] if seen else ""))
