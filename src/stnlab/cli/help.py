"""``--help`` of the stnlab commands, written from the comments of their config files.

Hydra's help template is ``${stnlab.help:<config name>}`` (``conf/hydra/help/stnlab.yaml``), which
:func:`help_text` fills from ``conf/<config name>.yaml``: the file's first comment block (usage and summary),
one line per key (``key=default`` and the comment above the key, or beside it; every top-level key, and the
nested keys that have a comment, dotted), then the config groups of its defaults list with their options.
A config that the defaults list places under a key (``- cli/data@data``) is documented as that key's part.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from stnlab.config import CONF_DIR, group_options

RESOLVER = "stnlab.help"
WIDTH = 120
FOOTER = (
    "Set a key with key=value, a list with 'key=[a,b]' (quoted for the shell); --cfg job prints the "
    "composed config, --hydra-help Hydra's own options."
)
_KEY = re.compile(r"(?P<key>[\w.-]+):(?:\s+(?P<rest>.*))?$")
_INLINE_COMMENT = re.compile(r"\s+#\s?(?P<text>.*)$")
_BLOCK_SCALAR = ("|", "|-", "|+", ">", ">-", ">+")


@dataclass(frozen=True)
class Entry:
    """One line of the help: ``name`` (``data.root``, or a group), its default as written, its description."""

    name: str
    value: str | None  # None: a mapping whose keys follow
    doc: str


@dataclass
class ConfigDoc:
    header: list[str]
    keys: list[Entry]
    groups: list[Entry]


def register_resolver() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, help_text)


def read(path: Path) -> ConfigDoc:
    """The documentation in a config file's comments (see the module docstring)."""
    lines = path.read_text().splitlines()
    header, start = _header(lines)
    doc = ConfigDoc(header=header, keys=[], groups=[])
    included: list[Entry] = []
    comments: list[str] = []
    parents: list[tuple[int, str]] = []  # (indent, key) of the mappings the current line is in
    block_indent: int | None = None  # inside a block scalar (`key: |`) begun at this indent
    for line in lines[start:]:
        text = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if block_indent is not None and (not text or indent > block_indent):
            continue
        block_indent = None
        if not text or text.startswith("#"):  # a blank line ends a comment block
            comments = comments + [text[1:].strip()] if text else []
            continue
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path_keys = [key for _, key in parents]
        m = _KEY.match(text)
        if text.startswith("- ") or m is None:
            if path_keys == ["defaults"] and text.startswith("- "):
                group = _group_default(text[2:], " ".join(comments))
                doc.groups += [group] if group else []
                included += _placed_config(text[2:], path.parent)
            comments = []
            continue
        rest = m.group("rest") or ""
        inline = _INLINE_COMMENT.search(rest)
        value = rest[: inline.start()].strip() if inline else rest.strip()
        description = " ".join(comments) or (inline.group("text").strip() if inline else "")
        comments = []
        if value in _BLOCK_SCALAR:
            block_indent = indent
        if not value:
            parents.append((indent, m.group("key")))
        name = ".".join([*path_keys, m.group("key")])
        if name.split(".")[0] in ("defaults", "hydra"):
            continue
        if not path_keys or description:
            doc.keys.append(Entry(name, value or None, description))
    doc.keys += included
    return doc


def _placed_config(entry: str, conf: Path) -> list[Entry]:
    """The keys of ``cli/data@data``, under ``data``; nothing for other defaults entries."""
    config, at, package = entry.partition("@")
    if not at or ":" in entry:
        return []
    placed = read(conf / f"{config.strip()}.yaml")
    return [
        Entry(package, None, " ".join(placed.header)),
        *(Entry(f"{package}.{e.name}", e.value, e.doc) for e in placed.keys),
    ]


def _header(lines: list[str]) -> tuple[list[str], int]:
    """The file's first comment block (without ``# @package``) and the index of the line after it; no header
    when the block is the comment of the first key (no blank line or defaults list after it)."""
    end = 0
    while end < len(lines) and lines[end].strip().startswith("#"):
        end += 1
    if end < len(lines) and lines[end].strip() not in ("", "defaults:"):
        return [], 0
    return [line.strip()[1:].strip() for line in lines[:end] if not line.strip().startswith("# @package")], end


def _group_default(entry: str, doc: str) -> Entry | None:
    """``data: gtsrb`` / ``optional experiment: null`` -> the group, its default and options; else None."""
    group, sep, choice = entry.partition(":")
    group = group.removeprefix("optional ").strip()
    if not sep or group.startswith("override ") or "/" in group or group.startswith("_"):
        return None
    options = group_options(group)
    listed = f"options: {', '.join(options)}" if options else ""
    return Entry(group, choice.strip(), f"{doc} ({listed})" if doc and listed else doc or listed)


def _rows(entries: list[Entry]) -> list[str]:
    lefts = [f"{e.name}={e.value}" if e.value is not None else f"{e.name}.*" for e in entries]
    width = min(max(map(len, lefts), default=0), 34)
    rows = []
    for left, entry in zip(lefts, entries):
        first = f"  {left:<{width}}  "
        if not entry.doc:
            rows.append(first.rstrip())
            continue
        wrapped = textwrap.wrap(entry.doc, max(WIDTH - len(first), WIDTH // 2), break_on_hyphens=False)
        rows.append(first + wrapped[0])
        rows += [" " * len(first) + more for more in wrapped[1:]]
    return rows


def help_text(config_name: str, conf: Path = CONF_DIR) -> str:
    """The ``--help`` of the app whose config is ``conf/<config_name>.yaml`` ('$' doubled for Hydra's template)."""
    doc = read(conf / f"{config_name}.yaml")
    lines = [*doc.header, "", "Keys (key=default):", *_rows(doc.keys)]
    if doc.groups:
        lines += ["", "Config groups (group=option):", *_rows(doc.groups)]
    lines += ["", *textwrap.wrap(FOOTER, WIDTH, break_on_hyphens=False)]
    return "\n".join(lines).replace("$", "$$") + "\n"
