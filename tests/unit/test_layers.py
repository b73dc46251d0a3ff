"""The house's floors, checked from the imports: no circle, and no import that runs back up.

Every ``import kgateway...`` / ``from kgateway... import`` in every module (at any depth,
lazy ones included) is read with ``ast``. A module may import modules on lower floors, and
modules of its own package on its own floor, as long as no circle forms.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator

from tests.helpers import ROOT

PACKAGE = os.path.join(ROOT, "kgateway")

#: floors, lowest first: a module's floor is that of its longest matching prefix
FLOORS: dict[str, int] = {
    "kgateway": 0,  # the version
    "kgateway.interfaces": 0,
    "kgateway.timers": 0,
    "kgateway.protocols": 0,
    "kgateway.certs": 0,
    "kgateway.workers": 0,
    "kgateway.systemd": 0,  # sd_notify: the standard library only
    "kgateway.logobserver": 0,  # twisted.logger only
    "kgateway.auth": 1,
    "kgateway.config": 2,
    "kgateway.transport": 3,
    "kgateway.web": 3,  # the path router: an HTTP adapter
    "kgateway.jms": 4,
    "kgateway.amqp": 4,
    "kgateway.shield": 4,
    "kgateway.balancer": 4,
    "kgateway.services": 5,
    "kgateway.connector": 5,
    "kgateway.listeners": 6,
    "kgateway.cli": 6,
    "kgateway.gateway": 7,
    "kgateway.tap": 8,
}


def floor(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in FLOORS:
            return FLOORS[prefix]
    raise AssertionError(f"{module} is on no floor: add it to FLOORS")


def package_of(module: str) -> str:
    """The package a module belongs to for the same-floor rule (kgateway.jms.session ->
    kgateway.jms; a top-level module is its own)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def modules() -> Iterator[tuple[str, str]]:
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield rel.removesuffix(".__init__"), path


def imports(path: str, module: str, known: set[str]) -> set[str]:
    """The kgateway modules *path* imports (``from kgateway.x import y`` counts y when y is
    a module of its own)."""
    found: set[str] = set()
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kgateway")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("kgateway"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    found = dict(modules())
    known = set(found)
    return {module: imports(path, module, known) for module, path in found.items()}


def test_every_import_runs_down_or_stays_in_its_package() -> None:
    wrong = []
    for module, targets in sorted(graph().items()):
        for target in sorted(targets):
            if floor(target) > floor(module) or (
                    floor(target) == floor(module) and package_of(target) != package_of(module)
                    and floor(module) != 0):
                wrong.append(f"{module} (floor {floor(module)}) imports {target} "
                             f"(floor {floor(target)})")
    assert wrong == []


def test_no_import_circle() -> None:
    edges = graph()
    # A package's __init__ re-exporting its own modules is not a circle of the house.
    edges = {m: {t for t in ts if not (m == package_of(t) and t.startswith(m + "."))}
             for m, ts in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert circles == []


def test_the_floors_cover_the_house() -> None:
    for module in graph():
        floor(module)  # raises for a module nobody placed
