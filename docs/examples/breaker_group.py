import qbreaker

def log_transition(breaker, old, new):
    print(f"{breaker.name}: {old} -> {new}")

services = qbreaker.BreakerGroup(max_failures=2, reset_timeout=15.0,
                                 on_state_change=log_transition,
                                 max_breakers=10_000)

def call_service(name, ok):
    if not services.allow(name):
        return "rejected"
    if ok:
        services.record_success(name)
        return "ok"
    services.record_failure(name)
    return "failed"

print(call_service("billing", False), call_service("billing", False))
print(call_service("billing", True))      # rejected: billing is open
print(call_service("search", True))       # ok: each service has its own breaker
print(sorted(services), services["billing"].state)
