#!/usr/bin/env python3
"""Writes svcctl's man page and its bash and zsh completions, from svcctl's
own argument parser, so that they never disagree with `svcctl --help`.

    python3 docs/generate.py [DIR]      (default: docs/; needs argparse-manpage
                                         and shtab, the `docs` extra of setup.py)

setup.py installs the results: svcctl.1 (man 1 svcctl), completion/svcctl.bash
(bash-completion), completion/_svcctl (zsh). tests/test_docs.py checks that
the committed files are what this script writes.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import shtab  # noqa: E402
from argparse_manpage.manpage import Manpage  # noqa: E402

import svcctl  # noqa: E402

NAMES = " ".join(list(svcctl.ACTIONS) + svcctl.COMMAND_WORDS)

# bash: $1 is the word being completed; each function prints candidates.
BASH = r"""
_svcctl_actions() { compgen -W "%(names)s" -- "$1"; }
# ClusterShell's groups (@web...), as `nodeset -l` lists them
_svcctl_groups() { compgen -W "$(nodeset -l 2>/dev/null)" -- "$1"; }
# after -c FILE: the file's services; otherwise ClusterShell's groups
_svcctl_targets() {
  local i file=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${COMP_WORDS[i]}" in -c|--config) file="${COMP_WORDS[i+1]}" ;; esac
  done
  if [ -n "$file" ] && [ -r "$file" ]; then
    compgen -W "$(svcctl -c "$file" --check-config -v 2>/dev/null | \
                  sed -n 's/^  \([^ :]*\):.*/\1/p')" -- "$1"
  else
    _svcctl_groups "$1"
  fi
}
""" % {"names": NAMES}

ZSH = r"""
_svcctl_actions() { compadd %(names)s }
_svcctl_groups() { compadd -- ${(f)"$(nodeset -l 2>/dev/null)"} }
_svcctl_targets() {
  local file=${opt_args[-c]:-${opt_args[--config]}}
  if [[ -n $file && -r $file ]]; then
    compadd -- ${(f)"$(svcctl -c $file --check-config -v 2>/dev/null | \
                       sed -n 's/^  \([^ :]*\):.*/\1/p')"}
  else
    _svcctl_groups
  fi
}
""" % {"names": NAMES}


def completing_parser():
    """svcctl's parser, told how to complete each argument."""
    parser = svcctl.build_parser()
    completions = {
        "action": {"bash": "_svcctl_actions", "zsh": "_svcctl_actions"},
        "targets": {"bash": "_svcctl_targets", "zsh": "_svcctl_targets"},
    }
    for dest in ("where", "exclude", "nodes", "groups", "exclude_groups"):
        completions[dest] = {"bash": "_svcctl_groups", "zsh": "_svcctl_groups"}
    for dest in ("log", "html", "hostfiles", "config"):
        completions[dest] = shtab.FILE
    for action in parser._actions:
        if action.dest in completions:
            action.complete = completions[action.dest]
        if action.dest == "config":
            action.nargs = None     # a FILE is what one completes after -c
    return parser


def man_page() -> str:
    return str(Manpage(svcctl.build_parser(), _data={
        "project_name": "svcctl", "version": svcctl.__version__,
        "date": "version %s" % svcctl.__version__, "manual_title": "svcctl manual",
        "description": "systemctl for a whole cluster"}))


def outputs() -> dict:
    return {
        "svcctl.1": man_page(),
        os.path.join("completion", "svcctl"):
            shtab.complete(completing_parser(), "bash", preamble=BASH),
        os.path.join("completion", "_svcctl"):
            shtab.complete(completing_parser(), "zsh", preamble=ZSH),
    }


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else HERE
    for name, text in outputs().items():
        path = os.path.join(target, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        print(path)


if __name__ == "__main__":
    main()
