"""Real redis-server processes of the connection and topology tests.

Each test starts what it needs on 127.0.0.1 (TLS, a unix socket, Sentinels)
in its own directory and stops it at the end; certificates are made with the
``openssl`` command. Everything here is bounded by timeouts.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT = 15.0


def redis_exe() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (scripts/ci_redis.sh installs it)")
    return exe


def wait_for(
    check: Callable[[], Any], what: str, timeout: float = START_TIMEOUT
) -> Any:
    """Poll ``check`` until it returns something true without raising."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - kept for the message
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


@contextmanager
def redis_process(
    workdir: Path, name: str, *args: str, config: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server with ``args`` (after a config file, if given), no
    persistence, logging to ``workdir/name.log``; killed at the end."""
    exe = redis_exe()
    command = [exe]
    if config is not None:
        path = workdir / f"{name}.conf"
        path.write_text(config)
        command.append(str(path))
    command += [
        "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--dir", str(workdir),
        "--logfile", str(workdir / f"{name}.log"), *args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def log_tail(workdir: Path, name: str) -> str:
    log = workdir / f"{name}.log"
    return log.read_text(errors="replace")[-800:] if log.exists() else "no log"


def openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("the openssl command is needed to make test certificates")
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(cwd: Path, name: str) -> None:
    """``name.crt`` and ``name.key``: a self-signed CA."""
    openssl(
        "req", "-x509", "-new", "-nodes", "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
        "-subj", f"/CN={name}",
        # Python 3.13's default context verifies strictly (X509 strict): a
        # CA must say it signs certificates.
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd,
    )  # fmt: skip


def make_cert(cwd: Path, name: str, ca: str, san: str, usage: str) -> None:
    """``name.crt`` and ``name.key`` signed by ``ca``, for ``san``."""
    openssl(
        "req", "-new", "-nodes", "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=cwd,
    )  # fmt: skip
    (cwd / f"{name}.ext").write_text(
        f"subjectAltName={san}\nextendedKeyUsage={usage}\n"
        "authorityKeyIdentifier=keyid\nkeyUsage=critical,digitalSignature\n"
    )
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt",
        "-CAkey", f"{ca}.key", "-CAcreateserial", "-out", f"{name}.crt",
        "-days", "2", "-extfile", f"{name}.ext", cwd=cwd,
    )  # fmt: skip
