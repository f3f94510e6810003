"""``CircuitRedisStorage``: pybreaker's Redis storage, same keys, same values.

The keys are ``[namespace:]pybreaker:state`` (``closed``, ``open`` or
``half-open``), ``...:fail_counter``, ``...:success_counter`` and
``...:opened_at`` (Unix time in whole seconds, UTC), written as pybreaker
writes them, so pybreaker and this module can share one Redis during a
migration.

What pybreaker does as separate commands (count a failure, then read the
count, then open) is done here as one WATCH/MULTI transaction per outcome
(``_qb_failure``, ``_qb_success``, ``_qb_try_half_open``), which also
checks that the state is still the one that admitted the call. With
``cluster_mode=True`` the keys may live on different nodes, where no
transaction can span them: the breaker then uses pybreaker's own sequence of
commands, exact among the threads of a process but not across processes.

Redis errors are logged and the storage answers as pybreaker's does: the
fallback state, counters of 0, nothing written.
"""

from __future__ import annotations

import calendar
import datetime
import importlib
import logging
import time
from typing import Any, Callable

from .base import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    UTC,
    CircuitBreakerStorage,
    check_opened_at,
)
from .engine import CHANGED, COUNTED, STALE


def _redis_exceptions() -> Any:
    try:
        return importlib.import_module("redis.exceptions")
    except ImportError:
        raise ImportError(
            "CircuitRedisStorage can only be used if the required dependencies "
            "exist (pip install redis)"
        ) from None


def _text(value: Any) -> str:
    # pybreaker needs decode_responses=False; both work here.
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _epoch(moment: datetime.datetime) -> int:
    # utctimetuple: an aware datetime of another zone is stored as its
    # instant (pybreaker's timetuple stores its wall-clock time as if UTC);
    # a naive one is UTC in both.
    return int(calendar.timegm(moment.utctimetuple()))


