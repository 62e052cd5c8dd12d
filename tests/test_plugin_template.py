"""``hub plugin new NAME``: the generated distribution installs with pip and passes the conformance kit as
generated, the way an author starts (as llm's plugin template is tested).

The install is real (``pip install -e``, the ``hub`` entry point read from the installed metadata) but goes into a
throwaway virtualenv that sees the project's packages through a ``.pth``: the shared ``.venv`` never holds the
generated plugin, and no package is downloaded (``--no-index --no-build-isolation``, hatchling from ``.venv``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub.cli import cli

BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def throwaway_venv(where: Path) -> Path:
    """A virtualenv that also sees this one's packages (hub-core, pytest, pip, hatchling); returns its python."""
    run([sys.executable, "-m", "venv", "--without-pip", str(where)], cwd=where.parent)
    python = where / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  cwd=where.parent).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(purelib, "_hub_workspace.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


def tail(result: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


@pytest.mark.slow
def test_generated_plugin_installs_and_passes_the_kit(tmp_path: Path) -> None:
    made = run([str(BIN / "hub"), "plugin", "new", "acme"], cwd=tmp_path)
    assert made.returncode == 0, f"hub plugin new acme should succeed:\n{tail(made)}"
    plugin = tmp_path / "hub-acme"

    lint = run([str(BIN / "ruff"), "check", "--config", str(Path(__file__).parents[1] / "pyproject.toml"),
                str(plugin)], cwd=tmp_path)
    assert lint.returncode == 0, f"the generated code should pass the project's ruff rules:\n{tail(lint)}"

    python = throwaway_venv(tmp_path / "venv")
    install = run([str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", "-e", "./hub-acme"],
                  cwd=tmp_path)
    assert install.returncode == 0, f"pip install -e ./hub-acme should succeed:\n{tail(install)}"
    found = run([str(python), "-c", "from hub.registry import get_registry; print(get_registry().platform('acme'))"],
                cwd=tmp_path)
    assert found.returncode == 0 and "name='acme'" in found.stdout, \
        f"the installed plugin should register platform acme through its entry point:\n{tail(found)}"

    kit = run([str(python), "-m", "pytest", "hub-acme", "-q", "-p", "no:cacheprovider"], cwd=tmp_path, timeout=300)
    summary = tail(kit)
    assert kit.returncode == 0, f"pytest hub-acme (the conformance kit) should pass as generated:\n{summary}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 25 and "skipped" not in summary, \
        f"every kit test should run and pass for both streams (products, customers), none skipped:\n{summary}"
    assert run([sys.executable, "-c", "import hub_acme"], cwd=tmp_path).returncode != 0, \
        "the generated plugin should be installed in the throwaway virtualenv only, not in the project's"


def test_generated_distribution_declares_its_entry_point(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plugin", "new", "my_shop", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "hub-my_shop"
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["hub"] == {"my_shop": "hub_my_shop.plugin"}, \
        f"the entry point should name the plugin module: {project['project'].get('entry-points')}"
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", "hub_my_shop/__init__.py", "hub_my_shop/plugin.py", "hub_my_shop/client.py",
        "hub_my_shop/sandbox.py", "tests/test_conformance.py"}, "the distribution should hold exactly these files"
    plugin = (root / "hub_my_shop" / "plugin.py").read_text()
    assert 'name="my_shop", title="My Shop"' in plugin and "class MyShopSandbox" in \
        (root / "hub_my_shop" / "sandbox.py").read_text(), "names should be rendered into the code"


@pytest.mark.parametrize("name", ["Acme", "acme-shop", "9acme", "class", "acme shop", "acme_"])
def test_names_that_are_not_identifiers_are_refused(tmp_path: Path, name: str) -> None:
    result = CliRunner().invoke(cli, ["plugin", "new", name, "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "lower-case Python identifier" in result.output, \
        f"{name!r} should be refused with the naming rule, got exit {result.exit_code}: {result.output}"
    assert not list(tmp_path.iterdir()), f"nothing should be written for {name!r}"


def test_an_existing_directory_is_never_overwritten(tmp_path: Path) -> None:
    mine = tmp_path / "hub-acme" / "README.md"
    mine.parent.mkdir()
    mine.write_text("my notes")
    result = CliRunner().invoke(cli, ["plugin", "new", "acme", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "never overwrites" in result.output, \
        f"an existing hub-acme/ should be refused, got exit {result.exit_code}: {result.output}"
    assert mine.read_text() == "my notes" and len(list(mine.parent.iterdir())) == 1, "hub-acme/ should be untouched"


def test_an_installed_platform_name_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plugin", "new", "lojinha", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "registered already" in result.output, \
        f"a platform name an installed plugin uses should be refused: {result.output}"
    assert not (tmp_path / "hub-lojinha").exists(), "nothing should be written for a taken name"
