"""Render docs/config-reference.md from the config dataclasses (``python scripts/gen_config_reference.py``).

What is documented is what Hydra sees: every entry of every config group in the ConfigStore that
``ramda.config.register_configs`` fills (optimizers, regularizers, loggers, the trainer, the tasks) and the root
``RunConfig``. A field's meaning is its *attribute docstring*, the string literal on the line below the field:

    lr: float = 1e-2
    \"\"\"η, the learning rate (> 0).\"\"\"

A subclass inherits the docstring of the field it overrides unless it gives its own. A field whose type is
itself a dataclass (``task.data``) is listed key by key under its prefix. ``--check`` writes nothing and exits
with status 1 when the checked-in file differs from what would be generated.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "config-reference.md"
COMMAND = "python scripts/gen_config_reference.py"
#: The config groups in the order the reference lists them, with the sentence introducing each.
GROUPS = {
    "optimizer": "`optimizer=<name>` picks one of these; each has only its own keys (an unknown key is an error).",
    "regularizer": "`regularizer=<name>` picks ψ; `regularizer.lam` is λ.",
    "trainer": "The training loop.",
    "logger": "`logger=<name>` picks where the figures go besides the run directory.",
    "task": "`task=<name>` picks the task; `task.*` keys differ per task.",
}
SKIP = {"_target_", "defaults"}


@cache
def attribute_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of the fields defined in ``cls`` itself (not its bases)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for field, nxt in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[field.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


def field_doc(cls: type, name: str) -> str:
    for klass in cls.__mro__:
        doc = attribute_docs(klass).get(name)
        if doc:
            return doc
    return ""


def class_doc(cls: type) -> str:
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclasses writes when there is no docstring
        return ""
    return " ".join(inspect.cleandoc(doc).split())


def show(value: Any) -> str:
    """A default as it is typed on the command line (YAML)."""
    if value == "???":
        return "(required)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, tuple)):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    if isinstance(value, str) and value == "":
        return '`""`'
    return f"`{value}`"


def cell(text: str) -> str:
    """Docstring text as a Markdown table cell: reST literals as Markdown code, pipes escaped."""
    return text.replace("``", "`").replace("|", "\\|")


def rows(cls: type, values: dict[str, Any], prefix: str, missing: list[str]) -> list[str]:
    """Table rows ``| key | default | meaning |`` for the fields of ``cls``, recursing into nested dataclasses."""
    out = []
    for f in dataclasses.fields(cls):
        if f.name not in SKIP:
            out += field_rows(cls, f.name, values.get(f.name), prefix, missing)
    return out


def field_rows(cls: type, name: str, value: Any, prefix: str, missing: list[str]) -> list[str]:
    key, doc = f"{prefix}{name}", field_doc(cls, name)
    sub = _dataclass_of(cls, name)
    if sub is not None and isinstance(value, dict):
        head = [f"| `{key}.*` | | {cell(doc)} |"] if doc else []
        return head + rows(sub, value, f"{key}.", missing)
    if not doc:
        home = next(k for k in reversed(cls.__mro__) if name in vars(k).get("__annotations__", {}))
        missing.append(f"{home.__module__}.{home.__qualname__}.{name}")
    return [f"| `{key}` | {cell(show(value))} | {cell(doc)} |"]


def _dataclass_of(cls: type, name: str) -> type | None:
    """The dataclass a field holds (``field(default_factory=DataConfig)``), if it holds one."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    factory = f.default_factory
    return factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None


def render() -> tuple[str, list[str]]:
    """The reference as Markdown, and the fields that have no docstring."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from ramda import config

    config.register_configs()
    if config.UNAVAILABLE_TASKS:
        names = ", ".join(f"{k} ({v})" for k, v in config.UNAVAILABLE_TASKS.items())
        raise SystemExit(f"error: cannot document tasks whose modules do not import here: {names}")
    repo = ConfigStore.instance().repo
    missing: list[str] = []
    lines = [
        "# Config reference",
        "",
        f"<!-- Generated by `{COMMAND}` from the config dataclasses' docstrings; do not edit. -->",
        "",
        "Every key of `python train.py`, its default and its meaning, generated from the dataclasses in",
        "`ramda/config.py` and each task's `Config` (`ramda/tasks/<task>.py`). Presets",
        "(`configs/preset/<task>/<optimizer>.yaml`) and experiments change these defaults; `python train.py --cfg job",
        "task=<t> optimizer=<o>` prints what a run composes to. See [running.md](running.md#how-a-config-is-composed).",
        "",
        "## Top level",
        "",
    ]
    root = OmegaConf.to_container(repo["train.yaml"].node, resolve=False)
    root_cls = OmegaConf.get_type(repo["train.yaml"].node)
    if class_doc(root_cls):
        lines += [cell(class_doc(root_cls)), ""]
    lines += ["| key | default | meaning |", "|---|---|---|"]
    defaults = {next(iter(d)): d[next(iter(d))] for d in root["defaults"] if isinstance(d, dict)}
    for f in dataclasses.fields(root_cls):
        if f.name in SKIP:
            continue
        if f.name in GROUPS:
            names = sorted(k.removesuffix(".yaml") for k in repo[f.name] if k.endswith(".yaml"))
            choice = ", ".join(f"`{n}`" for n in names)
            doc = field_doc(root_cls, f.name)
            if not doc:
                missing.append(f"{root_cls.__module__}.{root_cls.__qualname__}.{f.name}")
            lines.append(f"| `{f.name}` | {show(defaults.get(f.name))} | {cell(doc)} One of {choice}. |")
        else:
            lines += field_rows(root_cls, f.name, root[f.name], "", missing)
    for group, intro in GROUPS.items():
        lines += ["", f"## `{group}`", "", intro]
        entries = sorted(k for k in repo[group] if k.endswith(".yaml"))
        many = len(entries) > 1
        for entry in entries:
            node = repo[group][entry].node
            cls = OmegaConf.get_type(node)
            values = OmegaConf.to_container(node, resolve=False)
            name = entry.removesuffix(".yaml")
            if many:
                lines += ["", f"### `{group}={name}`", ""]
            else:
                lines += [""]
            spec = config.OPTIMIZERS.get(name) if group == "optimizer" else None
            target = f"{spec.cls.__module__}.{spec.cls.__qualname__}" if spec else None
            doc = class_doc(cls)
            if target:
                doc = f"`{target}`. {doc}".strip()
            if doc:
                lines += [cell(doc), ""]
            lines += ["| key | default | meaning |", "|---|---|---|"]
            lines += rows(cls, values, f"{group}.", missing)
    return "\n".join(lines) + "\n", sorted(set(missing))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in file is stale")
    args = parser.parse_args(argv)
    text, missing = render()
    by_class: dict[str, list[str]] = {}
    for name in missing:
        owner, _, field = name.rpartition(".")
        by_class.setdefault(owner, []).append(field)
    for owner, names in by_class.items():
        print(f"warning: {owner}: no docstring below {', '.join(names)}", file=sys.stderr)
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"error: {OUT.relative_to(REPO)} is stale; regenerate it with `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
