"""Real redis-server processes of the connection and topology tests.

Each test starts what it needs on 127.0.0.1 (TLS, a unix socket, Sentinels,
Clusters) in its own directory and stops it at the end; certificates are
made with the ``openssl`` command. Everything here is bounded by timeouts.

- ``redis_process``: one redis-server for the length of a ``with``;
  ``ServerProcess``: one that a test kills and starts again (without
  persistence it comes back empty; a Cluster node keeps its nodes file, so
  its node id and slots).
- ``redis_cluster``: masters, each with its replicas, every slot assigned
  (``redis-cli --cluster create``).
- ``sentinel_group``: a master, a replica and three Sentinels; the replica
  may replicate through a ``FaultProxy``, so that a test can cut its link
  and make the next failover lose the writes since.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..redis_server import free_port

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


class ServerProcess:
    """A redis-server with ``args`` (after a config file, if given), no
    persistence, logging to ``workdir/name.log``; ``kill()`` and ``start()``
    again at will (it comes back empty)."""

    def __init__(
        self, workdir: Path, name: str, *args: str, config: str | None = None
    ) -> None:
        self.command = [redis_exe()]
        if config is not None:
            path = workdir / f"{name}.conf"
            path.write_text(config)
            self.command.append(str(path))
        self.command += [
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(workdir),
            "--logfile", str(workdir / f"{name}.log"), *args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )

    def poll(self) -> int | None:
        """The exit status, or None while it runs."""
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def redis_process(
    workdir: Path, name: str, *args: str, config: str | None = None
) -> Iterator[ServerProcess]:
    """A ``ServerProcess`` for the length of the ``with``; killed at the end."""
    server = ServerProcess(workdir, name, *args, config=config)
    try:
        yield server
    finally:
        server.kill()


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


# -- Redis Cluster ---------------------------------------------------------------------


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000, so at most 55535) is free."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a cluster node")


def node_client(port: int, timeout: float = 1.0) -> Any:
    """A plain client of one node (no cluster routing), for the test's checks."""
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout)


@dataclass
class Cluster:
    """A running Cluster: its nodes' processes by port."""

    nodes: dict[int, ServerProcess]
    workdir: Path

    @property
    def ports(self) -> list[int]:
        return list(self.nodes)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.nodes)

    def master_of(self, key: str) -> int:
        """The port of the master that holds ``key``'s slot, as a node that
        answers says."""
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for port in self.nodes:
            try:
                with node_client(port) as node:
                    slots = node.cluster("slots")
            except Exception:  # noqa: BLE001, S112 - a node that is down
                continue
            for start, end, master, *_ in slots:
                if start <= slot <= end:
                    return int(master[1])
        raise AssertionError(f"no node holds slot {slot}")

    def replica_of(self, master: int) -> int:
        """The port of a replica of ``master``."""
        with node_client(master) as node:
            info = node.info("replication")
        replicas = [v for k, v in info.items() if k.startswith("slave")]
        if not replicas:
            raise AssertionError(f"node {master} has no replica: {info}")
        return int(replicas[0]["port"])

    def role(self, port: int) -> str:
        with node_client(port) as node:
            return str(node.info("replication")["role"])

    def state_ok(self, port: int) -> bool:
        with node_client(port) as node:
            return bool(node.cluster("info")["cluster_state"] == "ok")

    def restart_empty(self, port: int) -> None:
        """Kill one node and start it again: no data, the same nodes file
        (node id, slots, config epoch), so it rejoins as itself."""
        self.nodes[port].kill()
        self.nodes[port].start()


