import qbreaker.compat.pybreaker as pybreaker   # was: import pybreaker

class LogListener(pybreaker.CircuitBreakerListener):
    def state_change(self, cb, old_state, new_state):
        print(f"{cb.name}: {old_state.name} -> {new_state.name}")

db_breaker = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, name="db",
                                      listeners=[LogListener()])

@db_breaker
def update_customer(customer):
    raise ConnectionError("database down")

for attempt in range(3):
    try:
        update_customer("ada")
    except pybreaker.CircuitBreakerError as exc:   # the trip, then rejections
        print(attempt, exc, f"(retry after {exc.retry_after:.0f} s)")
    except ConnectionError as exc:
        print(attempt, "failed:", exc)
print(db_breaker.current_state, db_breaker.fail_counter)   # open 2
