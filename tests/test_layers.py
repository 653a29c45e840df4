"""The dependency rules of docs/ARCHITECTURE.md, checked on the source (an AST walk, no import):
what may import what. A change that breaks a rule fails here with the offending import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "receiver"

# The layers, lowest first. A module's layer is its top-level name under receiver/.
CORE = frozenset(
    {
        "__init__",
        "__version__",
        "backoff",
        "clock",
        "envelope",
        "logs",
        "redaction",
        "transport",
        "pool",
        "config",
        "store",
    }
)
# What each part may import besides core (and itself). Parts not listed are checked by the
# rules below only.
ALLOWED: dict[str, frozenset[str]] = {
    "web": frozenset(),  # validate, enqueue, answer: no Graph, no pipeline, no sinks
    "routing": frozenset(),  # pure: envelope in, sink names out
    "simulator": frozenset(),  # shares no code with the product (it speaks HTTP)
    "graph": frozenset(),
    "securescore": frozenset({"graph"}),
    "sinks": frozenset({"securescore"}),  # sinks know their vendor and the envelope
    "actions": frozenset({"graph", "pipeline"}),
    "pipeline": frozenset({"graph", "routing", "sinks", "actions"}),
    "admin": frozenset({"pipeline", "sinks"}),  # reads Redis, renders with the sinks' templates
    "scheduler": frozenset({"graph", "pipeline", "securescore"}),
}
# Third-party I/O that pure parts must not import.
NO_IO = {"routing": ("redis", "httpx", "msal", "aiosmtplib", "uvicorn", "starlette")}
ONLY_FROM = {
    "simulator": frozenset({"cli", "simulator"}),  # who may import it
    "cli": frozenset({"cli"}),
}  # the one place that knows every role


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> Iterator[tuple[str, str, int]]:
    """(importing module, imported module, line) for every import in receiver/."""
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield module, alias.name, node.lineno
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield module, node.module, node.lineno
                for alias in node.names:
                    yield module, f"{node.module}.{alias.name}", node.lineno


IMPORTS = list(_imports())


def _receiver_edges() -> list[tuple[str, str, str, int]]:
    """(part, imported part, importing module, line) across parts of receiver/."""
    out = []
    for module, imported, line in IMPORTS:
        if imported == "receiver" or not imported.startswith("receiver."):
            continue
        source, target = _part(module), _part(imported)
        if source != target:
            out.append((source, target, module, line))
    return out


def test_the_rules_see_every_import() -> None:
    """A check that found no edge would pass whatever the code: it finds the known ones."""
    edges = {(s, t) for s, t, _, _ in _receiver_edges()}
    assert ("web", "store") in edges and ("pipeline", "sinks") in edges
    assert ("cli", "web") in edges and ("cli", "simulator") in edges


def test_core_imports_only_core() -> None:
    bad = [
        f"{m}:{line} imports receiver.{t}"
        for s, t, m, line in _receiver_edges()
        if s in CORE and t not in CORE
    ]
    assert bad == []


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_what_it_may(part: str) -> None:
    # The simulator may not even share core: a bug must not hide in code both sides share.
    allowed = (frozenset() if part == "simulator" else CORE) | ALLOWED[part]
    bad = [
        f"{m}:{line} imports receiver.{t}"
        for s, t, m, line in _receiver_edges()
        if s == part and t not in allowed
    ]
    assert bad == [], f"{part} may import only core and {sorted(ALLOWED[part])}"


@pytest.mark.parametrize("part", sorted(NO_IO))
def test_pure_parts_do_no_io(part: str) -> None:
    bad = [
        f"{m}:{line} imports {name}"
        for m, name, line in IMPORTS
        if _part(m) == part and name.split(".")[0] in NO_IO[part]
    ]
    assert bad == []


@pytest.mark.parametrize("part", sorted(ONLY_FROM))
def test_who_may_import_a_part(part: str) -> None:
    bad = [
        f"{m}:{line} imports receiver.{t}"
        for s, t, m, line in _receiver_edges()
        if t == part and s not in ONLY_FROM[part]
    ]
    assert bad == []
