"""The README's configuration reference, generated from the settings models.

The models are the single source of the keys, their defaults and their meaning (the
attribute docstrings); `python -m stockgate.config_reference` prints the Markdown that the
README carries between its markers, and a test fails when the two drift apart.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The settings model a field holds, and whether it is an array of tables."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        inner, _ = _model_of(args[0]) if args else (None, False)
        return inner, True
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            inner, many = _model_of(arg)
            if inner is not None:
                return inner, many
        return None, False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return ""
    else:
        value = field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return f'`"{value}"`'
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, list | tuple):
        return f"`{list(value)}`"
    return f"`{value}`"


def _describe(field: FieldInfo) -> str:
    text = " ".join((field.description or "").split())
    return text.replace("|", "\\|")


def _tables(model: type[BaseModel], prefix: str, many: bool) -> list[str]:
    lines: list[str] = []
    scalars: list[str] = []
    nested: list[tuple[str, type[BaseModel], bool]] = []
    for name, field in model.model_fields.items():
        inner, inner_many = _model_of(field.annotation)
        if inner is not None:
            nested.append((name, inner, inner_many))
            continue
        scalars.append(f"| `{name}` | {_default(field)} | {_describe(field)} |")
    if prefix and scalars:
        title = f"[[{prefix}]]" if many else f"[{prefix}]"
        doc = " ".join((model.__doc__ or "").split())
        doc = re.sub(r"^``\[+[\w.]+\]+``:\s*", "", doc).replace("``", "`")
        lines += [f"**`{title}`** — {doc}", "", "| key | default | meaning |", "|---|---|---|"]
        lines += [*scalars, ""]
    for name, inner, inner_many in nested:
        lines += _tables(inner, f"{prefix}.{name}" if prefix else name, inner_many)
    return lines


def reference() -> str:
    """The whole reference: the edge's file, then the server's."""
    from edge.config import EdgeSettings
    from server.config.settings import ServerSettings

    out = ["### edge.toml", ""]
    out += _tables(EdgeSettings, "", False)
    out += ["### server.toml", ""]
    out += _tables(ServerSettings, "", False)
    return "\n".join(out).rstrip() + "\n"


def readme_section(readme: str) -> str:
    """The generated part of a README text (between the markers)."""
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[start:end].strip("\n") + "\n"


def update_readme(path: Path) -> bool:
    """Rewrite the README's reference; True if it changed."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + reference() + text[end:]
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


if __name__ == "__main__":  # pragma: no cover - developer tool
    import sys

    if sys.argv[1:] == ["--write"]:
        changed = update_readme(Path("README.md"))
        print("README.md updated" if changed else "README.md already current")
    else:
        sys.stdout.write(reference())
