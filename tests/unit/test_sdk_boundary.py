"""The SDK and the server stay apart: the SDK never imports the server, and the server does not
import its own SDK (so `cariosan-client` can be installed and released on its own)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK_SOURCES = ROOT / "clients" / "python" / "src" / "cariosan_client"
SERVER_SOURCES = ROOT / "src" / "cariosan"


def _imported_packages(folder: Path) -> dict[str, set[str]]:
    """Top-level package of every import (also inside functions), per file."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_sdk_never_imports_the_server() -> None:
    imports = _imported_packages(SDK_SOURCES)
    assert len(imports) >= 7, "the SDK's sources were not found"
    assert {path for path, names in imports.items() if "cariosan" in names} == set()


def test_the_server_does_not_import_the_sdk() -> None:
    imports = _imported_packages(SERVER_SOURCES)
    assert len(imports) > 50, "the server's sources were not found"
    assert {path for path, names in imports.items() if "cariosan_client" in names} == set()


def test_the_sdk_imports_only_its_declared_dependencies() -> None:
    project = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text())
    declared = {
        re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0] for r in project["project"]["dependencies"]
    }
    assert declared == {"httpx", "websockets", "msgspec"}
    used = set().union(*_imported_packages(SDK_SOURCES).values())
    third_party = {name for name in used if name not in sys.stdlib_module_names}
    third_party.discard("cariosan_client")
    assert third_party <= declared, third_party - declared
