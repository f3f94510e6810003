"""How the fleet reaches Redis: URL forms, TLS, Sentinel, credentials.

The URL forms (``check_url`` validates them, ``connect_redis`` builds a
client from them):

- ``redis://[user[:password]@]host[:port][/db]``
- ``rediss://...`` the same over TLS. The server's certificate is always
  verified, against ``ssl_ca_certs=PATH`` (else the system's CAs), and its
  name checked against the host (``ssl_check_hostname=false`` turns that one
  check off); ``ssl_certfile=PATH&ssl_keyfile=PATH`` present a client
  certificate (Redis ``tls-auth-clients yes``).
- ``unix://[user[:password]@]/path/to/redis.sock[?db=N][&password=...]``
- ``redis+sentinel://[user[:password]@]host:port[,host:port...]/service[/db]``:
  the current master of ``service``, asked of the Sentinels listed (redis-py's
  ``Sentinel``), again after every failover. The user and password are the
  data nodes'; Sentinels without authentication are assumed.
- ``redis+cluster://[user[:password]@]host:port[,host:port...]``: a Redis
  Cluster (redis-py's ``RedisCluster``), found from any of the nodes listed.
  Every key of a namespace has one hash tag, so every script runs on the one
  node that holds its slot.

Any other query parameter is refused (a misspelt TLS option must not turn
into a silent default). A password may also come from ``password=`` (e.g.
read from a ``password_file``) or a redis-py ``credential_provider``, but
from one place only. Every client has the fleet's short timeouts and no
client-library retries: the agent backs off on its own. A password never
appears in a repr or in a message of this module (``redacted_url``).

redis-py is imported only when a client is made, so ``qbreaker.fleet`` can
check URLs without it.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis
    from redis.cluster import RedisCluster

__all__ = (
    "AGENT_NAME_PREFIX",
    "DEFAULT_TIMEOUT",
    "SCHEMES",
    "agent_client_name",
    "check_url",
    "connect_redis",
    "parse_agent_client_name",
    "redacted_url",
)

DEFAULT_TIMEOUT = 0.25
SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")
_SENTINEL = "redis+sentinel://"
_CLUSTER = "redis+cluster://"
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_QUERY_OPTIONS = {
    "redis://": ("db",),
    "rediss://": ("db", *_TLS_OPTIONS),
    # redis-py's own unix form carries the password in the query.
    "unix://": ("db", "password"),
    _SENTINEL: (),
    _CLUSTER: (),
}
_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:password|sentinel_password)=)[^&#]*")
_HIDDEN = r"\1***"
#: Every connection of a host's agent is named (``CLIENT SETNAME``)
#: ``qbreaker-agent:<namespace>:<host id>:<pid>``, so ``CLIENT LIST`` tells
#: whose it is: at most one agent per host, by these names.
AGENT_NAME_PREFIX = "qbreaker-agent:"
# Redis refuses a connection name with a byte outside "!".."~": a host id is
# percent-encoded, "%" and the rest of printable ASCII kept (one host id, one
# name; ":" is kept too, the pid is after the last one).
_NAME_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")
_BOOLEANS = {
    "true": True,
    "yes": True,
    "1": True,
    "false": False,
    "no": False,
    "0": False,
}


def redacted_url(url: object) -> str:
    """``url`` with its password, in the address or in a ``password=`` query
    parameter (redis-py reads both), replaced by ``***``."""
    if not isinstance(url, str):
        return f"<not a str: {type(url).__name__}>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        # Not a URL at all: it may be a bare password, so say nothing of it.
        return "<not a URL>"
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    if "@" in netloc:
        credentials, _, where = netloc.rpartition("@")
        if ":" in credentials:
            netloc = f"{credentials.partition(':')[0]}:***@{where}"
    return f"{scheme}://{netloc}{_SECRET_QUERY.sub(_HIDDEN, tail)}"


def agent_client_name(namespace: str, host_id: str, pid: int) -> str:
    """The connection name of ``host_id``'s agent in process ``pid``."""
    host = urllib.parse.quote(host_id, safe=_NAME_SAFE)
    return f"{AGENT_NAME_PREFIX}{namespace}:{host}:{pid}"


