"""Fleet-wide breakers: hosts coordinate through a backend (Redis), beside the calls.

This package imports nothing heavy at import time: the protocol is plain
dataclasses, and redis-py is imported only by ``qbreaker.fleet.redis_backend``.
"""
