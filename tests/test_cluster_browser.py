"""Integration: the HTML pages of real runs, driven in a real Chromium
(Debian's chromium and chromium-driver, through Selenium; no browser is
downloaded): the filter, the summary rows, finding a node, the history
matrix, the live page."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, svcctl_argv
from console_client import chromium


@pytest.fixture(scope="module")
def browser():
    yield from chromium(800)


def visible(browser, css=".grid b"):
    return [e.text for e in browser.find_elements("css selector", css) if e.is_displayed()]


@pytest.fixture(scope="module")
def mixed_page(cluster):
    """A real mixed run's page and log: changed, failed, not found, unreachable."""
    directory = tempfile.mkdtemp()
    page, log = os.path.join(directory, "run.html"), os.path.join(directory, "run.log")
    subprocess.run(["clush", "-w", "node[1-8]", "systemctl stop demo web; true"],
                   env=cluster, capture_output=True)
    subprocess.run(svcctl_argv() + ["start", "demo,web", "@all,down1", "--html", page,
                                    "--log", log], env=cluster, capture_output=True,
                   timeout=120)
    subprocess.run(svcctl_argv() + ["is-active", "demo", "@all", "--log", log],
                   env=cluster, capture_output=True, timeout=120)
    subprocess.run(["clush", "-w", "node[1-8]", "systemctl stop demo web; true"],
                   env=cluster, capture_output=True)
    yield page, log
    shutil.rmtree(directory)


def test_filter_takes_a_nodeset_a_group_or_an_outcome(browser, mixed_page):
    browser.get("file://" + mixed_page[0])
    assert len(visible(browser)) == 9
    box = browser.find_element("id", "filter")
    from selenium.webdriver.common.keys import Keys
    for typed, expected in (("node[2-4,7]", ["node2", "node3", "node4", "node7"]),
                            ("@odd!node1", ["node3", "node5", "node7"]),
                            ("node[1-8]&@even", ["node2", "node4", "node6", "node8"]),
                            ("unreachable", ["down1"]),
                            ("", ["down1"] + ["node%d" % i for i in range(1, 9)])):
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        box.send_keys(typed)
        time.sleep(0.4)
        assert sorted(visible(browser)) == sorted(expected), typed
    box.send_keys("node[1-")
    time.sleep(0.4)
    assert "missing ]" in browser.find_element("id", "shown").text


def test_a_summary_row_makes_its_nodes_stand_out(browser, mixed_page):
    browser.get("file://" + mixed_page[0])
    row = [r for r in browser.find_elements("css selector", "tr.pick")
           if "unreachable" in r.text][0]
    row.click()
    dimmed = browser.find_elements("css selector", ".grid b.dim")
    lit = [e for e in browser.find_elements("css selector", ".grid b")
           if "dim" not in e.get_attribute("class")]
    assert [e.text.rstrip("\u00d7") for e in lit] == ["down1"] and len(dimmed) == 8
    row.click()
    assert browser.find_elements("css selector", ".grid b.dim") == []


def test_every_node_is_found_by_its_name(browser, mixed_page):
    browser.get("file://" + mixed_page[0])
    assert browser.execute_script("return window.find('node7')")
    cell = browser.find_element("xpath", "//div[@class='grid']/b[starts-with(., 'node7')]")
    cell.click()
    detail = browser.find_element("id", "detail").text
    assert detail.startswith("node7: ") and "demo.service: " in detail
    cell.send_keys("\t")        # keyboard: Tab to the next cell, Enter opens it
    active = browser.switch_to.active_element
    active.send_keys("\n")
    assert browser.find_element("id", "detail").text.startswith(active.text.rstrip(
        "\u2713\u25b2\u2717\u00d7?\u2212"))


def test_the_history_matrix(browser, mixed_page, cluster, tmp_path):
    page = tmp_path / "history.html"
    proc = subprocess.run(svcctl_argv() + ["report", mixed_page[1], "--history", "-v",
                                           "--html", str(page)],
                          env=cluster, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "down1  \u00d7\u00b7  unreachable since " in proc.stdout
    browser.get("file://%s" % page)
    # one row per story: down1; the odd nodes (web there); the even ones
    names = browser.find_elements("css selector", ".names div")
    assert [n.text for n in names] == ["\u25b8 down1", "\u25b8 node[1,3,5,7] (4)",
                                       "\u25b8 node[2,4,6,8] (4)"]
    canvas = browser.find_element("css selector", "#matrix canvas")
    assert (canvas.size["width"], canvas.size["height"]) == (28, 3 * 14)
    from selenium.webdriver.common.action_chains import ActionChains
    names[0].click()                    # opened: down1's own row under its story
    canvas = browser.find_element("css selector", "#matrix canvas")
    # down1's cell in the first run: unreachable, with ssh's reason
    ActionChains(browser).move_to_element_with_offset(
        canvas, -canvas.size["width"] // 2 + 7, -canvas.size["height"] // 2 + 14 + 7
    ).click().perform()
    detail = browser.find_element("id", "detail").text
    assert detail.startswith("down1 in run ") and "\u00d7 unreachable" in detail
    assert "Connection refused" in detail


def test_the_live_page_refreshes_until_the_run_ends(browser, cluster, tmp_path, on_nodes):
    on_nodes("@all", "systemctl start demo-reload")
    page = tmp_path / "live.html"
    proc = subprocess.Popen(svcctl_argv() + ["restart", "demo-reload", "@all", "--batch",
                                             "3", "--batch-wait", "5", "--html", str(page)],
                            env=cluster, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not page.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        browser.get("file://%s" % page)
        first = browser.title
        assert "running, 5 to go" in first, first
        assert browser.find_elements("css selector", "meta[http-equiv=refresh]")
        browser.execute_script("window.svcctlMark = 1")
        deadline = time.monotonic() + 15
        while browser.title == first and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "running, 2 to go" in browser.title     # the page reloaded itself
        assert browser.execute_script("return window.svcctlMark") is None
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while "exit" not in browser.title and time.monotonic() < deadline:
            time.sleep(0.3)
        assert browser.title.endswith("8 nodes, exit 0")
        assert browser.find_elements("css selector", "meta[http-equiv=refresh]") == []
        browser.execute_script("window.svcctlMark = 2")
        time.sleep(5)
        assert browser.execute_script("return window.svcctlMark") == 2  # no more reloads
    finally:
        proc.kill()
        on_nodes("@all", "systemctl stop demo-reload; systemctl reset-failed")


def test_the_cluster_file_page_draws_the_graph(browser, cluster, tmp_path):
    page = tmp_path / "file.html"
    example = os.path.join(ROOT, "cluster.example.yaml")
    proc = subprocess.run(svcctl_argv() + ["-c", example, "--check-config", "--html",
                                           str(page)], env=cluster, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    browser.get("file://%s" % page)
    boxes = browser.find_elements("css selector", "svg.graph g.svc")
    assert [b.text.split("\n")[0] for b in boxes] == ["db", "app", "web", "reload"]
    assert len(browser.find_elements("css selector", "svg.graph path.edge")) == 3
    assert len(browser.find_elements("css selector", "svg.graph path.edge.after")) == 1
