import qbreaker

payments = qbreaker.CircuitBreaker(5, 30.0, 2, shared="payments")
# Any process of this user on this host that opens "payments" shares it:
# one trips it, all of them reject from their next call, and at most
# half_open_max probes are in flight host-wide.
other_worker = qbreaker.CircuitBreaker(5, 30.0, 2, shared="payments")
for _ in range(5):
    payments.record_failure()
print(other_worker.state)                  # open
qbreaker.shared.unlink("payments")         # remove the segment (tests, cleanup)
