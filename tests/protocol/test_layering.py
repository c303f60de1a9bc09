"""The protocol core stays sans-I/O: DESIGN.md forbids I/O and clock imports in it."""

from __future__ import annotations

import ast
from pathlib import Path

import wsskit.protocol

FORBIDDEN = {"asyncio", "socket", "ssl", "threading", "time", "selectors"}
PROTOCOL_DIR = Path(wsskit.protocol.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_protocol_imports_no_io() -> None:
    files = sorted(PROTOCOL_DIR.glob("*.py"))
    assert len(files) >= 8
    offenders = {f.name: sorted(_imported_modules(f) & FORBIDDEN) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def _imports_from_parent(node: ast.ImportFrom) -> list[str]:
    # "from ..exceptions import X" -> ["exceptions"]; "from .. import _speedups" -> ["_speedups"].
    return [node.module] if node.module else [alias.name for alias in node.names]


def test_protocol_imports_nothing_above_it() -> None:
    # Layers import only downwards: protocol may use wsskit.exceptions and the
    # optional C accelerator wsskit._speedups (a leaf that imports nothing of
    # wsskit), nothing else of wsskit.
    for path in PROTOCOL_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                for module in _imports_from_parent(node):
                    assert module in ("exceptions", "_speedups"), f"{path.name} imports ..{module}"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("wsskit"), f"{path.name} uses an absolute wsskit import"
