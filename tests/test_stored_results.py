"""Every stored result says where it came from, and the ones the book shows match today's engine.

A stored result (``results/*.json``) carries a ``provenance`` record: commit, date,
command, tdcore version, machine (CPU, BLAS kernel and threads, GPU) and an
engine fingerprint (a hash of the source of the modules that computed it, see
:mod:`tdcore._provenance`).  Every file must have been computed by today's engine
(the files the book shows must also exist): when the code of one of its modules
changes, this test fails and names the command that regenerates it.
"""

import json
from pathlib import Path

import pytest

from tdcore._provenance import check_engine

RESULTS = Path(__file__).resolve().parents[1] / "results"
FILES = sorted(RESULTS.glob("*.json"))

#: Stored results that chapters display (the full benchmark suite, the full convergence run, the mutants).
SHOWN = ["convergence_full.json", "mutants.json"] + [f"bench_{n}.json" for n in
                                                      ("step", "dense", "scale", "batch", "gpu", "baselines", "build")]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_stored_result_has_provenance(path):
    prov = json.loads(path.read_text()).get("provenance")
    assert prov, f"{path.name} has no provenance record; regenerate it"
    for key in ("commit", "date", "command", "tdcore_version", "machine", "engine"):
        assert key in prov, f"{path.name}: provenance lacks {key!r}"
    assert prov["commit"], f"{path.name} names no commit"
    assert prov["machine"].get("cpu") and prov["machine"].get("cores"), path.name
    assert prov["engine"]["fingerprint"].startswith("sha256:") and prov["engine"]["modules"], path.name


@pytest.mark.parametrize("name", SHOWN)
def test_results_the_book_shows_exist(name):
    assert (RESULTS / name).is_file(), f"the book shows {name}, which is missing"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_stored_results_match_todays_engine(path):
    check_engine(json.loads(path.read_text()), name=f"results/{path.name}")
