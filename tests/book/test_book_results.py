"""Tests of tdcore.book.results: where stored results are found."""

import json

import pytest

from tdcore.book import results


def test_checkout_results_found_and_parsed():
    d = results.results_dir()
    assert (d / "bench_step.json").is_file()
    assert isinstance(results.load_result("bench_step.json"), dict)


def test_env_var_and_argument_override(tmp_path, monkeypatch):
    (tmp_path / "x.json").write_text(json.dumps({"a": 1}))
    assert results.load_result("x.json", directory=tmp_path) == {"a": 1}
    monkeypatch.setenv("TDCORE_RESULTS", str(tmp_path))
    assert results.results_dir() == tmp_path
    assert results.load_result("x.json") == {"a": 1}


def test_missing_and_broken_files_name_the_file(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        results.load_result("nope.json", directory=tmp_path)
    monkeypatch.setenv("TDCORE_RESULTS", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"\$TDCORE_RESULTS"):
        results.results_dir()
    monkeypatch.delenv("TDCORE_RESULTS")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        results.load_result("bad.json", directory=tmp_path)
