"""The trust-zone import rules of docs/architecture.md, checked on the AST.

- enclave, host and client never import each other;
- protocol and crypto (shared and pure) import no zone and no CLI;
- no zone imports the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "nestor"
ZONES = ("client", "enclave", "host")
SHARED = ("protocol", "crypto", "attestation", "programs", "simtee")


def _imports(path: Path, package: str | None = None) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    if package is None:
        package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _forbidden(package: str) -> tuple[str, ...]:
    if package in ZONES:
        return (*tuple(f"nestor.{z}" for z in ZONES if z != package), "nestor.cli")
    if package in SHARED:
        return (*tuple(f"nestor.{z}" for z in ZONES), "nestor.cli")
    return ()


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_module_respects_zone_rules(path: Path) -> None:
    parts = path.relative_to(SRC).parts
    if len(parts) < 2:
        return
    banned = _forbidden(parts[0])
    bad = sorted(m for m in _imports(path) if any(m == b or m.startswith(b + ".") for b in banned))
    assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_the_rule_checker_sees_violations(tmp_path: Path) -> None:
    """The checker itself must be able to fail."""
    sample = tmp_path / "probe.py"
    sample.write_text("from nestor.enclave import keys\nfrom ..client import party\n")
    found = _imports(sample, package="nestor.host")
    assert "nestor.enclave" in found
    assert "nestor.client" in found
