"""The import layering of docs/architecture.md §2, checked on the source tree.

Every ``import`` and ``from … import`` of our packages is read with ``ast`` (nothing is
executed, so an import inside a function or under ``TYPE_CHECKING`` counts as well) and
checked against the floors: a package imports only the packages below it, ``edge`` and
``server`` never each other, and ``server/rules`` nothing of the server above it; and no
module imports itself through others (no cycles, imports inside functions counted too);
no module is longer than a reader can hold in mind (500 lines, tests aside).
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


SERVER_FLOORS: dict[str, int] = {
    "errors": 1, "rules": 1,
    "config": 2,
    "store": 3,
    "ingest": 4, "alerts": 4, "commands": 4, "queries": 4, "reports": 4, "history": 4,
    "epcis": 4, "replenishment": 4, "metrics": 4,
    "api": 5, "console": 5,
    "app": 6,
}  # fmt: skip
"""The server's groups (a subpackage or a top module) by floor, docs/architecture.md §2: a
group imports only groups on its own floor or below."""


def server_group(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_server_group_has_a_floor() -> None:
    groups = {server_group(module) for module, _ in imports("server")} - {""}
    assert groups - set(SERVER_FLOORS) == set()


def test_a_server_group_imports_nothing_above_its_floor() -> None:
    wrong = sorted(
        f"{module} imports {name}"
        for module, name in imports("server")
        if name.startswith("server.")
        and server_group(module) in SERVER_FLOORS
        and SERVER_FLOORS.get(server_group(name), 0) > SERVER_FLOORS[server_group(module)]
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


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (a ``from m import x`` counts ``m.x`` where
    that is a module)."""
    modules: dict[str, Path] = {}
    for package, folder_name in PACKAGES.items():
        folder = ROOT / folder_name
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            modules[".".join((package, *parts)).removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[module].update(name for name in names if name in modules and name != module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others() -> None:
    """No import cycles between modules, imports inside functions included."""
    assert cycles(import_graph()) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


MAX_MODULE_LINES = 500


def test_no_module_is_over_500_lines() -> None:
    """A module a reader can hold in mind: split by responsibility before it grows past this."""
    long = sorted(
        f"{path.relative_to(ROOT)}: {lines} lines"
        for folder in PACKAGES.values()
        for path in (ROOT / folder).rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    )
    assert long == []
