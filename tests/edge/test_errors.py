"""One exception root for the edge: every exception class defined in ``edge`` is an
``EdgeError`` (a reader's or scanner's a ``ReaderError``), so a loop that keeps a device
or the agent running catches one class, and a foreign error is wrapped where it enters."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import edge
import edge.errors
from edge.errors import EdgeError, ReaderError


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in an ``edge`` module, by its qualified name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(edge.__path__, "edge."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
            ):
                found[f"{info.name}.{name}"] = value
    return found


def test_every_edge_exception_derives_from_edge_error() -> None:
    found = defined_exceptions()
    assert "edge.buffer.errors.OutboxError" in found  # the walk sees subpackages
    assert "edge.readers.llrp_reports.LlrpError" in found
    assert sorted(name for name, cls in found.items() if not issubclass(cls, EdgeError)) == []


def test_every_reader_adapter_error_is_a_reader_error() -> None:
    readers = {
        name: cls for name, cls in defined_exceptions().items() if name.startswith("edge.readers.")
    }
    assert len(readers) >= 10
    assert sorted(name for name, cls in readers.items() if not issubclass(cls, ReaderError)) == []


def test_the_tree_in_edge_errors_names_every_class() -> None:
    assert edge.errors.__doc__ is not None
    named = set(edge.errors.__doc__.split())
    missing = sorted(n for n, c in defined_exceptions().items() if c.__name__ not in named)
    assert missing == []
