"""docs/ARCHITECTURE.md names every module, and the imports flow one way (read from the source with ast).

Rules (docs/ARCHITECTURE.md): ``cli.py -> train/ -> soundlib/ -> encoders/``; the command-line modules
(:data:`CLI_ONLY`, and ``soundlib/serve/`` when it exists) are imported by the command line only; the web front end
``soundlib/serve/`` by nothing else in the library. Every import counts, also one inside a function (a lazy import
is still a dependency); ``if TYPE_CHECKING:`` imports do not (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("encoders", "soundlib", "train")
#: Modules of the command line that the library must never import (besides soundlib/serve/).
CLI_ONLY = ("soundlib.clikit", "soundlib.cli_tables")
SERVE = "soundlib.serve"


def module_files() -> dict[str, Path]:
    """``{dotted name: file}`` of cli.py and every module of the three packages (a package is its __init__)."""
    out = {"cli": ROOT / "cli.py"}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imported_modules(name: str, path: Path, top_level_only: bool = False) -> set[str]:
    """Dotted names a module imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``; relative imports resolved).

    ``top_level_only``: only the imports that run when the module itself is imported (not those in functions).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer(name: str) -> str:
    """``cli`` (cli.py and the CLI-only modules), ``serve``, or the package: ``encoders``, ``soundlib``, ``train``."""
    if name == "cli" or any(within(name, m) for m in CLI_ONLY):
        return "cli"
    if within(name, SERVE):
        return "serve"
    return name.split(".")[0]


#: What each layer may import from the project's own layers.
ALLOWED = {
    "encoders": {"encoders"},
    "soundlib": {"encoders", "soundlib"},
    "train": {"encoders", "soundlib", "train"},
    "serve": {"encoders", "soundlib", "serve", "cli"},
    "cli": {"encoders", "soundlib", "train", "serve", "cli"},
}


def edges() -> list[tuple[str, str]]:
    """``(importer, imported)`` for every import of one project module by another."""
    files = module_files()
    out = []
    for name, path in files.items():
        for target in imported_modules(name, path):
            if target.split(".")[0] in ("cli", *PACKAGES) and target != name:
                out.append((name, target))
    return out


def test_imports_flow_one_way() -> None:
    wrong = sorted({f"{a} imports {b}" for a, b in edges() if layer(b) not in ALLOWED[layer(a)]})
    assert not wrong, "imports against the direction of docs/ARCHITECTURE.md:\n" + "\n".join(wrong)


def test_serve_is_imported_by_nothing_else_in_the_library() -> None:
    wrong = sorted({f"{a} imports {b}" for a, b in edges()
                    if layer(b) == "serve" and layer(a) != "serve" and a != "cli"})
    assert not wrong, "\n".join(wrong)


def test_every_module_is_named_in_architecture_md() -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = sorted(str(p.relative_to(ROOT)) for name, p in module_files().items()
                     if p.name != "__init__.py" and f"`{p.relative_to(ROOT).as_posix()}`" not in doc)
    assert not missing, "modules without their line in docs/ARCHITECTURE.md: " + ", ".join(missing)


def test_the_rules_catch_a_wrong_import(tmp_path: Path) -> None:
    """The checks above can fail: a library module importing the CLI is found, a lazy import too."""
    f = tmp_path / "bad.py"
    f.write_text("import numpy\n\ndef f():\n    from soundlib.clikit import fail\n    from train import loop\n")
    got = imported_modules("soundlib.bad", f)
    assert {"soundlib.clikit", "train"} <= got and "numpy" in got
    assert imported_modules("soundlib.bad", f, top_level_only=True) == {"numpy"}
    assert {layer(t) for t in got if t.split(".")[0] in PACKAGES} - ALLOWED["soundlib"] == {"cli", "train"}
    rel = tmp_path / "rel.py"
    rel.write_text("from . import scoring\nfrom ..config import StoreConfig\n")
    assert imported_modules("soundlib.evaluation.rel", rel) >= {"soundlib.evaluation.scoring",
                                                                 "soundlib.config.StoreConfig"}


def _closure(start: str, files: dict[str, Path]) -> set[str]:
    """Everything importing ``start`` imports at once (module-level imports, followed through the project)."""
    seen, todo, outside = set(), [start], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for t in imported_modules(name, files[name], top_level_only=True):
            if t in files:
                todo.append(t)
            elif t.split(".")[0] not in ("cli", *PACKAGES):
                outside.add(t.split(".")[0])
    return outside


@pytest.mark.parametrize("module", ["soundlib.evaluation.scoring", "soundlib.config", "train.defaults", "cli"])
def test_light_modules_import_no_heavy_library(module: str) -> None:
    """The scoring core (what training needs), the defaults and the CLI's module level pull in no torch/Chroma."""
    heavy = {"torch", "torchvision", "chromadb", "librosa", "av", "rich"}
    assert not _closure(module, module_files()) & heavy


def test_scoring_really_imports_without_torch_or_chroma() -> None:
    code = ("import sys; import soundlib.evaluation.scoring; "
            "print(sorted(m for m in ('torch', 'chromadb', 'librosa') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
