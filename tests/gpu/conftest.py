"""Run the CuPy-marked tests on real CuPy where a GPU is usable, else on the emulator.

``tests/gpu/fake_cupy`` (a strict CPU emulation of CuPy, see its docstring) is
installed as ``cupy`` for the duration of each test in this directory when real
CuPy cannot use a GPU, or always when ``TDCORE_FAKE_CUPY=1``; afterwards the
previous ``cupy`` (or none) is restored and tdcore's backend detection is
re-run, so the rest of the test session never sees the emulator.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import fake_cupy  # noqa: E402

from tdcore import _backend  # noqa: E402


def _real_cupy_usable():
    if os.environ.get("TDCORE_FAKE_CUPY") == "1":
        return False
    _backend._probe_cupy.cache_clear()
    return _backend._probe_cupy()[0]


REAL_CUPY = _real_cupy_usable()


@pytest.fixture(autouse=True)
def cupy_backend():
    """The ``cupy`` module these tests run on (``fake_cupy`` unless a real GPU is usable)."""
    if REAL_CUPY:
        import cupy

        yield cupy
        return
    fake_cupy.install()
    _backend._probe_cupy.cache_clear()
    fake_cupy.reset_stats()
    try:
        yield fake_cupy
    finally:
        fake_cupy.uninstall()
        _backend._probe_cupy.cache_clear()


@pytest.fixture
def emulated(cupy_backend):
    """The emulator itself; tests that count syncs / launches skip on a real GPU."""
    if cupy_backend is not fake_cupy:
        pytest.skip("counts syncs and launches with the CuPy emulator (real CuPy is in use)")
    return fake_cupy
