"""Fast subset of the book's mutation testing (the full set: ``make mutants``).

Three mutants, each run on the one chapter (quick mode) that catches it, and
checked to fail at the claim that should catch it; plus a check that every
mutant of ``tdcore_mutants.MUTANTS`` still applies to today's sources (a mutant
whose snippet has gone is stale and would otherwise look like a survivor).
Mutants run only in child processes (kernels), never in this one.
"""

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run_mutants  # noqa: E402

FAST = [
    # (mutant, chapter, a snippet of the assert that must catch it)
    # (chapters without timing claims, so that a busy machine cannot fail them first)
    ("lazy_residual_low", "lazy_training", "abs(a - b) < 1e-8"),
    ("theorem2_off", "bad_minima", "row[\"predicted\"]"),
    ("no_boost", "algorithm1", "p.switch_factor"),
]


def test_every_mutant_applies():
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import tdcore_mutants as M\n"
            "for name in M.MUTANTS:\n"
            "    M.apply(name)\n"
            "print(len(M.MUTANTS))\n") % str(HERE)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 10


def test_unknown_mutant_refused():
    import tdcore_mutants

    with pytest.raises(tdcore_mutants.MutantError, match="unknown mutant"):
        tdcore_mutants.apply("no_such_mutant")


@pytest.mark.parametrize("mutant, chapter, snippet", FAST)
def test_fast_mutant_caught(mutant, chapter, snippet):
    res = run_mutants.run_chapter(chapter, mutant)
    assert res["status"] == "caught", res
    assert snippet in (res["line"] or ""), res
