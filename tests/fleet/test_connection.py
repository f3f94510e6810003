"""The ways to reach Redis: TLS, a unix socket, ACL users, passwords.

Real redis-server processes on 127.0.0.1 (and a unix socket), certificates
made here by ``openssl``. Every backend made runs the fleet's scripts for
real (a trip, an event, a view), so a form that "connects" but cannot run
the scripts fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qbreaker import fleet
from qbreaker.fleet._protocol import SyncRequest, key_prefix

from ..redis_server import free_port
from .conftest import TEST_TIMEOUT, RedisBackend, connect_redis, redis_backend_module
from .helpers import delta, policy
from .host_helpers import host_dir
from .servers import log_tail, make_ca, make_cert, redis_process, wait_for

redis = pytest.importorskip("redis")
connection = pytest.importorskip("qbreaker.fleet.connection")
acl_rules = redis_backend_module.acl_rules
KEY_NAMES = redis_backend_module.KEY_NAMES

SECRET = "hunter2-s3cret"
__all__ = ("host_dir",)  # a fixture


def exercise(backend: Any) -> None:
    """A trip by one host opens the fleet; the event and the view say so."""
    cursor, _ = backend.events("$", 0)
    pol = policy(quorum=1)
    reply = backend.sync(SyncRequest("h1", 1, (delta("db", pol, tripped=True),)))
    assert reply.states[0].state == "open"
    _, events = backend.events(cursor, 0)
    assert [(s.name, s.state, s.reason) for s in events] == [("db", "open", "quorum")]
    assert [s.state for s in backend.view()] == ["open"]


# -- URL forms, without a server -----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://cache.example:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=no",
        "unix:///run/redis.sock?db=2",
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/1",
        "redis+sentinel://app:pw@[::1]:26379/mymaster",
    ],
)
def test_documented_url_forms_are_accepted(url: str) -> None:
    assert connection.check_url(url) == url
    connect_redis(url).close()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://u:pw@h/0", "url must start with one of"),
        ("rediss://h:1/0?ssl_ca_cert=/x", "'ssl_ca_cert' is not accepted"),
        ("redis://h:1/0?ssl_ca_certs=/x", "not accepted in a redis:// URL"),
        ("rediss://h:1/0?ssl_check_hostname=maybe", "true or false"),
        ("rediss://h:1/0?ssl_certfile=", "must be a path"),
        ("redis://u:pw@h:port/0", "numeric port"),
        ("redis+sentinel://u:pw@h/svc", "host:port pairs"),
        ("redis+sentinel://h:1", "/service or /service/db"),
        ("redis+sentinel://h:1/svc/x", "/service or /service/db"),
        ("unix://", "socket path"),
    ],
)
def test_bad_urls_are_refused_with_the_password_hidden(
    host_dir: str, url: str, match: str
) -> None:
    with pytest.raises(ValueError, match=match) as caught:
        connection.check_url(url)
    assert "pw@" not in str(caught.value)
    with pytest.raises(ValueError, match=match):
        fleet.connect(url, namespace="n", agent="off")


def test_a_password_is_given_in_one_place_only() -> None:
    with pytest.raises(ValueError, match="one place only") as caught:
        connect_redis("redis://u:pw-in-url@h:1/0", password="other")
    assert "pw-in-url" not in str(caught.value)
    with pytest.raises(ValueError, match="not both"):
        connect_redis("redis://h:1/0", password="a", credential_provider=object())


def test_a_unix_urls_query_password_is_used_and_counts_as_in_the_url() -> None:
    client = connect_redis("unix:///run/redis.sock?db=2&password=q-secret")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["path"], kwargs["db"], kwargs["password"]) == (
        "/run/redis.sock", 2, "q-secret",
    )  # fmt: skip
    with pytest.raises(ValueError, match="one place only") as caught:
        connect_redis("unix:///run/redis.sock?password=q-secret", password="other")
    assert "q-secret" not in str(caught.value)


def test_tls_verification_is_always_required() -> None:
    client = connect_redis("rediss://h:1/0?ssl_ca_certs=/ca.pem")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["ssl_check_hostname"] is True
    assert kwargs["ssl_ca_certs"] == "/ca.pem"
    assert kwargs["socket_timeout"] == 0.25


# -- TLS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A redis-server speaking only TLS, requiring client certificates, with a
    certificate for the name ``localhost`` (not for 127.0.0.1)."""
    certs = tmp_path_factory.mktemp("tls")
    make_ca(certs, "ca")
    make_ca(certs, "other-ca")
    make_cert(certs, "server", "ca", "DNS:localhost", "serverAuth")
    make_cert(certs, "client", "ca", "DNS:qb-client", "clientAuth")
    port = free_port()
    with redis_process(
        certs, "tls", "--port", "0", "--tls-port", str(port),
        "--tls-cert-file", str(certs / "server.crt"),
        "--tls-key-file", str(certs / "server.key"),
        "--tls-ca-cert-file", str(certs / "ca.crt"),
        "--tls-auth-clients", "yes",
    ) as proc:  # fmt: skip
        client = redis.Redis(
            host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"),
            ssl_certfile=str(certs / "client.crt"),
            ssl_keyfile=str(certs / "client.key"), ssl_check_hostname=False,
            socket_timeout=1,
        )  # fmt: skip
        try:
            wait_for(client.ping, "the TLS redis-server")
        except AssertionError:
            log = log_tail(certs, "tls")
            built_without = "not supported" in log or "Bad directive" in log
            if proc.poll() is not None and "tls" in log.lower() and built_without:
                pytest.skip(f"this redis-server was built without TLS: {log}")
            raise AssertionError(
                f"the TLS redis-server did not answer: {log}"
            ) from None
        finally:
            client.close()
        yield certs, port