class CircuitRedisStorage(CircuitBreakerStorage):
    """The breaker's state in Redis, shared by every process that uses the
    same keys (one ``namespace`` per breaker).

    ``redis_object`` is a redis-py client (``redis.Redis``/``StrictRedis``).
    When Redis cannot be reached, the breaker behaves as if it were in
    ``fallback_circuit_state``.
    """

    BASE_NAMESPACE = "pybreaker"

    logger = logging.getLogger("qbreaker.compat.pybreaker")

    def __init__(
        self,
        state: str,
        redis_object: Any,
        namespace: str | None = None,
        fallback_circuit_state: str = STATE_CLOSED,
        cluster_mode: bool = False,
    ) -> None:
        exceptions = _redis_exceptions()
        super().__init__("redis")
        self._redis_error: type[Exception] = exceptions.RedisError
        self._watch_error: type[Exception] = exceptions.WatchError
        self._redis = redis_object
        self._namespace_name = namespace
        self._fallback_circuit_state = fallback_circuit_state
        self._initial_state = str(state)
        self._cluster_mode = cluster_mode
        # Whether StorageEngine may use the transactions below.
        self._qb_atomic = not cluster_mode
        self._initialize_redis_state(self._initial_state)

    def _initialize_redis_state(self, state: str) -> None:
        self._redis.setnx(self._namespace("fail_counter"), 0)
        self._redis.setnx(self._namespace("success_counter"), 0)
        self._redis.setnx(self._namespace("state"), state)

    def _namespace(self, key: str) -> str:
        parts = [self.BASE_NAMESPACE, key]
        if self._namespace_name:
            parts.insert(0, self._namespace_name)
        return ":".join(parts)

    # -- pybreaker's storage API ---------------------------------------------------

    @property
    def state(self) -> str:
        """The state in Redis; re-initialized with the fallback state when the
        key is missing, the fallback state when Redis fails."""
        try:
            value = self._redis.get(self._namespace("state"))
        except self._redis_error:
            self.logger.exception("RedisError: falling back to default circuit state")
            return self._fallback_circuit_state
        if value is not None:
            return _text(value)
        try:
            self._initialize_redis_state(self._fallback_circuit_state)
        except self._redis_error:
            self.logger.exception("RedisError")
        return self._fallback_circuit_state

    @state.setter
    def state(self, state: str) -> None:
        self._write(lambda: self._redis.set(self._namespace("state"), str(state)))

    def increment_counter(self) -> None:
        self._write(lambda: self._redis.incr(self._namespace("fail_counter")))

    def reset_counter(self) -> None:
        self._write(lambda: self._redis.set(self._namespace("fail_counter"), 0))

    def increment_success_counter(self) -> None:
        self._write(lambda: self._redis.incr(self._namespace("success_counter")))

    def reset_success_counter(self) -> None:
        self._write(lambda: self._redis.set(self._namespace("success_counter"), 0))

    @property
    def counter(self) -> int:
        return self._read_int("fail_counter", "RedisError: Assuming no errors")

    @property
    def success_counter(self) -> int:
        return self._read_int("success_counter", "RedisError: Assuming no successes")

    @property
    def opened_at(self) -> datetime.datetime | None:
        try:
            value = self._redis.get(self._namespace("opened_at"))
        except self._redis_error:
            self.logger.exception("RedisError")
            return None
        if not value:
            return None
        return datetime.datetime(*time.gmtime(int(value))[:6], tzinfo=UTC)

    @opened_at.setter
    def opened_at(self, now: datetime.datetime) -> None:
        """Set when the breaker opened (naive: UTC), unless a later time is
        stored already (another process opened it after us)."""
        key = self._namespace("opened_at")
        stamp = _epoch(check_opened_at(now, none_ok=False))
        try:
            if self._cluster_mode:
                current = self._redis.get(key)
                if not current or stamp > int(current):
                    self._redis.set(key, stamp)
                return

            def set_if_greater(pipe: Any) -> None:
                current = pipe.get(key)
                pipe.multi()
                if not current or stamp > int(current):
                    pipe.set(key, stamp)

            self._redis.transaction(set_if_greater, key)
        except self._redis_error:
            self.logger.exception("RedisError")

    def _write(self, command: Callable[[], object]) -> None:
        try:
            command()
        except self._redis_error:
            self.logger.exception("RedisError")

    def _read_int(self, key: str, message: str) -> int:
        try:
            value = self._redis.get(self._namespace(key))
        except self._redis_error:
            self.logger.exception(message)
            return 0
        return int(value) if value else 0

    # -- atomic operations for StorageEngine ----------------------------------------

    def _keys(self) -> tuple[str, str, str, str]:
        return (
            self._namespace("state"),
            self._namespace("fail_counter"),
            self._namespace("success_counter"),
            self._namespace("opened_at"),
        )

    def _state_in(self, pipe: Any, key: str) -> str:
        value = pipe.get(key)
        return self._fallback_circuit_state if value is None else _text(value)

    def _transaction(self, body: Callable[[Any], str]) -> str:
        try:
            result: str = self._redis.transaction(
                body, *self._keys(), value_from_callable=True
            )
        except self._redis_error:
            self.logger.exception("RedisError")
            return STALE
        return result

    def _qb_failure(self, expected: str, fail_max: Any, now: datetime.datetime) -> str:
        """Count a failure of a call admitted in ``expected``; open the breaker
        when it reaches ``fail_max`` (closed) or fails a trial (half-open).
        STALE when the state is no longer ``expected``."""
        state_key, fail_key, success_key, opened_key = self._keys()
        stamp = _epoch(now)

        def body(pipe: Any) -> str:
            if self._state_in(pipe, state_key) != expected:
                return STALE
            failures = int(pipe.get(fail_key) or 0) + 1
            opened = pipe.get(opened_key)
            pipe.multi()
            pipe.set(fail_key, failures)
            if expected == STATE_CLOSED and failures < fail_max:
                return COUNTED
            pipe.set(state_key, STATE_OPEN)
            pipe.set(success_key, 0)
            if not opened or stamp > int(opened):
                pipe.set(opened_key, stamp)
            return CHANGED

        return self._transaction(body)

    def _qb_success(self, expected: str, success_threshold: Any) -> str:
        """Count a success of a call admitted in ``expected``; close a
        half-open breaker at ``success_threshold``."""
        state_key, fail_key, success_key, _ = self._keys()

        def body(pipe: Any) -> str:
            if self._state_in(pipe, state_key) != expected:
                return STALE
            successes = int(pipe.get(success_key) or 0) + 1
            pipe.multi()
            pipe.set(fail_key, 0)
            if expected != STATE_HALF_OPEN:
                return COUNTED
            if successes < success_threshold:
                pipe.set(success_key, successes)
                return COUNTED
            pipe.set(state_key, STATE_CLOSED)
            pipe.set(success_key, 0)
            return CHANGED

        return self._transaction(body)

    def _qb_try_half_open(self, now: datetime.datetime, reset_timeout: float) -> str:
        """Half-open an open breaker whose timeout has elapsed; the state
        after (another process may have reopened it meanwhile)."""
        state_key, _, success_key, opened_key = self._keys()
        moment = now.timestamp()

        def body(pipe: Any) -> str:
            state = self._state_in(pipe, state_key)
            if state != STATE_OPEN:
                return state
            opened = pipe.get(opened_key)
            if opened and moment < int(opened) + reset_timeout:
                return STATE_OPEN
            pipe.multi()
            pipe.set(state_key, STATE_HALF_OPEN)
            pipe.set(success_key, 0)
            return STATE_HALF_OPEN

        try:
            result: str = self._redis.transaction(
                body, *self._keys(), value_from_callable=True
            )
        except self._redis_error:
            self.logger.exception("RedisError: falling back to default circuit state")
            return self._fallback_circuit_state
        return result
