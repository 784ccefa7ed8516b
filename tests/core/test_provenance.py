"""Tests of tdcore._provenance: what a stored result says about its origin."""

import shutil
import sys

import pytest

from tdcore import _provenance as pv


def test_record_names_commit_command_machine_and_engine():
    rec = pv.provenance(command="python x.py --full", script="python x.py --full")
    assert rec["command"] == "python x.py --full"
    assert rec["tdcore_version"]
    m = rec["machine"]
    assert m["cores"] >= 1 and m["numpy"] and m["python"] == ".".join(map(str, sys.version_info[:3]))
    assert rec["engine"]["modules"] == sorted(pv.CORE_ENGINE)
    assert rec["engine"]["fingerprint"] == pv.engine_fingerprint(pv.CORE_ENGINE)
    if shutil.which("git"):
        assert rec["commit"] is None or len(rec["commit"]) == 40


def test_fingerprint_depends_on_the_modules_and_their_source(tmp_path, monkeypatch):
    a = pv.engine_fingerprint(["tdcore._tensor"])
    assert a == pv.engine_fingerprint(("tdcore._tensor",))
    assert a != pv.engine_fingerprint(["tdcore._tensor", "tdcore._objective"])
    # the same module name with another source: another fingerprint
    fake = tmp_path / "tdcore_fake_mod.py"
    fake.write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    f1 = pv.engine_fingerprint(["tdcore_fake_mod"])
    fake.write_text("x = 2\n")
    assert pv.engine_fingerprint(["tdcore_fake_mod"]) != f1
    with pytest.raises(ValueError, match="not found"):
        pv.engine_fingerprint(["tdcore._no_such_module"])
    with pytest.raises(ValueError, match="non-empty sequence"):
        pv.engine_fingerprint("tdcore._tensor")


def test_check_engine_names_the_regenerating_script():
    good = {"provenance": pv.provenance(script="python scripts/x.py")}
    pv.check_engine(good)
    stale = {"provenance": {**good["provenance"],
                            "engine": {"modules": ["tdcore._tensor"], "fingerprint": "sha256:0000000000000000"}}}
    with pytest.raises(ValueError, match="scripts/x.py"):
        pv.check_engine(stale, name="results/x.json")
    with pytest.raises(ValueError, match="no provenance"):
        pv.check_engine({"rows": []}, name="results/y.json")


def test_fingerprint_ignores_docstrings_and_comments_but_not_code(tmp_path, monkeypatch):
    fake = tmp_path / "tdcore_fake_doc.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    fake.write_text('"""Module doc."""\n\n\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n')
    f0 = pv.engine_fingerprint(["tdcore_fake_doc"])
    fake.write_text('"""Another doc."""\n\ndef f(x):\n    """Other doc,\n    two lines."""\n\n    return x + 1  # two\n')
    assert pv.engine_fingerprint(["tdcore_fake_doc"]) == f0
    fake.write_text('"""Module doc."""\n\n\ndef f(x):\n    """Doc."""\n    return x + 2\n')
    assert pv.engine_fingerprint(["tdcore_fake_doc"]) != f0
    fake.write_text('"""Module doc."""\n\n\ndef f(x):\n    """Doc."""\n    return "x + 1"\n')
    assert pv.engine_fingerprint(["tdcore_fake_doc"]) != f0