def tls_url(certs: Path, host: str, port: int, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"rediss://{host}:{port}/0?ssl_ca_certs={certs / 'ca.crt'}" + (
        f"&{params}" if params else ""
    )


@pytest.mark.fleet
def test_tls_with_a_ca_a_client_certificate_and_the_hostname_checked(
    tls_server: tuple[Path, int], namespace: str
) -> None:
    certs, port = tls_server
    client_cert = {
        "ssl_certfile": str(certs / "client.crt"),
        "ssl_keyfile": str(certs / "client.key"),
    }
    backend = RedisBackend.from_url(
        tls_url(certs, "localhost", port, **client_cert),
        namespace,
        timeout=TEST_TIMEOUT,
    )
    try:
        exercise(backend)
    finally:
        backend.close()


@pytest.mark.fleet
@pytest.mark.parametrize(
    ("host", "query", "error"),
    [
        # The certificate names localhost, not 127.0.0.1.
        ("127.0.0.1", {}, "match"),
        # A CA that did not sign the server's certificate.
        ("localhost", {"ssl_ca_certs": "other-ca.crt"}, "certificate verify failed"),
        # The server requires a client certificate.
        ("localhost", {"ssl_certfile": "", "ssl_keyfile": ""}, None),
    ],
)
def test_tls_refuses_a_wrong_name_an_unknown_ca_and_no_client_certificate(
    tls_server: tuple[Path, int], namespace: str,
    host: str, query: dict[str, str], error: str | None,
) -> None:  # fmt: skip
    certs, port = tls_server
    files = {
        "ssl_ca_certs": "ca.crt", "ssl_certfile": "client.crt",
        "ssl_keyfile": "client.key",
    }  # fmt: skip
    files.update(query)
    url = f"rediss://{host}:{port}/0?" + "&".join(
        f"{k}={certs / v}" for k, v in files.items() if v
    )
    backend = RedisBackend.from_url(url, namespace, timeout=TEST_TIMEOUT)
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match=error):
            backend.view()
    finally:
        backend.close()
    if host == "127.0.0.1":
        # The same server and files, the name check off: it was only the name.
        unchecked = RedisBackend.from_url(
            url + "&ssl_check_hostname=false", namespace, timeout=TEST_TIMEOUT
        )
        try:
            exercise(unchecked)
        finally:
            unchecked.close()


