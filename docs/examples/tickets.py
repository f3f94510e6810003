import qbreaker

breaker = qbreaker.CircuitBreaker(1, 60.0, 1)
slow = breaker.acquire()           # a non-zero int, or 0 when rejected
breaker.record_failure()           # meanwhile the breaker trips
breaker.release(slow, True)        # stale ticket: counted, changes nothing
print(breaker.state)               # open
print(breaker.acquire())           # 0: rejected
