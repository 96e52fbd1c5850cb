"""Every block and key of a run configuration, with its default and its documentation, as YAML
(``fluxmap config``): written from the dataclasses of :mod:`fluxmap.config` and their attribute
docstrings, so it cannot drift from what the parser accepts (a test reads it back)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from typing import Any

import yaml

from fluxmap import config

__all__ = ["config_reference", "field_docs"]


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (``name: type = default`` then a string)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _is_mapping(hint: Any) -> bool:
    """``tuple[tuple[str, X], ...]``: a mapping in YAML."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is not tuple or len(args) != 2 or args[1] is not Ellipsis:
        return False
    inner = typing.get_args(args[0])
    return typing.get_origin(args[0]) is tuple and len(inner) == 2 and inner[0] is str and inner[1] is not Ellipsis


def _is_grid(hint: Any) -> bool:
    """``tuple[tuple[str, <mapping>], ...]`` (``model.grid``): a list of ``{kind, params}`` in YAML,
    where a kind may come more than once."""
    return _is_mapping(hint) and _is_mapping(typing.get_args(typing.get_args(hint)[0])[1])


def _plain(value: Any, hint: Any) -> Any:
    """A default as YAML writes it: mappings for pair tuples, lists for tuples, dataclasses as mappings."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name), f.type) for f in dataclasses.fields(value)}
    if _is_grid(hint):
        return [{"kind": k, "params": dict(p)} for k, p in value]
    if _is_mapping(hint):
        return {k: _plain(v, None) for k, v in value}
    if isinstance(value, tuple):
        return [_plain(v, None) for v in value]
    return value


def _lines(cls: type, value: Any, indent: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        for line in textwrap.wrap(docs.get(f.name, ""), 96 - len(indent)):
            out.append(f"{indent}# {line}")
        current = getattr(value, f.name)
        optional: list[Any] = [a for a in typing.get_args(hints[f.name]) if dataclasses.is_dataclass(a)]
        if current is None and optional:  # an optional block, off by default: its keys as comments
            out.append(f"{indent}{f.name}: null")
            out.append(f"{indent}# {f.name}:  (a mapping; {{}} takes these defaults)")
            out.extend(f"{indent}# {line}" for line in _lines(optional[0], optional[0](), "  "))
            continue
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            out.append(f"{indent}{f.name}:")
            out.extend(_lines(type(current), current, indent + "  "))
            continue
        text = yaml.safe_dump(
            {f.name: _plain(current, hints[f.name])}, default_flow_style=True, sort_keys=False, width=10_000
        )
        out.append(indent + text.strip()[1:-1])
    return out


def config_reference() -> str:
    """The run configuration's reference: YAML of every block and key at its default, each key
    preceded by its documentation as comments. Parsed back, it is the default configuration."""
    head = [
        "# fluxmap run configuration: every block and key at its default (`fluxmap run --config FILE`).",
        "# Give only what you change. Text values may hold ${KEY}, filled by `--param KEY=VALUE`.",
        "# `demo: null` runs on your data only (sites.sources and extract.catalog then name it).",
    ]
    blocks = {
        "sites": config.SitesConfig,
        "extract": config.ExtractConfig,
        "model": config.ModelConfig,
        "predict": config.PredictConfig,
        "cluster": config.ClusterConfig,
        "metadata": config.MetadataConfig,
        "evaluate": config.EvaluateConfig,
        "variability": config.VariabilityConfig,
        "project": config.ProjectConfig,
        "demo": config.DemoConfig,
    }
    run_docs = field_docs(config.RunConfig)
    default = config.RunConfig()
    lines = [*head, "", f"# {run_docs['workdir']}", f"workdir: {default.workdir}"]
    for name, cls in blocks.items():
        lines += ["", f"# {run_docs.get(name, '')}", f"{name}:"]
        lines += _lines(cls, getattr(default, name), "  ")
    return "\n".join(lines) + "\n"
