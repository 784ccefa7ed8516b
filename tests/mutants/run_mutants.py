"""Mutation testing of the book: run the quick chapter checks with tdcore broken on purpose.

For every mutant of ``tdcore_mutants.MUTANTS`` and every chapter, the chapter is
executed in quick mode (``TDCORE_QUICK=1``) by nbclient in a kernel whose
``IPYTHONDIR`` holds a start-up file that applies the mutant before the first
cell.  A chapter *catches* a mutant when one of its cells raises (a failed
assert, or any other error); a mutant that no chapter catches *survives*, which
means a claim is missing.  The unmutated chapters are run first: a chapter that
fails without a mutant makes the run invalid.

Writes ``results/mutants.json`` (with a provenance record) and the book page
``mutants.md``.  Usage::

    python tests/mutants/run_mutants.py [--mutants a,b] [--chapters x,y] [--jobs 1] [--first]

``--first`` stops a mutant at the first chapter that catches it (faster; the
report then lists only that chapter).  Exit status 1 when a mutant survives or a
baseline chapter fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import tdcore_mutants  # noqa: E402

#: Chapters in book order (the own_tensor chapter is run when present).
CHAPTERS = ["setup", "lazy_training", "algorithm1", "proof_pictures", "convergence", "saddle", "bad_minima",
            "deflation", "own_tensor", "two_layer", "comparisons", "performance"]

#: The modules the mutants patch (their fingerprint goes into the provenance record).
MODULES = ["tdcore._algorithm1.run", "tdcore._algorithm1.params", "tdcore._algorithm1.api", "tdcore._lazy",
           "tdcore._objective", "tdcore._baselines", "tdcore._dynamics", "tdcore.book.bad_minima",
           "tdcore.book.deflation"]

STARTUP = """\
import os as _os, sys as _sys
_sys.path.insert(0, {here!r})
import tdcore_mutants as _tm
_tm.apply(_os.environ["TDCORE_MUTANT"])
del _os, _sys, _tm
"""


def available_chapters():
    return [c for c in CHAPTERS if (ROOT / "chapters" / f"{c}.ipynb").exists()]


def run_chapter(chapter, mutant=None, *, timeout=600):
    """Execute ``chapters/<chapter>.ipynb`` in quick mode, optionally under ``mutant``.

    Returns a dict: ``status`` ("pass", "caught", "not-applied"), ``error`` (the
    exception type and the last line of its message), ``cell`` (index of the
    failing cell) and ``seconds``.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(ROOT / "chapters" / f"{chapter}.ipynb", as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "skip-execution" in tags or "nbval-skip" in tags:
            cell.source = ""
    with tempfile.TemporaryDirectory(prefix="tdcore-mutant-") as tmp:
        mark = Path(tmp) / "applied"
        env = dict(os.environ, TDCORE_QUICK="1", MPLBACKEND="Agg")
        for k in ("TDCORE_MUTANT", "TDCORE_MUTANT_MARK"):
            env.pop(k, None)
        if mutant is not None:
            startup = Path(tmp) / "ipython" / "profile_default" / "startup"
            startup.mkdir(parents=True)
            (startup / "00-tdcore-mutant.py").write_text(STARTUP.format(here=str(HERE)))
            env.update(IPYTHONDIR=str(Path(tmp) / "ipython"), TDCORE_MUTANT=mutant, TDCORE_MUTANT_MARK=str(mark))
        t0 = time.perf_counter()
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT / "chapters")}})
        out = {"status": "pass", "error": None, "line": None, "cell": None}
        try:
            client.execute(env=env)  # the kernel's environment: IPYTHONDIR selects the start-up file
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            out["status"] = "caught"
            text = _strip_ansi(str(exc))
            ename = getattr(exc, "ename", None) or type(exc).__name__
            evalue = (getattr(exc, "evalue", None) or "").strip()
            # the failing line of the cell, marked "---->" in the traceback
            marked = [ln.split("--->", 1)[1].lstrip("> ").strip() for ln in text.splitlines() if "--->" in ln]
            where = marked[-1] if marked else ""
            if where[:1].isdigit():
                where = where.split(None, 1)[1] if " " in where else ""
            out["error"] = f"{ename}{': ' + evalue[:200] if evalue else ''}"
            out["line"] = where[:200]
            for i, cell in enumerate(nb.cells):
                if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                    out["cell"] = i
                    break
        out["seconds"] = round(time.perf_counter() - t0, 1)
        if mutant is not None and not mark.exists():
            out["status"] = "not-applied"
    return out


def _strip_ansi(s):
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", s)


def _mutant_row(mutant, chapters, first):
    row = {}
    for c in chapters:
        row[c] = run_chapter(c, mutant)
        r = row[c]
        print(f"{mutant:24s} {c:15s} {r['status']:11s} {r['seconds']:6.1f} s {r['error'] or ''} {r['line'] or ''}",
              flush=True)
        if r["status"] == "not-applied" or (first and r["status"] == "caught"):
            break
    return row


