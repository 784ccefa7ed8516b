"""Checks of the book's configuration and chapter notebooks (no build needed).

* Every chapter notebook starts with the Colab install cell generated from the
  ONE repository setting in ``_config.yml`` (URL and branch), tagged so that the
  book build and nbval skip it.
* Notebooks are committed without outputs or execution counts.
* ``_toc.yml`` lists only existing files, has no empty part, and lists every
  chapter notebook.
* ``_config.yml`` keeps the settings the book relies on; every citation key
  used by a page exists in ``references.bib``.

A fork that changes ``repository:`` in ``_config.yml`` rewrites the install
cells with::

    .venv/bin/python tests/test_book_config.py --write
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
INSTALL_TAGS = ("skip-execution", "nbval-skip", "remove-cell")


def repository_setting() -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``: the single source of truth."""
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = cfg["repository"]
    return repo["url"].rstrip("/"), str(repo.get("branch", "main"))


def install_cell_source(url: str, branch: str) -> str:
    """Text of the first code cell of every chapter notebook."""
    return (
        "# Colab (or any kernel without tdcore): install tdcore from the book's repository.\n"
        "# Skipped by the book build and by nbval; see chapters/README.md.\n"
        "try:\n"
        "    import tdcore  # noqa: F401\n"
        "except ImportError:\n"
        f'    %pip install -q "tdcore[book] @ git+{url}@{branch}"\n'
        "    import importlib; importlib.invalidate_caches()"
    )


def chapter_notebooks() -> list[Path]:
    return sorted(p for p in CHAPTERS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _first_code_cell(nb):
    return next((c for c in nb["cells"] if c["cell_type"] == "code"), None)


def _load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _toc_files() -> list[tuple[str | None, str]]:
    """``(part caption, file)`` of every toc entry (the root has caption None)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = [(None, toc["root"])]

    def walk(caption, entries):
        for e in entries or []:
            if "file" in e:
                out.append((caption, e["file"]))
            walk(caption, e.get("sections"))

    for part in toc.get("parts") or []:
        walk(part.get("caption"), part.get("chapters"))
    return out


def _repository_files() -> list[Path]:
    """Files git would commit (tracked, or untracked and not ignored)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout
        paths = [ROOT / f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        skip = {".git", ".venv", "_build", "node_modules"}
        paths = [p for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    return [p for p in paths if p.is_file()]


def _resolve(entry: str) -> Path | None:
    for suffix in ("", ".ipynb", ".md", ".rst"):
        p = ROOT / f"{entry}{suffix}"
        if p.is_file():
            return p
    return None


# ------------------------------------------------------------------- notebooks

NOTEBOOKS = chapter_notebooks()


def test_there_are_chapter_notebooks():
    assert NOTEBOOKS, "no notebooks found in chapters/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_install_cell_matches_repository_setting(path):
    url, branch = repository_setting()
    nb = _load(path)
    cell = _first_code_cell(nb)
    assert cell is not None, f"{path.name} has no code cell"
    expected = install_cell_source(url, branch)
    found = re.findall(r"git\+(\S+?)@([\w./-]+)\"", _source(cell))
    assert _source(cell) == expected, (
        f"{path.name}: the first code cell must be the install cell for {url}@{branch} "
        f"(found {found or 'no git URL'}). Run `.venv/bin/python tests/test_book_config.py --write`.")
    tags = cell.get("metadata", {}).get("tags", [])
    missing = [t for t in INSTALL_TAGS if t not in tags]
    assert not missing, f"{path.name}: install cell lacks tags {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_other_cell_names_a_repository(path):
    url, branch = repository_setting()
    cells = [c for c in _load(path)["cells"] if c["cell_type"] == "code"][1:]
    for c in cells:
        for other_url, other_branch in re.findall(r"git\+(https?://\S+?)@([\w./-]+)", _source(c)):
            assert (other_url.rstrip("/"), other_branch) == (url, branch), (
                f"{path.name}: a cell installs from {other_url}@{other_branch}, not {url}@{branch}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_is_stored_without_outputs(path):
    nb = _load(path)
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} have outputs or execution counts; clear them "
                       "(e.g. `jupyter nbconvert --clear-output --inplace`) before committing")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_kernel_and_title(path):
    nb = _load(path)
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", (
        f"{path.name}: kernelspec must be python3 (the book, nbval, Binder and Colab all use it)")
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and _source(first).lstrip().startswith("# "), (
        f"{path.name}: the first cell must be a markdown cell starting with the '# Title'")


# ------------------------------------------------------------------------- toc

def test_toc_lists_only_existing_files_and_no_empty_part():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["format"] == "jb-book"
    for caption, entry in _toc_files():
        assert _resolve(entry) is not None, f"_toc.yml lists {entry!r} (part {caption!r}), which does not exist"
    for part in toc.get("parts") or []:
        assert part.get("chapters"), f"part {part.get('caption')!r} has no chapters: it breaks the build"


def test_every_chapter_notebook_is_in_the_toc():
    listed = {_resolve(e) for _, e in _toc_files()}
    missing = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS if p not in listed]
    assert not missing, f"not in _toc.yml (so not built): {missing}; see chapters/README.md"


