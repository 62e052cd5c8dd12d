"""Shell completion as the README sets it up: `eval "$(_HUB_COMPLETE=bash_source hub)"` in a real bash, then TAB
completes the commands, `hub auth`'s platforms and the options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

BIN = os.path.dirname(sys.executable)


def run(script: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_completion_script_is_produced_for_bash_zsh_and_fish():
    out = run("for s in bash zsh fish; do echo \"@@shell $s\"; _HUB_COMPLETE=${s}_source hub; done")
    scripts = dict(part.split("\n", 1) for part in out.split("@@shell ")[1:])
    assert set(scripts) == {"bash", "zsh", "fish"}
    assert "complete -o nosort -F _hub_completion hub" in scripts["bash"]
    assert "#compdef hub" in scripts["zsh"] and "complete --no-files --command hub" in scripts["fish"]
    assert all("_HUB_COMPLETE" in text and "Usage:" not in text for text in scripts.values())


def test_bash_completes_commands_auth_platforms_and_options_after_the_readme_setup():
    cases = [("sy",), ("auth", ""), ("sync", "demo", "catalog", "--")]
    lines = ['eval "$(_HUB_COMPLETE=bash_source hub)"']
    for words in cases:
        typed = " ".join(f"'{w}'" for w in words)
        lines.append(f'COMPREPLY=(); COMP_WORDS=(hub {typed}); COMP_CWORD={len(words)}; _hub_completion hub; '
                     'echo "@@reply ${COMPREPLY[*]}"')
    answers = [part.split() for part in run("\n".join(lines)).split("@@reply ")[1:]]
    sync, auth, options = answers
    assert sync == ["sync"]
    assert {"bling", "zydon", "lojinha", "status"} <= set(auth), auth
    assert {"--json", "--full", "--stream", "--no-push"} <= set(options), options
