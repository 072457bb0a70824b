"""The package layout's one rule: `engine` (what serves a chat) never imports `lab` (what trains and
measures models) or `chat_app` (the web app), and `chat_app` never imports `lab`.

Read from the source with `ast`, so an import hidden inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"engine": ("lab", "chat_app", "gradio"), "chat_app": ("lab",)}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import statement in one file, relative imports resolved to absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.append((node.lineno, base))
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package):
    assert violations(package) == []


def test_the_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    """The checker itself: a lab import inside a function body of an engine file is reported."""
    fake = tmp_path / "engine"
    fake.mkdir()
    (fake / "sneaky.py").write_text("def f():\n    from lab.train import main\n    from . import lab\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("engine") == ["engine/sneaky.py:2 imports lab.train"]


def test_serving_a_turn_loads_no_lab_module():
    """Importing what `launch.py` serves with, and loading the shipped model, pulls in no lab module."""
    code = (
        "import sys, launch, chat_app.serve, chat_app.app, chat_app.api, engine.backends.builtin, engine.ask\n"
        "from engine.backends import load_backend\n"
        "load_backend()\n"
        "print(sorted(m for m in sys.modules if m == 'lab' or m.startswith('lab.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
