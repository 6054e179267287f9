"""The import layering of docs/architecture.md §2, checked on the source tree.

Every ``import`` and ``from … import`` of our packages is read with ``ast`` (nothing is
executed, so an import inside a function or under ``TYPE_CHECKING`` counts as well) and
checked against the floors: a package imports only the packages below it, ``edge`` and
``server`` never each other, and ``server/rules`` nothing of the server above it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "wire": "wire",
    "plumbing": "plumbing",
    "edge": "edge",
    "server": "server",
    "firmware_sim": "firmware-sim",
    "bench": "bench",
    "stockgate": "stockgate",
}
MAY_IMPORT: dict[str, set[str]] = {
    "wire": set(),
    "plumbing": {"wire"},
    "edge": {"plumbing", "wire"},
    "server": {"plumbing", "wire"},
    "firmware_sim": {"plumbing", "wire", "edge.readers.llrp_codec"},
    "bench": {"plumbing", "wire", "edge", "server", "firmware_sim", "stockgate"},
    "stockgate": {"plumbing", "wire", "edge", "server", "firmware_sim"},
}
"""Package -> what it may import of ours (a package or one module of it)."""
EXCEPTIONS = {
    ("server.commands.gateway_config", "edge.remote_config"):
        "a gateway's remote config is checked with the edge's own models before it is sent",
}  # fmt: skip
"""Known crossings, each with its reason; nothing else may cross."""


def imports(package: str) -> Iterator[tuple[str, str]]:
    """(module, imported module) for every import of our packages in ``package``."""
    folder = ROOT / PACKAGES[package]
    if not folder.exists():
        return
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        module = ".".join((package, *parts)).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in PACKAGES:
                    yield module, name


def allowed(package: str, module: str, name: str) -> bool:
    top = name.split(".")[0]
    if top == package:
        return True
    return any(name == rule or name.startswith(f"{rule}.") for rule in MAY_IMPORT[package]) or (
        (module, name) in EXCEPTIONS
    )


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_package_imports_only_what_lies_below_it(package: str) -> None:
    wrong = sorted(
        f"{module} imports {name}"
        for module, name in imports(package)
        if not allowed(package, module, name)
    )
    assert wrong == []


def test_the_rules_import_nothing_of_the_server_above_them() -> None:
    wrong = sorted(
        f"{module} imports {name}"
        for module, name in imports("server")
        if module.startswith("server.rules")
        and name.startswith("server.")
        and not name.startswith("server.rules")
    )
    assert wrong == []


def test_the_check_sees_a_crossing() -> None:
    """The checker itself: a module importing upward is found."""
    assert not allowed("server", "server.x", "edge.agent")
    assert not allowed("wire", "wire.x", "server.config.settings")
    assert not allowed("edge", "edge.x", "stockgate.cli")
    assert allowed("server", "server.commands.gateway_config", "edge.remote_config")
    assert allowed("firmware_sim", "firmware_sim.x", "edge.readers.llrp_codec")
    assert not allowed("firmware_sim", "firmware_sim.x", "edge.readers.llrp")
