"""Starlette's TestClient, imported once for the Starlette and FastAPI tests.

Starlette 1.x prefers httpx2 and warns (``StarletteDeprecationWarning``, a
UserWarning) when its test client falls back to httpx; that fallback is the
test client's concern, not qbreaker's, so this one warning is silenced where
it is raised and the suite still runs under ``-W error``. With httpx2
installed there is none.
"""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("starlette", reason="starlette is in the starlette extra")
try:
    import httpx2  # noqa: F401
except ImportError:
    pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx or httpx2")

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore",
        message=r"Using `httpx` with `starlette\.testclient` is deprecated",
    )
    from starlette.testclient import TestClient

__all__ = ("TestClient",)
