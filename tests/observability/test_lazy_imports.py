"""The exporters import their libraries only when used."""

from __future__ import annotations

import subprocess
import sys

LIBRARIES = ("prometheus_client", "opentelemetry")


def loaded_after(imports: str, prefixes: tuple[str, ...]) -> str:
    code = (
        f"import sys\n{imports}\n"
        f"print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_exporters_imports_neither_library() -> None:
    imports = (
        "import qbreaker.integrations.prometheus, qbreaker.integrations.opentelemetry\n"
        "import qbreaker._cli.export, qbreaker._cli.watch"
    )
    assert loaded_after(imports, LIBRARIES) == "[]"
