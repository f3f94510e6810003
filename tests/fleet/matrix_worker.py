"""A worker of the Redis fault matrix: e2e_worker.py with two settings more.

``python matrix_worker.py HOST_ID REDIS_URL NAMESPACE BACKEND_PORT``, as
e2e_worker.py, and from the environment:

- PASSWORD_ENV: a file holding the Redis password (empty: none), read by a
  redis-py credential provider on every new connection. ``connect()``'s
  ``password_file=`` is read once, at ``connect()``; a provider is the
  documented way to rotate a secret under running agents.
- MAX_FAILURES_ENV: the breaker's max_failures in place of e2e_worker's (a
  rolling policy change).
"""

from __future__ import annotations

import functools
import os
import sys

if __name__ == "__main__":
    # First, so that e2e_worker's SIGTERM handler is set before anything slow
    # is imported: a worker stopped while it starts still prints its summary.
    import e2e_worker

from redis.credentials import CredentialProvider

from qbreaker import fleet

PASSWORD_ENV = "QBREAKER_MATRIX_PASSWORD_FILE"
MAX_FAILURES_ENV = "QBREAKER_MATRIX_MAX_FAILURES"


class FileCredentials(CredentialProvider):
    """The password in ``path`` at each new connection (none if empty)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get_credentials(self) -> tuple[str, ...]:
        with open(self.path, encoding="utf-8") as f:
            password = f.read().strip()
        return (password,) if password else ()


def main() -> int:
    path = os.environ.get(PASSWORD_ENV)
    if path:
        provider = FileCredentials(path)
        fleet.connect = functools.partial(fleet.connect, credential_provider=provider)  # type: ignore[assignment]
    if MAX_FAILURES_ENV in os.environ:
        e2e_worker.MAX_FAILURES = int(os.environ[MAX_FAILURES_ENV])
    return e2e_worker.main()


if __name__ == "__main__":
    sys.exit(main())