def parse_agent_client_name(name: str) -> tuple[str, str, int] | None:
    """(namespace, host id, pid) of an agent's connection name, or None
    for any other name. The namespace has no ":" (nor spaces or braces)."""
    if not name.startswith(AGENT_NAME_PREFIX):
        return None
    namespace, colon, rest = name[len(AGENT_NAME_PREFIX) :].partition(":")
    host, colon2, pid = rest.rpartition(":")
    if not (colon and colon2 and namespace and host and pid.isdigit()):
        return None
    return namespace, urllib.parse.unquote(host), int(pid)


def _scheme(url: str) -> str:
    for scheme in SCHEMES:
        if url.startswith(scheme):
            return scheme
    accepted = ", ".join(SCHEMES)
    raise ValueError(
        f"url must start with one of {accepted}; got {redacted_url(url)!r}"
    )


def check_url(url: object) -> str:
    """Validate ``url`` (one of the forms above) without connecting; returns
    it. Raises TypeError/ValueError naming what is wrong, password hidden."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {redacted_url(url)}")
    _parse(url)
    return url


def _parse(url: str) -> tuple[str, dict[str, Any]]:
    """The scheme and the connection options that the URL's query sets."""
    scheme = _scheme(url)
    parts = urllib.parse.urlsplit(url)
    allowed = _QUERY_OPTIONS[scheme]
    options: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key not in allowed:
            accepted = ", ".join(allowed) or "none"
            raise ValueError(
                f"url query parameter {key!r} is not accepted in a {scheme} URL "
                f"(accepted: {accepted}); got {redacted_url(url)!r}"
            )
        if key == "ssl_check_hostname":
            if value.lower() not in _BOOLEANS:
                raise ValueError(
                    f"url query parameter ssl_check_hostname must be true or "
                    f"false, got {value!r}"
                )
            options[key] = _BOOLEANS[value.lower()]
        elif key == "db":
            if not value.isdigit():
                raise ValueError(
                    f"url query parameter db must be an int, got {value!r}"
                )
            options[key] = int(value)
        else:
            if not value:
                raise ValueError(f"url query parameter {key} must be a path, got ''")
            options[key] = value
    if scheme in (_SENTINEL, _CLUSTER):
        _node_list(url, scheme)
    elif scheme != "unix://":
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(
                f"url must have a numeric port, got {redacted_url(url)!r}"
            ) from None
        if not parts.hostname:
            raise ValueError(f"url must name a host, got {redacted_url(url)!r}")
    elif not parts.path:
        raise ValueError(f"url must name a socket path, got {redacted_url(url)!r}")
    return scheme, options


def _node_list(
    url: str, scheme: str
) -> tuple[list[tuple[str, int]], str, str | None, str | None]:
    """The host:port list, the path, the user and the password of a
    ``redis+sentinel://`` or ``redis+cluster://`` URL."""
    rest = url[len(scheme) :].partition("?")[0]
    netloc, _, path = rest.partition("/")
    user = password = None
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
        user, colon, secret = credentials.partition(":")
        user = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if colon else None
    hosts = []
    for address in netloc.split(","):
        host, colon, port = address.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"a {scheme} URL lists host:port pairs separated by commas, "
                f"got {address!r} in {redacted_url(url)!r}"
            )
        hosts.append((host.strip("[]"), int(port)))
    if scheme == _CLUSTER and path:
        raise ValueError(
            f"a {scheme} URL has no path (a Cluster has only db 0), got "
            f"{redacted_url(url)!r}"
        )
    if scheme == _SENTINEL:
        service, _, db = path.partition("/")
        if not service or (db and not db.isdigit()) or "/" in db:
            raise ValueError(
                f"a {scheme} URL ends in /service or /service/db, got "
                f"{redacted_url(url)!r}"
            )
    return hosts, path, user, password


