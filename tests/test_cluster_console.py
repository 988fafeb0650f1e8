"""Integration: the web console (`svcctl gui`) on the real test cluster, in a
real Chromium (Debian's chromium and chromium-driver through Selenium): type a
NodeSet and see its count, preview, launch a batched start on @all,down1 and
see cells change before the run ends, stop a rolling run between batches, the
node check (down1 and hang1 not answering, with ssh's reasons), a run opened
from the results; no browser console error anywhere (a CSP violation is one)."""
import json
import re
import shutil
import tempfile

import pytest

from console_client import Console, chromium, wait_for


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture
def console(cluster, on_nodes):
    on_nodes("node[1-8]", "systemctl stop demo; systemctl reset-failed; true")
    root = tempfile.mkdtemp(prefix="svcctl-console-")
    console = Console(root, cluster)
    yield console
    console.close()
    on_nodes("node[1-8]", "systemctl stop demo; systemctl reset-failed; true")
    shutil.rmtree(root, ignore_errors=True)


def cells(browser, view="runview"):
    return [(c.text, c.get_attribute("class"))
            for c in browser.find_elements("css selector", "#%s .grid b" % view)]


def no_console_errors(browser):
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def type_run(browser, units, nodes, batch="", wait=""):
    find = browser.find_element
    find("id", "units").send_keys(units)
    find("id", "nodes").send_keys(nodes)
    if batch:
        find("id", "batch").send_keys(batch)
    if wait:
        find("id", "batchwait").send_keys(wait)


def test_launch_fills_the_grid_while_the_run_goes(browser, console):
    browser.get(console.url)
    find = browser.find_element
    type_run(browser, "demo", "@all,down1", "3", "2")
    wait_for(lambda: find("id", "count").text == "9 nodes")
    find("id", "preview").click()
    wait_for(lambda: "nodes: down1,node[1-8] (9)" in find("id", "plan").text)
    assert "exec /bin/sh -c" in find("id", "plan").text
    find("id", "launch").click()
    wait_for(lambda: len(cells(browser)) == 9)
    # a moment when some nodes are done and others still pending: before the end
    wait_for(lambda: {"pe"} < {cls for _, cls in cells(browser)}, 60)
    assert "==" not in find("css selector", "#runview .progress").text
    wait_for(lambda: "changed (8): node[1-8]" in find("id", "runview").text, 120)
    assert "unreachable (1): down1" in find("id", "runview").text
    assert "pe" not in {cls for _, cls in cells(browser)}
    no_console_errors(browser)


def test_stop_between_batches(browser, console):
    browser.get(console.url)
    find = browser.find_element
    type_run(browser, "demo", "@all", "2", "8")
    wait_for(lambda: find("id", "count").text == "8 nodes")
    find("id", "launch").click()
    wait_for(lambda: len(cells(browser)) == 8, 60,
             lambda: find("tag name", "body").text)
    wait_for(lambda: "starts in" in find("css selector", "#runview .progress").text, 60)
    find("id", "stop").click()
    wait_for(lambda: "interrupted by SIGINT" in find("id", "runview").text, 30)
    text = find("id", "runview").text
    assert "changed (2): node[1-2]" in text and "skipped (6): node[3-8]" in text
    lines = [json.loads(line) for line in open(console.log)]
    assert len(lines) == 8 and {line["interrupted_by"] for line in lines} == {"SIGINT"}
    no_console_errors(browser)


def test_node_check_and_results(browser, console):
    browser.get(console.url)
    find = browser.find_element
    find("css selector", "button[data-tab=check]").click()
    find("id", "checknodes").send_keys("@all,down1,hang1")
    find("id", "checkgo").click()
    wait_for(lambda: "Not answering (2)" in find("id", "checkview").text, 120)
    text = find("id", "checkview").text
    answering, errors = (int(re.search(r"%s \((\d+)\)" % title, text).group(1))
                         for title in ("Answering", "Errors"))
    assert answering + errors == 8     # errors: a node whose systemd is degraded
    assert "down1 (1): Connection refused" in text and "hang1 (1): " in text
    find("css selector", "button[data-tab=results]").click()
    rows = wait_for(lambda: browser.find_elements("css selector", "#runlist tr")[1:])
    assert "ping" in rows[0].text
    rows[0].click()
    wait_for(lambda: "== ping on 10 nodes" in find("id", "resultview").text)
    no_console_errors(browser)
