"""The HTML page's script, run without a cluster: its filter in Node.js
(the page's own script, with a stand-in for the document), and its history
matrix in headless Chromium on a page built in-process."""
import json
import shutil
import subprocess
import time

import pytest

import svcctl

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


needs_node = pytest.mark.skipif(NODE is None, reason="no node (Node.js)")


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