def connect_redis(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    password: str | None = None,
    credential_provider: Any = None,
    client_name: str | None = None,
    **options: Any,
) -> redis.Redis | RedisCluster:
    """A client for ``url`` (one of the forms above) with ``timeout`` (s) on
    connect and on every reply, and no retries. ``password`` (e.g. from a
    password file) or ``credential_provider`` (a redis-py
    ``CredentialProvider``) replace a password in the URL, which must then
    have none. ``client_name``: every connection it opens, to the data
    nodes and to Sentinels alike, is named so (``CLIENT SETNAME``; printable
    ASCII without spaces). ``options`` go to redis-py as they are. No
    connection is made here."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not 0 < timeout <= 60:
        raise ValueError(f"timeout must be in (0, 60] seconds, got {timeout!r}")
    if password is not None and not isinstance(password, str):
        raise TypeError(f"password must be a str, got {type(password).__name__}")
    if password is not None and credential_provider is not None:
        raise ValueError("give password or credential_provider, not both")
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {redacted_url(url)}")
    if client_name is not None:
        _check_client_name(client_name)
    scheme, settings = _parse(url)
    in_url = _url_password(url, scheme) is not None or "password" in settings
    if in_url and (password is not None or credential_provider is not None):
        raise ValueError(
            f"the url already has a password: give it in one place only, "
            f"got {redacted_url(url)!r} and a "
            f"{'password' if password is not None else 'credential_provider'}"
        )
    if scheme == "rediss://":
        # Explicit, whatever redis-py's defaults become.
        settings["ssl_cert_reqs"] = "required"
        settings.setdefault("ssl_check_hostname", True)
    settings.update(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 0),
    )
    if password is not None:
        settings["password"] = password
    if credential_provider is not None:
        settings["credential_provider"] = credential_provider
    if client_name is not None:
        settings["client_name"] = client_name
    settings.update(options)
    if scheme in (_SENTINEL, _CLUSTER):
        hosts, path, user, url_password = _node_list(url, scheme)
        if url_password is not None:
            settings["password"] = url_password
        if user is not None:
            settings["username"] = user
    if scheme == _CLUSTER:
        from redis.cluster import ClusterNode, RedisCluster

        settings.pop("retry_on_timeout")
        nodes = [ClusterNode(host, port) for host, port in hosts]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=nodes, **settings)
    if scheme == _SENTINEL:
        from redis.sentinel import Sentinel

        service, _, db = path.partition("/")
        sentinel_settings = {
            key: settings[key]
            for key in ("socket_timeout", "socket_connect_timeout", "retry")
        }
        if client_name is not None:
            sentinel_settings["client_name"] = client_name
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_settings, **settings)
        client: redis.Redis = sentinel.master_for(service, db=int(db or 0))
        return client
    query = urllib.parse.urlsplit(url).query
    base = url[: len(url) - len(query) - 1] if query else url
    try:
        return redis.Redis.from_url(base, **settings)
    except ValueError as exc:
        # redis-py's message may quote the URL, password and all.
        raise ValueError(
            f"url must be a redis://, rediss:// or unix:// URL, "
            f"got {redacted_url(url)!r} ({type(exc).__name__})"
        ) from None


def _check_client_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"client_name must be a str, got {type(name).__name__}")
    if not name or any(not "!" <= c <= "~" for c in name):
        raise ValueError(
            f"client_name must be printable ASCII without spaces (Redis "
            f"refuses others), got {name!r}"
        )


def _url_password(url: str, scheme: str) -> str | None:
    if scheme in (_SENTINEL, _CLUSTER):
        return _node_list(url, scheme)[3]
    return urllib.parse.urlsplit(url).password


def describe_server(client: Any) -> str:
    """Where ``client`` connects, for reprs and logs: never a credential."""
    nodes = getattr(client, "startup_nodes", None)
    if isinstance(nodes, dict):
        return f"cluster via {', '.join(sorted(nodes))}"
    pool = getattr(client, "connection_pool", None)
    service = getattr(pool, "service_name", None)
    if service is not None:
        return f"sentinel service {service}"
    kwargs = getattr(pool, "connection_kwargs", {})
    return str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")
