"""``--help`` of the stnlab commands, written from the comments of their config files.

Hydra's help template is ``${stnlab.help:<config name>}`` (``conf/hydra/help/stnlab.yaml``), which
:func:`help_text` fills: the first comment block of ``conf/<config name>.yaml`` (usage and summary), then every
key the app takes, as this command line composes it (``train.py experiment=compact --help`` shows the recipe's
values), including the keys of the config groups (``data.*``, ``optim.*``, ``trainer.*``, ...): one line each,
``key=default`` and the comment above the key (or beside it) in the last file of the defaults list that
documents it, else in another option of its group, else a line for Hydra's ``_target_``/``_partial_``. A mapping with a comment (or at the top) gets a ``key.*`` line. Then the config groups with their
options.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from stnlab.config import CONF_DIR, compose, config_files, group_options
from stnlab.config.checks import text as shown

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


# Lines for Hydra's special keys, which no config file comments.
SPECIAL = {
    "_target_": "the class (or function) this node builds",
    "_partial_": "built by the run, which adds the arguments it alone knows",
    "_requires_": "the package this option needs",
}
# STs are named per model preset (input, conv1, conv2, ...); their keys mean the same whatever the name.
_ST_NAME = re.compile(r"(transformers\.)[^.]+")


def register_resolver() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _resolve)


def _resolve(config_name: str, _root_: DictConfig) -> str:
    """The help template's resolver: ``_root_`` is the config this command line composed (with ``hydra``)."""
    composed = OmegaConf.to_container(_root_, resolve=False)
    hydra = composed.pop("hydra", None) or {}
    overrides = list((hydra.get("overrides") or {}).get("task") or [])
    choices = (hydra.get("runtime") or {}).get("choices") or {}
    return help_text(config_name, None, composed, overrides, choices)


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
            if not text.startswith("# @package"):  # Hydra's directive, not a description
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


@dataclass
class Docs:
    """Descriptions by full dotted key: of values (``keys``) and of mappings (``sections``)."""

    keys: dict[str, str]
    sections: dict[str, str]

    def add(self, other: Docs) -> None:
        """``other``'s descriptions win (a later file of the defaults list)."""
        self.keys.update({k: v for k, v in other.keys.items() if v})
        self.sections.update({k: v for k, v in other.sections.items() if v})


def file_docs(path: Path, package: str, group: str = "") -> Docs:
    """The comments of one config file, under the package it is merged at (``""``: the root). Its header
    describes the package's node; a file of a single mapping (``test_report: {...}``), that mapping; a global
    file of group G (``scheduler/none.yaml``), the key G."""
    doc = read(path)
    first = doc.keys[0] if doc.keys else None
    if group and not doc.header and first is not None and first.value is not None and first.doc:
        # A group option's first comment, right above its first key (_target_, name), describes the option.
        doc.header, doc.keys[0] = [first.doc], Entry(first.name, first.value, "")
    prefix = f"{package}." if package else ""
    docs = Docs({}, {})
    for e in doc.keys:
        bucket = docs.sections if e.value is None else docs.keys
        bucket[prefix + e.name] = e.doc
        if e.doc:  # also under the ST-independent name (model.transformers.*.position)
            bucket.setdefault(_ST_NAME.sub(r"\1*", prefix + e.name), e.doc)
    top = [e for e in doc.keys if "." not in e.name]
    single = top[0] if len(top) == 1 and (package or top[0].name == group) else None
    target = prefix + single.name if single else package
    bucket = docs.keys if single is not None and single.value is not None else docs.sections
    if doc.header and target and not bucket.get(target):
        bucket[target] = " ".join(doc.header)
    return docs


def _package_of(path: Path, group: str) -> str:
    """The package a group option merges at: its ``# @package`` line, else its group."""
    for line in path.read_text().splitlines()[:3]:
        if line.startswith("# @package"):
            package = line.split(None, 2)[2].strip()
            return "" if package == "_global_" else group if package == "_group_" else package
    return group


def every_option(conf: Path) -> Docs:
    """The descriptions in every option of every config group (for keys whose chosen option has none)."""
    docs = Docs({}, {})
    for path in sorted(conf.glob("*/*.yaml")):
        group = path.parent.name
        if group in ("hydra", "cli", "experiment", "debug"):
            continue
        docs.add(file_docs(path, _package_of(path, group), group))
    return docs


def chosen_files(files: list[tuple[str, str]], conf: Path) -> Docs:
    docs = Docs({}, {})
    for config_path, package in files:
        path = conf / f"{config_path}.yaml"
        # An experiment's or debug preset's comments say why it chose a value, not what the key means.
        if path.is_file() and not config_path.startswith(("experiment/", "debug/")):
            docs.add(file_docs(path, package, config_path.split("/")[0] if "/" in config_path else ""))
    return docs


def describe(key: str, chosen: Docs, others: Docs) -> str:
    """A key's line of meaning (see the module docstring)."""
    general = _ST_NAME.sub(r"\1*", key)
    for docs in (chosen, others):
        for k in (key, general):
            if docs.keys.get(k):
                return docs.keys[k]
    return SPECIAL.get(key.rsplit(".", 1)[-1], "")


def key_entries(composed: dict, chosen: Docs, others: Docs, prefix: str = "") -> list[Entry]:
    """Every leaf of ``composed`` as ``key=value`` with its description, under a ``key.*`` line for each top-level
    or described mapping."""
    out: list[Entry] = []
    for k, v in composed.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            text = chosen.sections.get(key) or others.sections.get(key) or ""
            if text or not prefix:
                out.append(Entry(key, None, text))
            out += key_entries(v, chosen, others, key + ".")
        else:
            out.append(Entry(key, shown(v), describe(key, chosen, others)))
    return out


def help_text(
    config_name: str,
    conf: Path | None = CONF_DIR,
    composed: dict | None = None,
    overrides: Sequence[str] = (),
    choices: dict[str, Any] | None = None,
) -> str:
    """The ``--help`` of the app whose config is ``conf/<config_name>.yaml`` ('$' doubled for Hydra's template).

    ``composed``: the config the command line composed (``overrides``, which chose the group options
    ``choices``); by default ``conf/<config_name>.yaml`` alone. ``conf=None``: the running app's config folder."""
    folder = conf or CONF_DIR
    if composed is None:
        composed = OmegaConf.to_container(compose(config_name, overrides, conf), resolve=False)  # type: ignore[assignment]
    doc = read(folder / f"{config_name}.yaml")
    chosen = chosen_files(config_files(config_name, overrides, conf), folder)
    entries = key_entries(composed, chosen, every_option(folder))
    lines = [*doc.header, "", "Keys (key=default, as this command line sets them):", *_rows(entries)]
    if doc.groups:
        # The option this command line chose for each group (its default when not known).
        chosen_groups = [Entry(g.name, shown((choices or {}).get(g.name, g.value)), g.doc) for g in doc.groups]
        lines += ["", "Config groups (group=option):", *_rows(chosen_groups)]
    lines += ["", *textwrap.wrap(FOOTER, WIDTH, break_on_hyphens=False)]
    return "\n".join(lines).replace("$", "$$") + "\n"
