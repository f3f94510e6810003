"""``python -m qbreaker info [--json]``: what a bug report needs to say.

qbreaker's version and core, the compiled core's file and how it was built
(the build record setup.py writes beside it), the Python running it (and on
a free-threaded build whether the GIL is on), the platform, the directory of
the shared segments with its free space, and which optional libraries are
importable. The libraries are looked up with ``importlib.util.find_spec``,
never imported: a report must not change the process it describes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

#: Beside the compiled core: written by setup.py's build_ext.
BUILD_RECORD = "_build.json"

#: Each optional library qbreaker works with, by import name, with what
#: needs it.
OPTIONAL = {
    "redis": "qbreaker.compat.pybreaker Redis storage (extra: compat)",
    "tornado": "qbreaker.compat.pybreaker call_async (extra: compat)",
    "pybreaker": "bench peer (extra: bench)",
    "circuitbreaker": "bench peer (extra: bench)",
    "purgatory": "bench peer (extra: bench)",
    "aiobreaker": "bench peer (extra: bench)",
    "matplotlib": "bench --plot (extra: plot)",
    "grpc": "gRPC integration",
    "httpx": "HTTP client integration",
    "aiohttp": "HTTP client integration",
    "requests": "HTTP client integration",
    "starlette": "ASGI integration",
    "fastapi": "ASGI integration",
    "prometheus_client": "metrics integration",
    "opentelemetry": "metrics integration",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    found = collect()
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print(render(found))
    return 0


def collect() -> dict[str, Any]:
    """Everything ``info`` reports, as plain JSON values."""
    import qbreaker

    return {
        "qbreaker": {
            "version": qbreaker.__version__,
            "implementation": qbreaker.IMPLEMENTATION,
            "location": os.path.dirname(qbreaker.__file__),
            **_extension(),
        },
        "python": _python(),
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "libc": " ".join(platform.libc_ver()).strip() or None,
        },
        "shared_memory": _shared_memory(),
        "optional": {
            name: importlib.util.find_spec(name) is not None for name in OPTIONAL
        },
    }


def _extension() -> dict[str, Any]:
    """The compiled core's file and build record; a compiled core installed
    but switched off (QBREAKER_NO_EXTENSIONS) is still named."""
    spec = importlib.util.find_spec("qbreaker._core_c")
    origin = spec.origin if spec is not None else None
    build = None
    if origin is not None:
        record = Path(origin).with_name(BUILD_RECORD)
        try:
            build = json.loads(record.read_text())
        except (OSError, ValueError):  # built before records, or by hand
            build = None
    return {"extension": origin, "build": build}


def _python() -> dict[str, Any]:
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    gil_enabled: bool | None = None
    if free_threaded:
        gil_enabled = bool(sys._is_gil_enabled())  # type: ignore[attr-defined]
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "free_threaded": free_threaded,
        "gil_enabled": gil_enabled,
    }


def _shared_memory() -> dict[str, Any]:
    from qbreaker._impl import segment_format

    where = segment_format.directory()
    free: int | None
    try:
        free = shutil.disk_usage(where).free
    except OSError:  # no such directory (macOS, Windows)
        free = None
    return {
        "directory": where,
        "supported": segment_format.supported(),
        "free_bytes": free,
    }


def render(found: dict[str, Any]) -> str:
    q, py, shm = found["qbreaker"], found["python"], found["shared_memory"]
    rows = [
        ("qbreaker", f"{q['version']} ({q['implementation']} core) in {q['location']}"),
        ("extension", q["extension"] or "none (a pure-Python install)"),
    ]
    if q["extension"] and q["implementation"] != "cython":
        rows.append(("", "installed, not loaded (QBREAKER_NO_EXTENSIONS)"))
    build = q["build"]
    if build:
        compiler, *flags = build["compiler"]
        flags += build["extra_compile_args"]
        command = " ".join([compiler, *flags])
        rows.append(("built with", f"Cython {build['cython']}, {command}"))
        if build["debug_build"] or build["sanitize"]:
            rows.append(("", f"debug build: {build['debug_build']}, "
                             f"sanitizer: {build['sanitize']}"))  # fmt: skip
    elif q["extension"]:
        rows.append(("built with", "unknown (no build record beside the extension)"))
    if py["free_threaded"]:
        gil = "free-threaded, GIL " + ("ON" if py["gil_enabled"] else "off")
    else:
        gil = "GIL build"
    rows.append(("python", f"{py['implementation']} {py['version']} ({gil})"))
    rows.append(("", py["executable"]))
    rows.append(("platform", found["platform"]["platform"]))
    if shm["supported"]:
        free = shm["free_bytes"]
        space = "free space unknown" if free is None else f"{free / 2**20:.1f} MiB free"
        rows.append(("shared memory", f"{shm['directory']}: {space}"))
    else:
        rows.append(("shared memory", f"not supported here ({shm['directory']})"))
    optional = found["optional"]
    present = [name for name, ok in optional.items() if ok]
    absent = [name for name, ok in optional.items() if not ok]
    rows.append(("importable", ", ".join(present) or "none"))
    rows.append(("not importable", ", ".join(absent) or "none"))
    return "\n".join(f"{label:<16}{text}".rstrip() for label, text in rows)
