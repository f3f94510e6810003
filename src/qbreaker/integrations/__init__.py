"""Breakers for the client libraries a service calls its dependencies with.

Each submodule wraps one library and imports it only when used; each is an
optional extra (``pip install "qbreaker[httpx]"``; ``qbreaker[integrations]``
installs them all), and ``import qbreaker`` imports none of them.

- ``qbreaker.integrations.httpx``: ``BreakerTransport``, ``AsyncBreakerTransport``
- ``qbreaker.integrations.requests``: ``BreakerAdapter``
- ``qbreaker.integrations.aiohttp``: ``BreakerMiddleware`` (aiohttp >= 3.12)

They share one set of rules (``qbreaker.integrations._common``): a breaker
per authority from a ``BreakerGroup``, tickets rather than ``record_*``, the
statuses that count as failures, a rejection that is also the library's own
base error, and ``Retry-After``. See docs/integrations.md.
"""
