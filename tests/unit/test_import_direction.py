"""The direction of imports drawn in docs/ARCHITECTURE.md holds, lazy imports included:
``rag`` never imports ``ingest`` or ``serving``, ``ingest`` never imports ``serving``, and
inside ``rag`` each sub-package imports only the ones below it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# What each part of rag/ may import besides itself and the top-level modules (config, errors,
# types, seams, migrations). services.py, the composition root, may import every part.
ALLOWED: dict[str, set[str]] = {
    "index": {"state"},  # the manifest goes through the state database's StateDB (issue 25)
    "engines": set(),
    "state": set(),
    "retrieval": {"index"},
    "eval": {"index", "retrieval"},
    "answering": {"index", "retrieval", "state"},
    "deploy": {"index", "engines"},
    "handoff": {"state"},  # the outbox lives in the state database
}
TOP_LEVEL = {"config", "errors", "types", "seams", "migrations", "__init__"}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def part_of(module: str) -> str | None:
    """``rag.index.store`` -> ``index``; ``rag.config`` and anything outside rag -> None."""
    parts = module.split(".")
    if parts[0] != "rag" or len(parts) < 2 or parts[1] in TOP_LEVEL or parts[1] == "services":
        return None
    return parts[1]


def violations() -> list[str]:
    found = []
    for package, banned in (("rag", ("ingest", "serving")), ("ingest", ("serving",))):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO)
            for module in sorted(imports(path)):
                if module.split(".")[0] in banned:
                    found.append(f"{rel} imports {module}")
    for path in sorted((REPO / "rag").rglob("*.py")):
        rel = path.relative_to(REPO)
        if rel.parts[1] == "services.py":
            continue
        own = rel.parts[1] if len(rel.parts) > 2 else None
        allowed = ALLOWED.get(own, set()) if own else set()
        for module in sorted(imports(path)):
            if module.split(".")[:2] == ["rag", "services"]:
                found.append(f"{rel} imports the composition root ({module})")
                continue
            target = part_of(module)
            if target is not None and target != own and target not in allowed:
                found.append(f"{rel} ({own or 'top level'}) imports {module}")
    return found


def test_imports_point_one_way() -> None:
    assert violations() == []


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "def f():\n    from serving.app import create_app\n    import rag.index.store\n"
    )
    assert imports(sample) >= {"serving.app", "rag.index.store"}
    assert part_of("rag.answering.answer") == "answering" and part_of("rag.config") is None