# -- a unix socket -------------------------------------------------------------------


@pytest.mark.fleet
def test_a_unix_socket(tmp_path: Path, namespace: str) -> None:
    # A short path: a socket's path has about 100 bytes at most.
    sock = Path(f"/tmp/qb-{os.getpid()}-{namespace[-6:]}.sock")
    try:
        with redis_process(
            tmp_path, "unix", "--port", "0", "--unixsocket", str(sock),
            "--unixsocketperm", "700",
        ):  # fmt: skip
            wait_for(sock.exists, f"the unix socket ({log_tail(tmp_path, 'unix')})")
            backend = RedisBackend.from_url(
                f"unix://{sock}?db=3", namespace, timeout=TEST_TIMEOUT
            )
            try:
                wait_for(backend._client.ping, "PING on the unix socket")
                exercise(backend)
                assert repr(backend) == (
                    f"RedisBackend(namespace={namespace!r}, server={str(sock)!r})"
                )
                # The keys went to db 3, the URL's.
                assert backend._client.dbsize() > 0
                plain = connect_redis(f"unix://{sock}", timeout=TEST_TIMEOUT)
                assert plain.dbsize() == 0
                plain.close()
            finally:
                backend.close()
    finally:
        sock.unlink(missing_ok=True)


# -- ACL users and credentials --------------------------------------------------------


@pytest.fixture
def acl_user(redis_client: Any, redis_backend: Any) -> Iterator[Any]:
    """``make(namespace)``: an ACL user with ``acl_rules(namespace)`` and
    the password SECRET + namespace; deleted at the end."""
    made: list[str] = []

    def make(namespace: str) -> str:
        user = f"fleet-{namespace}"
        redis_client.execute_command(
            "ACL", "SETUSER", user, "on", f">{SECRET}{namespace}",
            *acl_rules(namespace),
        )  # fmt: skip
        made.append(namespace)
        return user

    yield make
    for namespace in made:
        redis_client.execute_command("ACL", "DELUSER", f"fleet-{namespace}")
        keys = [key_prefix(namespace) + name for name in KEY_NAMES]
        redis_client.delete(*keys)


