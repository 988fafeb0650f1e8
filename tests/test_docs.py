"""The man page and the shell completions: generated from svcctl's parser,
committed, installed by setup.py."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import IN_CI, ROOT

DOCS = os.path.join(ROOT, "docs")


@pytest.fixture(scope="module")
def generated():
    try:
        sys.path.insert(0, DOCS)
        import generate
    except ImportError as exc:
        if IN_CI:
            pytest.fail("docs tools missing: %s" % exc)
        pytest.skip("argparse-manpage or shtab is not installed")
    return generate.outputs()


def test_committed_docs_are_up_to_date(generated):
    for name, text in generated.items():
        with open(os.path.join(DOCS, name), encoding="utf-8") as handle:
            assert handle.read() == text, "run python3 docs/generate.py (%s)" % name


def test_man_page_renders():
    if not shutil.which("man"):
        pytest.skip("man is not installed")
    page = subprocess.run(["man", "-l", os.path.join(DOCS, "svcctl.1")],
                          capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80"),
                          timeout=60)
    assert page.returncode == 0, page.stderr
    for text in ("SVCCTL(1)", "SYNOPSIS", "--settle", "CHOOSING NODES, AS CLUSH DOES"):
        assert text in page.stdout


def complete(words, env=None):
    """What bash completion offers after `words` (the last one being typed)."""
    script = ('source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
              'complete -p svcctl; _shtab_svcctl; printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", script, os.path.join(DOCS, "completion", "svcctl")]
                         + list(words), capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "complete -o bashdefault -F _shtab_svcctl svcctl"
    return lines[1:]


def test_completion_offers_actions_groups_and_services(tmp_path):
    assert complete(["svcctl", "st"]) == ["start", "stop", "status"]
    cfg = tmp_path / "cfg"
    (cfg / "groups.d").mkdir(parents=True)
    (cfg / "groups.conf").write_text("[Main]\ndefault: site\nautodir: $CFGDIR/groups.d\n")
    (cfg / "groups.d" / "site.yaml").write_text("site:\n  web: 'n[1-2]'\n  db: n3\n")
    env = dict(os.environ, CLUSTERSHELL_CFGDIR=str(cfg))
    assert complete(["svcctl", "start", "demo", "@w"], env) == ["@web"]
    assert complete(["svcctl", "-w", ""], env)[:2] == ["@db", "@web"]
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("services:\n  db: {nodes: n1}\n  web: {nodes: n2, requires: db}\n")
    if not shutil.which("svcctl"):
        pytest.skip("svcctl is not installed")
    assert complete(["svcctl", "-c", str(cluster), "start", ""], env) == ["db", "web"]


def test_zsh_completion_parses():
    if not shutil.which("zsh"):
        pytest.skip("zsh is not installed")
    proc = subprocess.run(["zsh", "-n", os.path.join(DOCS, "completion", "_svcctl")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
