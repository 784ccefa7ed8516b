"""The package layout: a lean core, one book module per chapter, nothing heavy on import."""

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "tdcore"
BOOK = PKG / "book"


def chapter_notebooks():
    return sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))


def book_modules():
    import tdcore.book

    return sorted(p.stem for p in BOOK.glob("*.py")
                  if p.stem != "__init__" and p.stem not in tdcore.book.SHARED_MODULES)


def test_import_tdcore_pulls_no_plotting_or_notebook_stack():
    code = ("import sys, tdcore, tdcore.bench; "
            "print(' '.join(m for m in ('matplotlib', 'IPython', 'ipywidgets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_is_short_explicit_and_documented():
    import tdcore

    assert 30 <= len(tdcore.__all__) <= 45
    assert len(set(tdcore.__all__)) == len(tdcore.__all__)
    readme = (ROOT / "README.md").read_text()
    api_page = (ROOT / "api.md").read_text()
    for name in tdcore.__all__:
        obj = getattr(tdcore, name)
        assert obj.__doc__, name
        assert f"`{name}" in readme, f"tdcore.{name} is not in the README's API table"
        assert re.search(rf"\b{name}\b", api_page), f"tdcore.{name} is not on the API page"
    # nothing else public at the top level but the subpackages and the version
    extra = {n for n in vars(tdcore) if not n.startswith("_")} - set(tdcore.__all__)
    assert extra <= {"book", "bench", "sweep"}, extra


def test_every_chapter_has_its_book_module_and_vice_versa():
    assert chapter_notebooks() == book_modules()


@pytest.mark.parametrize("chapter", chapter_notebooks())
def test_chapter_imports_its_module_and_module_names_its_chapter(chapter):
    nb = json.loads((ROOT / "chapters" / f"{chapter}.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert re.search(rf"from tdcore\.book import (\w+, )*{chapter}\b", code), \
        f"chapters/{chapter}.ipynb does not import tdcore.book.{chapter}"
    mod = importlib.import_module(f"tdcore.book.{chapter}")
    assert f"chapters/{chapter}.ipynb" in (mod.__doc__ or ""), f"tdcore/book/{chapter}.py must name its chapter"
    # a chapter calls its module, the shared book helpers, or the core's public API
    import tdcore

    for name in set(re.findall(r"\btdcore\.(\w+)", code)) - {"book", "bench"}:
        assert name in tdcore.__all__, f"chapters/{chapter}.ipynb calls tdcore.{name}, not public API"


def test_no_module_is_too_long():
    too_long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py")
                if (n := len(p.read_text().splitlines())) > 950}
    assert not too_long, too_long


def test_book_modules_are_not_imported_by_the_core():
    # tdcore.sweep runs the book's full-size sweeps and the CLI drives it: both sit above the two layers
    above = {PKG / "sweep", PKG / "__main__.py"}
    for p in PKG.rglob("*.py"):
        if BOOK in p.parents or p in above or above & set(p.parents):
            continue
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and (
                    "book" in node.module.split(".") or node.module.startswith("tdcore.book")):
                pytest.fail(f"{p.relative_to(ROOT)} imports {node.module}: the core must not depend on tdcore.book")
