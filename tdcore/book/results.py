"""Where the book finds its stored results, in a checkout and in an installed tdcore alike.

The stored runs the book shows (full-size sweeps, the benchmark suite) live in
the repository's ``results/`` folder.  The wheel ships the same files as the
package data ``tdcore.book.data`` (``pyproject.toml`` maps that package onto
``results/``), so an installed tdcore (Colab, a clean virtual environment)
reads exactly what a checkout reads.  The folder is, in this order:

1. the ``directory=`` argument, or ``$TDCORE_RESULTS`` when it is set;
2. the package data ``tdcore.book.data`` of an installed wheel;
3. the ``results/`` folder of the checkout this tdcore is imported from (an
   editable install, which does not map nested package data).
"""

from __future__ import annotations

import json
import os
import importlib.util
from pathlib import Path

__all__ = ["results_dir", "result_path", "load_result", "provenance_line"]

ENV_VAR = "TDCORE_RESULTS"


def results_dir(directory=None):
    """The folder stored results are read from.

    Parameters
    ----------
    directory : str or Path, optional
        Explicit folder; else ``$TDCORE_RESULTS``; else the package data
        ``tdcore.book.data`` of an installed wheel; else the checkout's ``results/``.

    Returns
    -------
    pathlib.Path
    """
    source = "the directory argument"
    if directory is None and os.environ.get(ENV_VAR):
        directory, source = os.environ[ENV_VAR], f"${ENV_VAR}"
    if directory is not None:
        p = Path(directory)
        if not p.is_dir():
            raise FileNotFoundError(f"results directory {str(p)!r} (from {source}) does not exist")
        return p
    # a namespace package (no __init__.py): its folder is its one search location
    spec = importlib.util.find_spec("tdcore.book.data")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    checkout = Path(__file__).resolve().parents[2] / "results"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("no stored results: tdcore.book.data is not installed and "
                            f"{str(checkout)!r} does not exist; set {ENV_VAR} to the folder that holds them")


def result_path(name, directory=None):
    """Path of the stored result ``name`` (e.g. ``"convergence_full.json"``); it must exist."""
    base = results_dir(directory)
    p = base / name
    if not p.is_file():
        raise FileNotFoundError(f"stored result {name!r} not found in {str(base)!r}; set {ENV_VAR} to the "
                                "folder that holds it, or regenerate it (see the README)")
    return p


def load_result(name, directory=None):
    """The stored JSON result ``name``, parsed.

    Raises
    ------
    FileNotFoundError
        Naming the folder searched when the file is absent.
    ValueError
        When the file is not valid JSON (naming the file).
    """
    p = result_path(name, directory)
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"stored result {str(p)!r} is not valid JSON: {e}") from None


def provenance_line(payload, *, what="stored result"):
    """One line saying where a stored result came from (commit, date, command, machine, engine).

    Parameters
    ----------
    payload : dict
        A stored result with a ``"provenance"`` record (``tdcore._provenance``).
    what : str
        How to call it at the start of the line.

    Returns
    -------
    str

    Examples
    --------
    >>> provenance_line({"provenance": {"commit": "0123456789abcdef", "date": "2026-12-01T20:00:00+00:00",
    ...                  "command": "python -m tdcore sweep convergence", "script": None,
    ...                  "machine": {"cpu": "CPU X", "cores": 2, "blas": [{"internal_api": "openblas",
    ...                  "architecture": "Haswell", "num_threads": 1}]},
    ...                  "engine": {"fingerprint": "sha256:00ff"}}})
    'stored result: commit 0123456, 2026-12-01, `python -m tdcore sweep convergence`, CPU X (2 cores, openblas Haswell, 1 BLAS thread), engine sha256:00ff'
    """
    prov = payload.get("provenance") if isinstance(payload, dict) else None
    if not prov:
        return f"{what}: no provenance record"
    m = prov.get("machine") or {}
    blas = (m.get("blas") or [{}])[0] or {}
    threads = blas.get("num_threads")
    bl = " ".join(str(x) for x in (blas.get("internal_api"), blas.get("architecture")) if x)
    machine = f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores" + (f", {bl}" if bl else "") + (
        f", {threads} BLAS thread{'s' if threads != 1 else ''}" if threads else "") + ")"
    commit = (prov.get("commit") or "no commit")[:7] + (" + local changes" if prov.get("dirty") else "")
    cmd = prov.get("script") or prov.get("command") or "?"
    return (f"{what}: commit {commit}, {str(prov.get('date', '?'))[:10]}, `{cmd}`, {machine}, "
            f"engine {prov.get('engine', {}).get('fingerprint', '?')}")
