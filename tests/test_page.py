"""The HTML page's script, run without a cluster: its filter in Node.js
(the page's own script, with a stand-in for the document), and its history
matrix in headless Chromium on a page built in-process."""
import json
import shutil
import subprocess
import time

import pytest

import svcctl
from conftest import IN_CI
from console_client import chromium

NODE = shutil.which("node")

# The page's script under Node: a document with the data block, the filter
# box and its note; the filter's input handler is called as the browser
# would (its timer run at once); prints the note and how long it took.
_HARNESS = r"""
var fs = require("fs");
var given = JSON.parse(fs.readFileSync(0, "utf8"));
var handlers = {}, note = {textContent: ""};
var input = {value: given.filter, addEventListener: function (e, f) { handlers[e] = f; }};
global.setTimeout = function (f) { f(); };
global.clearTimeout = function () {};
global.document = {
  getElementById: function (id) {
    return {data: {textContent: JSON.stringify(given.data)}, filter: input,
            shown: note}[id] || null;
  },
  querySelectorAll: function () { return []; },
  addEventListener: function () {}
};
eval(given.script);
var started = Date.now();
handlers.input();
process.stdout.write(JSON.stringify({note: note.textContent, ms: Date.now() - started}));
"""


def run_filter(text: str, groups=None) -> dict:
    given = {"filter": text, "script": svcctl.HTML_SCRIPT,
             "data": {"outcomes": list(svcctl.OUTCOMES), "details": [],
                      "groups": groups or {}}}
    done = subprocess.run([NODE, "-e", _HARNESS], input=json.dumps(given), text=True,
                          capture_output=True, timeout=60, check=True)
    return json.loads(done.stdout)


needs_node = pytest.mark.skipif(NODE is None and not IN_CI, reason="no node (Node.js)")


@needs_node
@pytest.mark.parametrize("text", [
    ",".join("n%d[1-199999]" % i for i in range(40)),          # within per range, 8 M in all
    "n[1-199999]!n[1-199999]!n[1-199999]",                    # `!` operands count too
    "n[%s]" % ",".join("%d-%d" % (i * 10**6, i * 10**6 + 99999) for i in range(40)),
    "@big,@big,@big",                                          # groups count too
])
def test_a_hostile_filter_is_refused_before_anything_is_built(text):
    started = time.monotonic()
    said = run_filter(text, {"@big": "x[1-150000]"})
    assert said["note"].startswith("too many nodes"), said
    assert said["ms"] < 300, said
    assert time.monotonic() - started < 10
    assert run_filter("n[1-3],m[01-02]!n2,@big", {"@big": "x[1-150000]"})["note"] \
        == "0 of 0 shown"


# --- the history page in headless Chromium, built in-process -----------------

@pytest.fixture(scope="module")
def browser():
    yield from chromium(800)


def test_history_page_folds_rows_expands_them_and_filters_inside(tmp_path, browser):
    from test_log import folded_history_log, write_log
    log = tmp_path / "svcctl.log"
    write_log(log, folded_history_log(tmp_path))
    page = tmp_path / "history.html"
    assert svcctl.main(["report", str(log), "--history", "--html", str(page), "-qq"]) == 0
    browser.get(page.as_uri())
    stories = browser.find_elements("css selector", ".names .story")
    assert [s.text for s in stories] == ["\u25b8 node[1-2,6,8-29,31-34] (29)",
                                         "\u25b8 node[3,7,30] (3)", "\u25b8 node[4-5] (2)"]
    assert browser.execute_script(
        "return document.querySelector('#matrix canvas').height") == 3 * 14
    stories[1].click()                          # opened: its nodes, one row each
    assert [d.text.strip() for d in browser.find_elements("css selector", ".names div")][1:5] \
        == ["\u25be node[3,7,30] (3)", "node3", "node7", "node30"]
    box = browser.find_element("id", "filter")
    box.send_keys("node17")
    time.sleep(0.5)
    assert [d.text.strip() for d in browser.find_elements("css selector", ".names div")] \
        == ["\u25b8 node[1-2,6,8-29,31-34] (1 of 29)", "node17"]
    assert browser.find_element("id", "shown").text == "1 nodes shown"
    box.clear()
    box.send_keys("failed")
    time.sleep(0.5)
    assert len(browser.find_elements("css selector", ".names .story")) == 2
