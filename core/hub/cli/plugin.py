"""``hub plugin new NAME``: write a plugin distribution that installs and passes the conformance kit as generated.

The files are :class:`string.Template` texts under ``hub/templates/plugin`` (``$name``, ``$package``...): plain
Python with ``$`` placeholders, so no template engine is needed and the templates read like the code they become.
``package/`` becomes ``hub_NAME/`` and the ``.tmpl`` suffix is dropped.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

import click

from hub import __version__

__all__ = ["PluginNames", "plugin", "write_plugin"]

NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
TEMPLATES = "templates/plugin"


@dataclass(frozen=True)
class PluginNames:
    """Every spelling of a plugin's name the templates use."""

    name: str
    """The platform and entry point name (``acme``)."""
    package: str
    """The import package (``hub_acme``)."""
    dist: str
    """The distribution and its directory (``hub-acme``)."""
    cls: str
    """The class-name prefix (``Acme``)."""
    title: str

    @classmethod
    def of(cls, name: str) -> PluginNames:
        if not NAME.match(name) or keyword.iskeyword(name) or name.endswith("_"):
            raise click.BadParameter(
                f"{name!r} is not a plugin name: use a lower-case Python identifier (letters, digits and _, starting "
                f"with a letter), e.g. {_suggest(name)!r}; it becomes the platform name, hub_NAME and hub-NAME",
                param_hint="NAME")
        camel = "".join(part.capitalize() for part in name.split("_") if part)
        return cls(name=name, package=f"hub_{name}", dist=f"hub-{name}", cls=camel,
                   title=" ".join(part.capitalize() for part in name.split("_") if part))

    def values(self) -> dict[str, str]:
        return {"name": self.name, "package": self.package, "dist": self.dist, "cls": self.cls,
                "title": self.title, "hub_version": __version__}


def _suggest(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    cleaned = re.sub(r"^[0-9_]+", "", cleaned)
    return cleaned if cleaned and not keyword.iskeyword(cleaned) else "acme"


def _templates(root: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    """(relative path, file) of every template under ``root``, sorted."""
    found: list[tuple[str, Traversable]] = []
    for entry in root.iterdir():
        if entry.name == "__pycache__":
            continue
        relative = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.extend(_templates(entry, f"{relative}/"))
        elif entry.name.endswith(".tmpl"):
            found.append((relative, entry))
    return sorted(found, key=lambda pair: pair[0])


def write_plugin(name: str, directory: Path) -> tuple[Path, list[Path]]:
    """Write ``directory/hub-NAME``; return it and the files written. Refuses a name that is not an identifier,
    a directory that exists, and the name of a platform an installed plugin registers already."""
    names = PluginNames.of(name)
    target = directory / names.dist
    if target.exists():
        raise click.ClickException(f"{target} exists already; hub plugin new never overwrites. Pick another NAME, "
                                   "another --dir, or remove that directory first.")
    from hub.registry import get_registry

    taken = get_registry().platforms.get(name)
    if taken is not None:
        raise click.ClickException(f"platform {name!r} is registered already by the installed plugin "
                                   f"{taken.plugin}; two plugins cannot share a platform name. Pick another NAME.")
    values = names.values()
    rendered: list[tuple[Path, str]] = []
    for relative, template in _templates(files("hub").joinpath(TEMPLATES)):
        parts = relative.removesuffix(".tmpl").split("/")
        if parts[0] == "package":
            parts[0] = names.package
        rendered.append((target.joinpath(*parts), Template(template.read_text(encoding="utf-8")).substitute(values)))
    written: list[Path] = []
    for path, text in rendered:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return target, written


@click.group()
def plugin() -> None:
    """Write plugins (see docs/plugins.md, the author's guide)."""


@plugin.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where to write hub-NAME/.")
def new(name: str, directory: Path) -> None:
    """Write hub-NAME/: a plugin for platform NAME with its client, sandbox and conformance test, ready to
    install and passing the kit as generated."""
    target, written = write_plugin(name, directory)
    click.echo(f"wrote {target}/")
    for path in written:
        click.echo(f"  {path.relative_to(target)}")
    click.echo(f"\nnext:\n  pip install -e {target}\n  pytest {target}\n"
               f"then replace the TODOs with {name}'s real API (see {target / 'README.md'}).")