def test_toc_parts_follow_book_order():
    order = ["Foundations", "The landscape", "Beyond lazy training", "Dynamics",
             "Networks", "Comparisons", "Performance", "Outlook", "Appendix"]
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    captions = [p.get("caption") for p in toc.get("parts") or []]
    assert all(c in order for c in captions), f"unknown part in {captions}; parts are {order}"
    assert captions == sorted(captions, key=order.index), f"parts out of order: {captions}"


# ---------------------------------------------------------------------- config

def test_config_settings():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    ex = cfg["execute"]
    assert ex["execute_notebooks"] == "force" and ex["raise_on_error"] is True
    assert ex["timeout"] >= 60
    exts = set(cfg["parse"]["myst_enable_extensions"])
    assert {"dollarmath", "amsmath", "colon_fence"} <= exts
    lb = cfg["launch_buttons"]
    assert lb["binderhub_url"] and lb["colab_url"] and lb["thebe"] is True
    assert "sphinx_proof" in cfg["sphinx"]["extra_extensions"]
    assert cfg["bibtex_bibfiles"] == ["references.bib"]
    mathjax = cfg["sphinx"]["config"]["mathjax_path"]
    assert "://" not in mathjax, "MathJax must be served locally (offline book)"


def test_repository_url_is_written_only_in_config():
    """The URL lives in _config.yml; other files may only mention it in prose."""
    url, _ = repository_setting()
    allowed = {"_config.yml", "README.md"}
    offenders = []
    for p in _repository_files():
        rel = p.relative_to(ROOT)
        if (rel.as_posix() in allowed or p.suffix in {".png", ".npz", ".npy", ".pyc"}
                or p.stat().st_size > 2**21):
            continue
        if p.suffix == ".ipynb":
            # only the generated install cell may name it (checked above)
            cells = [c for c in _load(p)["cells"] if c["cell_type"] == "code"][1:]
            text = "\n".join(_source(c) for c in cells)
        else:
            try:
                text = p.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
        if url in text and p.resolve() != Path(__file__).resolve():
            offenders.append(rel.as_posix())
    assert not offenders, f"{offenders} hard-code {url}; derive it from _config.yml instead"


def test_cited_keys_exist_in_bibliography():
    bib = (ROOT / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", bib))
    pages = [p for _, e in _toc_files() if (p := _resolve(e)) is not None]
    missing = {}
    for p in pages:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".ipynb":
            text = "\n".join(_source(c) for c in _load(p)["cells"] if c["cell_type"] == "markdown")
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            for key in (k.strip() for k in group.split(",")):
                if key not in keys:
                    missing.setdefault(p.name, []).append(key)
    assert not missing, f"citation keys not in references.bib: {missing}"


# ------------------------------------------------------------------ --write

def write_install_cells() -> list[Path]:
    """Make the first code cell of every chapter the generated install cell."""
    url, branch = repository_setting()
    source = install_cell_source(url, branch)
    changed = []
    for path in chapter_notebooks():
        nb = _load(path)
        cell = _first_code_cell(nb)
        is_install = cell is not None and "%pip install" in _source(cell) and "tdcore" in _source(cell)
        if not is_install:
            cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                    "source": "", "id": "install-tdcore"}
            pos = 1 if nb["cells"] and nb["cells"][0]["cell_type"] == "markdown" else 0
            nb["cells"].insert(pos, cell)
        tags = list(cell.setdefault("metadata", {}).get("tags", []))
        tags += [t for t in INSTALL_TAGS if t not in tags]
        if _source(cell) != source or cell["metadata"].get("tags") != tags or not is_install:
            cell["source"] = source.splitlines(keepends=True)  # nbformat's on-disk layout
            cell["metadata"]["tags"] = tags
            path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                            encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        for p in write_install_cells():
            print(f"rewrote install cell: {p.relative_to(ROOT)}")
        sys.exit(0)
    print(__doc__)
    sys.exit(2)
