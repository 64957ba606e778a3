"""The light client is its own package over the pure core: no consensus engine, no store,
no API, no node (docs/light-client.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIGHT = Path(__file__).resolve().parents[2] / "fluxchain" / "light"
ALLOWED = ("fluxchain.core", "fluxchain.light", "__future__")
STDLIB = ("collections", "dataclasses", "enum", "json", "os", "pathlib", "time", "typing")


@pytest.mark.parametrize("module", sorted(LIGHT.glob("*.py")), ids=lambda p: p.name)
def test_light_imports_only_core_modules(module: Path) -> None:
    for node in ast.walk(ast.parse(module.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.startswith(ALLOWED) or name.split(".")[0] in STDLIB, (
                f"{module.name} imports {name}"
            )
