"""The Colab situation: an installed tdcore, outside the checkout, runs the chapters.

Builds the wheel from this checkout, installs it (no dependencies: they are those
of the test environment) into a temporary folder, and executes the Convergence
and Performance chapters in quick mode from another temporary folder, with that
installed copy first on the path.  The stored results the chapters show must come
from the wheel's package data, not from the checkout.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = ("convergence", "performance")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("installed")
    wheels, site = base / "wheels", base / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # build from a copy of the files git would commit: an in-tree build leaves build/ in the checkout,
    # and a stale build/lib would leak deleted modules into the wheel
    src = base / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, cwd=base, capture_output=True, text=True)
    (wheel,) = wheels.glob("tdcore-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
                   check=True, cwd=base, capture_output=True, text=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TDCORE_RESULTS", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), TDCORE_QUICK="1", MPLBACKEND="Agg")
    return base, site, env


def test_installed_copy_is_the_one_imported(installed):
    base, site, env = installed
    out = subprocess.run([sys.executable, "-c", "import tdcore, tdcore.book.results as r, sys; "
                          "print(tdcore.__file__); print(r.results_dir()); "
                          "print('matplotlib' in sys.modules)"],
                         cwd=base, env=env, check=True, capture_output=True, text=True).stdout.split("\n")
    assert out[0].startswith(str(site)), out
    assert out[1].startswith(str(site)), out  # package data, not the checkout's results/
    assert out[2] == "False"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_from_the_installed_wheel(installed, chapter):
    base, site, env = installed
    nb = json.loads((ROOT / "chapters" / f"{chapter}.ipynb").read_text())
    # the last cell proves which tdcore the kernel used
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                        "source": ["import tdcore\n", f"assert tdcore.__file__.startswith({str(site)!r}), tdcore.__file__"]})
    work = base / chapter
    work.mkdir()
    src = work / f"{chapter}.ipynb"
    src.write_text(json.dumps(nb))
    run = ("import sys, nbformat, nbclient; nb = nbformat.read(sys.argv[1], as_version=4); "
           "nbclient.NotebookClient(nb, timeout=600, kernel_name='python3', "
           "resources={'metadata': {'path': sys.argv[2]}}).execute()")
    proc = subprocess.run([sys.executable, "-c", run, str(src), str(work)],
                          cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
