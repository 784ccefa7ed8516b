"""Where a stored number came from: commit, command, machine, engine fingerprint.

Every result file that tdcore's scripts and benchmarks write carries a
``"provenance"`` record made by :func:`provenance`:

* ``commit`` (and ``dirty``): the git commit of the checkout tdcore was imported
  from (None outside a checkout, e.g. an installed wheel);
* ``date`` (UTC), ``command`` (the command line), ``tdcore_version``;
* ``machine``: CPU, cores, memory, Python/NumPy/SciPy versions, the BLAS library
  with its kernel and thread count (threadpoolctl), the GPU if one is used;
* ``engine``: the list of modules that computed the result and a hash of their
  code, comments and docstrings left out (:func:`engine_fingerprint`).  A later change to any of them changes the
  fingerprint, which is how a stored result is known to be stale
  (:func:`check_engine`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = ["provenance", "engine_fingerprint", "check_engine", "machine_info", "git_commit", "CORE_ENGINE"]

#: The modules behind every Algorithm 1 result (the default engine of a fingerprint).
CORE_ENGINE = ("tdcore._backend", "tdcore._tensor", "tdcore._gram", "tdcore._objective", "tdcore._algorithm1",
               "tdcore._algorithm1.api", "tdcore._algorithm1.params", "tdcore._algorithm1.run",
               "tdcore._algorithm1.checkpoint", "tdcore._validate", "tdcore._util")


def _module_file(name):
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"engine module {name!r} not found")
    return Path(spec.origin)


def engine_fingerprint(modules=CORE_ENGINE):
    """A hash of the code of ``modules`` (names such as ``"tdcore._algorithm1.run"``).

    The hash covers each module's tokens without its comments and docstrings
    (:func:`_code_tokens`): documentation edits keep stored results current, any
    change of the code makes them stale.

    Parameters
    ----------
    modules : sequence of str
        Module names; their order does not matter.

    Returns
    -------
    str
        ``"sha256:"`` followed by 16 hex digits.

    Examples
    --------
    >>> engine_fingerprint(["tdcore._tensor"]).startswith("sha256:")
    True
    """
    if isinstance(modules, str) or not modules:
        raise ValueError(f"modules must be a non-empty sequence of module names, got {modules!r}")
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        h.update(name.encode() + b"\0" + _code_tokens(_module_file(name)) + b"\0")
    return "sha256:" + h.hexdigest()[:16]


def _code_tokens(path):
    """The module's code as a token stream without comments, docstrings and layout.

    Editing a docstring, a comment or blank lines leaves the fingerprint unchanged;
    any change to the code (a name, a constant, an operator) changes it.  A string
    token standing alone as a statement (a docstring) is dropped.
    """
    import io
    import tokenize

    skip = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING}
    toks = [t for t in tokenize.tokenize(io.BytesIO(path.read_bytes()).readline) if t.type not in skip]
    out, prev = [], tokenize.NEWLINE
    for k, t in enumerate(toks):
        nxt = toks[k + 1].type if k + 1 < len(toks) else tokenize.ENDMARKER
        if (t.type == tokenize.STRING and prev in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
                and nxt in (tokenize.NEWLINE, tokenize.ENDMARKER)):
            continue
        out.append(f"{t.type}:{t.string}")
        prev = t.type
    return "\n".join(out).encode()


def git_commit(path=None):
    """``(commit, dirty)`` of the git checkout holding ``path`` (tdcore's own by default), or ``(None, None)``."""
    root = Path(path) if path is not None else Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _blas():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    out = []
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            out.append({k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads")})
    return out


def machine_info(*, backend=None):
    """This machine: CPU, cores, memory, versions, BLAS kernel and threads, GPU (when ``backend`` is CuPy).

    Returns
    -------
    dict
        JSON-serialisable.
    """
    import numpy as np
    import scipy

    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem = None
    info = {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": mem, "platform": platform.platform(),
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "blas": _blas(),
        "env_threads": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                    "OPENBLAS_CORETYPE") if k in os.environ},
        "gpu": None,
    }
    if backend is not None and getattr(backend, "name", backend) == "cupy":
        from ._backend import backend_info

        info["gpu"] = backend_info()["cupy"].get("device")
    return info


def provenance(*, modules=CORE_ENGINE, command=None, script=None, backend=None):
    """The provenance record of a result computed now.

    Parameters
    ----------
    modules : sequence of str
        The modules that computed the result (see :func:`engine_fingerprint`).
    command : str, optional
        The command line; ``sys.argv`` by default.
    script : str, optional
        The script or command that regenerates the result (named by :func:`check_engine`).
    backend : Backend or str, optional
        Records the GPU when it is CuPy.

    Returns
    -------
    dict
    """
    from . import __version__

    commit, dirty = git_commit()
    return {
        "commit": commit,
        "dirty": dirty,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join(shlex.quote(a) for a in sys.argv),
        "script": script,
        "tdcore_version": __version__,
        "machine": machine_info(backend=backend),
        "engine": {"modules": sorted(set(modules)), "fingerprint": engine_fingerprint(modules)},
    }


def check_engine(payload, *, name="result"):
    """Raise when a stored result was computed by an engine other than today's.

    Parameters
    ----------
    payload : dict
        A stored result with a ``"provenance"`` record.
    name : str
        How to call it in the message (its file name).

    Raises
    ------
    ValueError
        No provenance, or a fingerprint that differs from today's source of the
        same modules; the message names the script that regenerates the result.
    """
    prov = payload.get("provenance") if isinstance(payload, dict) else None
    if not prov or "engine" not in prov:
        raise ValueError(f"{name} has no provenance record; regenerate it")
    stored = prov["engine"]["fingerprint"]
    now = engine_fingerprint(prov["engine"]["modules"])
    if stored != now:
        raise ValueError(f"{name} was computed by engine {stored} (modules {prov['engine']['modules']}), "
                         f"today's is {now}: regenerate it with `{prov.get('script') or prov.get('command')}`")