def assert_fenced(me: Any, other: Any) -> None:
    """``me``'s credentials reach none of ``other``'s keys."""
    # Reads of the other's keys: each key, by command and by script.
    for key in other.keys[:-1]:
        with pytest.raises(redis.exceptions.NoPermissionError):
            me._client.hgetall(key)
    with pytest.raises(redis.exceptions.NoPermissionError):
        me._client.xrevrange(other.keys[-1], count=1)
    # Writes: the other's scripts run with my credentials.
    intruder = RedisBackend(me._client, other.namespace)
    for call in (
        intruder.view,
        lambda: intruder.force("db", "close", by="intruder"),
        lambda: intruder.sync(SyncRequest("h9", 9, (delta("db", policy(quorum=1)),))),
        lambda: intruder.events("0-0", 0),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    # Commands outside the rule set, even on my own keys.
    with pytest.raises(redis.exceptions.NoPermissionError):
        me._client.delete(me.keys[0])
    with pytest.raises(redis.exceptions.NoPermissionError):
        me._client.keys("*")


@pytest.mark.fleet
def test_two_acl_users_cannot_reach_each_others_namespace(
    acl_user: Any, redis_backend: Any
) -> None:
    port = redis_backend.port
    backends = {}
    for ns in ("acl-a", "acl-b"):
        user = acl_user(ns)
        url = f"redis://{user}:{SECRET}{ns}@127.0.0.1:{port}/0"
        backends[ns] = RedisBackend.from_url(url, ns, timeout=TEST_TIMEOUT)
    a, b = backends["acl-a"], backends["acl-b"]
    try:
        exercise(a)
        exercise(b)
        assert_fenced(a, b)
        assert_fenced(b, a)
        # Nothing of the attempts landed: each still sees its own open trip.
        assert [(s.state, s.generation) for s in a.view()] == [("open", 1)]
        assert [(s.state, s.generation) for s in b.view()] == [("open", 1)]
    finally:
        a.close()
        b.close()


@pytest.mark.fleet
def test_an_acl_user_runs_the_agents_named_connections(
    acl_user: Any, redis_backend: Any, namespace: str
) -> None:
    # The agent names its connections (CLIENT SETNAME): the documented rules
    # must let it, or an ACL-fenced agent never connects.
    from qbreaker.fleet.connection import agent_client_name

    user = acl_user(namespace)
    url = f"redis://{user}:{SECRET}{namespace}@127.0.0.1:{redis_backend.port}/0"
    name = agent_client_name(namespace, "h1", os.getpid())
    backend = RedisBackend(
        connect_redis(url, timeout=TEST_TIMEOUT, client_name=name), namespace
    )
    try:
        exercise(backend)
    finally:
        backend.close()


@pytest.mark.fleet
def test_password_file_and_credential_provider(
    host_dir: str, acl_user: Any, redis_backend: Any, namespace: str, tmp_path: Path
) -> None:
    user = acl_user(namespace)
    password = f"{SECRET}{namespace}"
    secret = tmp_path / "redis-password"
    secret.write_text(password + "\n")
    url = f"redis://{user}@127.0.0.1:{redis_backend.port}/0"
    from_file = fleet.redis_backend_for(url, namespace, password_file=str(secret))
    try:
        exercise(from_file)
        assert password not in repr(from_file)
    finally:
        from_file.close()  # type: ignore[attr-defined]

    credentials = pytest.importorskip("redis.credentials")

    class Rotating(credentials.CredentialProvider):  # type: ignore[misc]
        """Asked on every new connection, as a secrets manager would be."""

        def __init__(self) -> None:
            self.asked = 0

        def get_credentials(self) -> tuple[str, str]:
            self.asked += 1
            return user, password

    provider = Rotating()
    backend = RedisBackend.from_url(
        f"redis://127.0.0.1:{redis_backend.port}/0", namespace,
        timeout=TEST_TIMEOUT, credential_provider=provider,
    )  # fmt: skip
    try:
        backend.force("db", "reset", by="ops")
        assert backend.view()[0].state == "closed"
        assert provider.asked >= 1
    finally:
        backend.close()
    with pytest.raises(ValueError, match="not both"):
        fleet.connect(
            url, namespace=namespace, agent="off",
            password_file=str(secret), credential_provider=provider,
        )  # fmt: skip


@pytest.mark.fleet
def test_a_wrong_password_is_never_shown(
    host_dir: str, acl_user: Any, redis_backend: Any, namespace: str, tmp_path: Path
) -> None:
    user = acl_user(namespace)
    wrong = "wrong-" + SECRET
    url = f"redis://{user}:{wrong}@127.0.0.1:{redis_backend.port}/0"
    backend = RedisBackend.from_url(url, namespace, timeout=TEST_TIMEOUT)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError) as failed:
            backend.view()
        assert wrong not in str(failed.value) and wrong not in repr(failed.value)
        assert wrong not in repr(backend)
    finally:
        backend.close()
    secret = tmp_path / "pw"
    secret.write_text(wrong)
    try:
        fleet.connect(
            f"redis://{user}@127.0.0.1:{redis_backend.port}/0",
            namespace=namespace, agent="off", password_file=str(secret),
        )  # fmt: skip
        assert wrong not in repr(fleet._settings)
        assert wrong not in repr(fleet.status())
    finally:
        fleet.disconnect()
