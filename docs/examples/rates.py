import qbreaker

# The last 20 outcomes; no decision before 10 of them; trip at 50 % failures.
by_rate = qbreaker.CircuitBreaker(None, 30.0, 2,   # max_failures=None: rate only
                                  failure_rate_threshold=0.5, window_size=20)
by_count = qbreaker.CircuitBreaker(5, 30.0, 2)     # the default policy

for i in range(40):                    # a dependency that fails every other call
    for breaker in (by_rate, by_count):
        if breaker.allow():
            breaker.record_failure() if i % 2 else breaker.record_success()
print(by_rate.state, by_count.state)   # open closed

# Slow calls: at least half of the last 10 s of calls took 0.5 s or more.
slow = qbreaker.CircuitBreaker(5, 30.0, 2, window_seconds=10.0,
                               slow_call_rate_threshold=0.5, slow_call_duration=0.5)
ticket = slow.acquire()
slow.release(ticket, True, duration=0.7)   # the two-step form reports a duration
print(slow.metrics().slow_call_rate)       # 1.0 (one call, below minimum_calls)
