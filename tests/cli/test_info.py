"""``python -m qbreaker info``: what a bug report needs, true of this process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import sysconfig
from typing import Any

import pytest

import qbreaker
from qbreaker._cli import info


def _info(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "QBREAKER_NO_EXTENSIONS"}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "qbreaker", "info", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )


def _json(**env: str) -> dict[str, Any]:
    result = _info("--json", **env)
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


@pytest.fixture(params=[pytest.param("c", marks=pytest.mark.c_extension), "py"])
def core_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The variables that select each core in a child process."""
    if request.param == "c":
        return {"QBREAKER_REQUIRE_EXTENSIONS": "1"}
    return {"QBREAKER_NO_EXTENSIONS": "1", "QBREAKER_REQUIRE_EXTENSIONS": ""}


def test_info_json_describes_this_install(core_env: dict[str, str]) -> None:
    found = _json(**core_env)
    q = found["qbreaker"]
    assert q["version"] == qbreaker.__version__
    assert q["location"] == os.path.dirname(qbreaker.__file__)
    compiled = "QBREAKER_NO_EXTENSIONS" not in core_env
    assert q["implementation"] == ("cython" if compiled else "python")
    if compiled:
        import qbreaker._core_c as core

        assert q["extension"] == core.__file__
        build = q["build"]
        assert build is not None, "no build record beside the compiled core"
        import Cython

        # The suite's Cython is the one the build used, in CI and here.
        assert build["cython"] == Cython.__version__
        assert build["compiler"] and isinstance(build["extra_compile_args"], list)
    py = found["python"]
    assert py["version"] == platform.python_version()
    assert py["executable"] == sys.executable
    assert py["free_threaded"] == bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if py["free_threaded"]:
        assert py["gil_enabled"] is False, "the GIL came on in a plain run"
    else:
        assert py["gil_enabled"] is None
    assert found["platform"]["machine"] == platform.machine()


def test_info_reports_the_shared_memory_directory_and_its_space(
    tmp_path: Any,
) -> None:
    found = _json(QBREAKER_SHM_DIR=str(tmp_path))["shared_memory"]
    assert found["directory"] == str(tmp_path)
    assert found["supported"] is sys.platform.startswith("linux")
    assert isinstance(found["free_bytes"], int) and found["free_bytes"] > 0
    missing = _json(QBREAKER_SHM_DIR=str(tmp_path / "absent"))["shared_memory"]
    assert missing == {
        "directory": str(tmp_path / "absent"),
        "supported": False,
        "free_bytes": None,
    }


def test_info_finds_the_optional_libraries_without_importing_them() -> None:
    code = (
        "import contextlib, io, json, sys\n"
        "from qbreaker._cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    assert main(['info', '--json']) == 0\n"
        "found = json.loads(out.getvalue())['optional']\n"
        "loaded = sorted(n for n in found if n in sys.modules)\n"
        "print(json.dumps({'found': found, 'loaded': loaded}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"] == [], "info imported the libraries it looks for"
    assert set(report["found"]) == set(info.OPTIONAL)
    # The test extra installs these; a library nobody has is not found.
    assert report["found"]["pybreaker"] is True and report["found"]["redis"] is True
    assert info.collect()["optional"].keys() == info.OPTIONAL.keys()


def test_info_text_names_each_part(core_env: dict[str, str]) -> None:
    result = _info(**core_env)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"qbreaker        {qbreaker.__version__} (")
    for label in ("extension", "python", "platform", "shared memory", "importable"):
        assert f"\n{label}" in text, (label, text)
    assert platform.python_version() in text
    if "QBREAKER_NO_EXTENSIONS" not in core_env:
        assert "(cython core)" in text and "built with      Cython " in text


def test_render_says_when_the_gil_is_on_or_the_core_is_not_built() -> None:
    found = info.collect()
    found["python"].update(free_threaded=True, gil_enabled=True)
    found["qbreaker"].update(implementation="python", extension=None, build=None)
    text = info.render(found)
    assert "free-threaded, GIL ON" in text
    assert "extension       none (a pure-Python install)" in text
    assert "built with" not in text