@contextmanager
def redis_cluster(workdir: Path, masters: int, replicas: int = 0) -> Iterator[Cluster]:
    """``masters`` masters with ``replicas`` replicas each, every slot
    assigned, every node seeing the cluster ok and every replica linked."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is needed to create a cluster (scripts/ci_redis.sh)")
    ports = [cluster_port() for _ in range(masters * (1 + replicas))]
    with ExitStack() as stack:
        cluster = Cluster({}, workdir)
        for port in ports:
            cluster.nodes[port] = stack.enter_context(
                redis_process(
                    workdir,
                    f"node-{port}",
                    "--port",
                    str(port),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "2000",
                )
            )
        for port in ports:
            with node_client(port) as node:
                wait_for(
                    node.ping, f"node {port} ({log_tail(workdir, f'node-{port}')})"
                )
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for port in ports:
            wait_for(
                lambda p=port: cluster.state_ok(p), f"node {port} to see the cluster ok"
            )
            wait_for(lambda p=port: _linked(p), f"node {port}'s replication link")
        yield cluster


def _linked(port: int) -> bool:
    """A master, or a replica whose link to its master is up."""
    with node_client(port) as node:
        info = node.info("replication")
    return info["role"] == "master" or info.get("master_link_status") == "up"


# -- Sentinel --------------------------------------------------------------------------


@dataclass
class SentinelGroup:
    """A master, a replica and three Sentinels watching ``service``; with
    ``link`` (a FaultProxy), the replica replicates through it."""

    service: str
    master: int
    replica: int
    sentinels: list[int]
    workdir: Path
    processes: dict[str, ServerProcess]
    link: Any = None

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def master_port(self) -> int:
        """The master's port, as the first Sentinel says."""
        with node_client(self.sentinels[0]) as sentinel:
            _, port = sentinel.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
            )
        return int(port)

    def replica_ready(self, port: int) -> bool:
        """The Sentinel on ``port`` knows the replica as one it may promote:
        linked, and with a fresh INFO (else a failover finds NOGOODSLAVE)."""
        with node_client(port) as sentinel:
            replicas = sentinel.execute_command("SENTINEL", "REPLICAS", self.service)
        for raw in replicas:
            fields = dict(zip(raw[::2], raw[1::2])) if isinstance(raw, list) else raw
            text = {_text(k): _text(v) for k, v in fields.items()}
            if (
                text.get("master-link-status") == "ok"
                and text.get("flags") == "slave"
                and int(text.get("info-refresh", 10**9)) < 2000
            ):
                return True
        return False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def sentinel_config(
    port: int,
    service: str,
    master: int,
    failover_timeout_ms: int = 4000,
    down_after_ms: int = 1000,
) -> str:
    """A Sentinel that sees ``master`` down after ``down_after_ms`` (two of
    three agree)."""
    return (
        f"port {port}\n"
        f"sentinel monitor {service} 127.0.0.1 {master} 2\n"
        f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
        f"sentinel failover-timeout {service} {failover_timeout_ms}\n"
    )


@contextmanager
def sentinel_group(
    workdir: Path,
    service: str,
    *,
    link: Callable[[int], Any] | None = None,
    failover_timeout_ms: int = 4000,
    down_after_ms: int = 1000,
) -> Iterator[SentinelGroup]:
    """A master, a replica (through ``link(master_port)``, a proxy, if
    given) and three Sentinels, every Sentinel ready to promote the replica.

    With a proxy, a Sentinel re-points the replica at the master itself once
    ``failover_timeout_ms`` has passed since it saw it replicate elsewhere
    (``+fix-slave-config``): keep that longer than the test. A master that
    does not answer the Sentinels for ``down_after_ms`` (a loaded machine's
    stall too) is failed over."""
    master, replica = free_port(), free_port()
    with ExitStack() as stack:
        processes = {
            "master": stack.enter_context(
                redis_process(workdir, "master", "--port", str(master))
            )
        }
        proxy = None if link is None else link(master)
        upstream = master if proxy is None else proxy.port
        processes["replica"] = stack.enter_context(
            redis_process(
                workdir,
                "replica",
                "--port",
                str(replica),
                "--replicaof",
                "127.0.0.1",
                str(upstream),
            )
        )
        with node_client(replica) as client:
            wait_for(
                lambda: client.info("replication").get("master_link_status") == "up",
                f"the replica's link ({log_tail(workdir, 'replica')})",
            )
        group = SentinelGroup(service, master, replica, [], workdir, processes, proxy)
        for i in range(3):
            port = free_port()
            group.sentinels.append(port)
            processes[f"sentinel-{i}"] = stack.enter_context(
                redis_process(
                    workdir,
                    f"sentinel-{i}",
                    "--sentinel",
                    config=sentinel_config(
                        port, service, master, failover_timeout_ms, down_after_ms
                    ),
                )
            )
        for i, port in enumerate(group.sentinels):
            wait_for(
                lambda p=port: group.replica_ready(p),
                f"sentinel {i} to see the replica "
                f"({log_tail(workdir, f'sentinel-{i}')})",
            )
        yield group