def run_all(mutants, chapters, *, jobs=2, first=False):
    """Baseline, then every (mutant, chapter) pair; returns the report dict (without provenance)."""
    baseline = {}
    with cf.ProcessPoolExecutor(jobs) as ex:
        for c, res in zip(chapters, ex.map(run_chapter, chapters)):
            baseline[c] = res
            print(f"baseline {c:15s} {res['status']:7s} {res['seconds']:6.1f} s {res['error'] or ''}", flush=True)
    ok_chapters = [c for c in chapters if baseline[c]["status"] == "pass"]
    with cf.ProcessPoolExecutor(jobs) as ex:
        rows = list(ex.map(_mutant_row, mutants, [ok_chapters] * len(mutants), [first] * len(mutants)))
    results = dict(zip(mutants, rows))
    report = {"chapters": chapters, "baseline": baseline, "first_only": first, "mutants": {}}
    for mutant in mutants:
        row = results[mutant]
        caught_by = [c for c, r in row.items() if r["status"] == "caught"]
        applied = all(r["status"] != "not-applied" for r in row.values())
        report["mutants"][mutant] = {
            "description": tdcore_mutants.MUTANTS[mutant][0], "applied": applied, "caught_by": caught_by,
            "survived": applied and not caught_by, "runs": row}
    report["all_caught"] = all(m["applied"] and m["caught_by"] for m in report["mutants"].values())
    report["baseline_ok"] = len(ok_chapters) == len(chapters)
    return report


def _md_cell(text):
    """Text safe inside a Markdown table cell (a bare ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def _cell_text(run):
    """The failing line (or the error's name) for the report, safe inside a Markdown table cell."""
    text = run.get("line") or (run.get("error") or "").split(":")[0]
    return text.replace("|", "\\|").replace("`", "'")


def write_page(report, path):
    """The book's appendix page: one row per mutant, with the chapters that caught it."""
    prov = report["provenance"]
    lines = [
        "# Appendix: mutation testing of the book", "",
        "Every chapter checks its claims with `assert` on the numbers it computes.  To see",
        "whether those checks guard anything, `make mutants` breaks tdcore on purpose, one",
        "plausible bug at a time (a *mutant*, applied in memory by a kernel start-up file;",
        "no source file is edited), and runs every chapter in quick mode against it.  A",
        "chapter *catches* a mutant when one of its cells fails.  A mutant that no chapter",
        "catches would point at a claim the book does not check.", "",
        "| mutant | the bug | caught by (chapter: cell, error) |", "| --- | --- | --- |"]
    for name, m in report["mutants"].items():
        if not m["applied"]:
            caught = "**not applied** (stale mutant)"
        elif not m["caught_by"]:
            caught = "**survived**"
        else:
            caught = "; ".join(
                f"{c} (cell {m['runs'][c]['cell']}: `{_cell_text(m['runs'][c])}`)"
                for c in m["caught_by"])
        lines.append(f"| `{name}` | {_md_cell(m['description'])} | {caught} |")
    n = len(report["mutants"])
    k = sum(bool(m["caught_by"]) for m in report["mutants"].values())
    lines += ["", f"{k} of {n} mutants caught"
              + (" (each run stopped at the first chapter that caught it)." if report["first_only"] else "."),
              "Baseline (no mutant): " + ("every chapter passed." if report["baseline_ok"] else
                                          "**some chapters failed without a mutant; the run is invalid**."), "",
              "## Provenance", "",
              f"Computed by `{prov.get('script')}` on {prov.get('date')} at commit `{prov.get('commit')}`"
              + (" (with uncommitted changes)" if prov.get("dirty") else "")
              + f", tdcore {prov.get('tdcore_version')}; engine fingerprint "
              f"`{prov['engine']['fingerprint']}`.  The numbers are in `results/mutants.json`.", ""]
    Path(path).write_text("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", default=None, help="comma-separated names (default: all)")
    ap.add_argument("--chapters", default=None, help="comma-separated chapter names (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="chapters run at once (1: timing claims need an idle machine)")
    ap.add_argument("--first", action="store_true", help="stop each mutant at its first catching chapter")
    ap.add_argument("--out", default=str(ROOT / "results" / "mutants.json"))
    ap.add_argument("--page", default=str(ROOT / "mutants.md"))
    ap.add_argument("--page-only", action="store_true",
                    help="only rewrite the page from the report already in --out (no runs)")
    args = ap.parse_args(argv)
    if args.page_only:
        report = json.loads(Path(args.out).read_text())
        write_page(report, args.page)
        print(f"wrote {args.page} from {args.out}")
        return 0
    mutants = args.mutants.split(",") if args.mutants else list(tdcore_mutants.MUTANTS)
    unknown = [m for m in mutants if m not in tdcore_mutants.MUTANTS]
    if unknown:
        ap.error(f"unknown mutants: {', '.join(unknown)}; known: {', '.join(tdcore_mutants.MUTANTS)}")
    chapters = args.chapters.split(",") if args.chapters else available_chapters()
    missing = [c for c in chapters if not (ROOT / "chapters" / f"{c}.ipynb").exists()]
    if missing:
        ap.error(f"no such chapters: {', '.join(missing)}")
    from tdcore._provenance import provenance

    report = run_all(mutants, chapters, jobs=args.jobs, first=args.first)
    report["provenance"] = provenance(modules=MODULES, script="make mutants")
    tmp = Path(args.out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, args.out)
    write_page(report, args.page)
    print(f"wrote {args.out} and {args.page}: "
          f"{sum(bool(m['caught_by']) for m in report['mutants'].values())}/{len(mutants)} mutants caught")
    return 0 if report["all_caught"] and report["baseline_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
