#!/usr/bin/env python3
"""Record how long each stage of ``make test`` takes (used by the Makefile).

    python tests/timings.py start                  # new run: resets _build/timings.json
    python tests/timings.py run NAME -- CMD ...    # runs CMD, records its wall time and exit code
    python tests/timings.py finish                 # total, summary table, history line

``_build/timings.json`` holds the latest run; every finished run is appended as
one JSON line to ``_build/timings-history.jsonl``.  Not collected by pytest.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
LATEST = BUILD / "timings.json"
HISTORY = BUILD / "timings-history.jsonl"


def _load() -> dict:
    try:
        return json.loads(LATEST.read_text())
    except (OSError, ValueError):
        return _new()


def _save(data: dict) -> None:
    BUILD.mkdir(exist_ok=True)
    tmp = LATEST.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(LATEST)


def _new() -> dict:
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True)
    return {
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git.stdout.strip() or None,
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                 "ci": bool(os.environ.get("CI"))},
        "stages": {},
    }


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd = argv[0]
    if cmd == "start":
        _save(_new())
        return 0
    if cmd == "run":
        if len(argv) < 4 or argv[2] != "--":
            print("usage: timings.py run NAME -- CMD ...", file=sys.stderr)
            return 2
        name, command = argv[1], argv[3:]
        t0 = time.perf_counter()
        rc = subprocess.call(command)
        seconds = round(time.perf_counter() - t0, 2)
        data = _load()
        data["stages"][name] = {"seconds": seconds, "ok": rc == 0}
        _save(data)
        print(f"[timings] {name}: {seconds:.1f} s{'' if rc == 0 else f' (failed, exit {rc})'}", flush=True)
        return rc
    if cmd == "finish":
        data = _load()
        data["total_seconds"] = round(sum(s["seconds"] for s in data["stages"].values()), 2)
        _save(data)
        with HISTORY.open("a") as fh:
            fh.write(json.dumps(data) + "\n")
        print("stage timings (s):")
        for name, s in data["stages"].items():
            print(f"  {name:<14} {s['seconds']:8.1f}  {'ok' if s['ok'] else 'FAILED'}")
        print(f"  {'total':<14} {data['total_seconds']:8.1f}   -> {LATEST.relative_to(ROOT)}")
        return 0
    print(f"unknown command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
