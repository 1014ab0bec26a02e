"""docs/operations.md names the test behind each claim: every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs/operations.md"


def _references() -> list[tuple[str, str | None]]:
    """(test file, function name or prefix or None) for each reference."""
    found: list[tuple[str, str | None]] = []
    for line in DOC.read_text().splitlines():
        current: str | None = None
        for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::)?([\w*]+)?`", line):
            if path:
                current = path
                found.append((path, name or None))
            elif name and current and line.count("`::") and f"`::{name}`" in line:
                found.append((current, name))
    return found


def _test_names(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_test_named_in_operations_md_exists():
    assert "(S)" not in DOC.read_text(), "a claim still waits for its test"
    refs = _references()
    assert len(refs) > 20
    for path, name in refs:
        assert (ROOT / path).is_file(), path
        if name is None:
            continue
        names = _test_names(path)
        if name.endswith("*"):
            assert any(n.startswith(name[:-1]) for n in names), f"{path}::{name}"
        else:
            assert name in names, f"{path}::{name}"
