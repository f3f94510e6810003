import stamina
import tenacity

import qbreaker
from qbreaker.integrations.tenacity import wait_retry_after

inventory = qbreaker.CircuitBreaker(2, 0.2, 1, name="inventory")
reached = []

def fetch_stock():
    reached.append(1)
    if len(reached) in (1, 2, 4, 5):   # two short outages
        raise ConnectionError("inventory is restarting")
    return 7

# tenacity: each attempt passes the breaker; a rejection is waited out with
# its retry_after, but only while that ends within the 5 s budget.
retryable = (ConnectionError, qbreaker.CircuitOpenError)

@tenacity.retry(
    retry=tenacity.retry_if_exception_type(retryable),
    wait=wait_retry_after(tenacity.wait_random_exponential(multiplier=0.05, max=1)),
    stop=tenacity.stop_before_delay(5),
    reraise=True,
)
@inventory
def stock():
    return fetch_stock()

print(stock(), len(reached))    # 7 3: rejections never reach the backend

# stamina: the hook waits out a short rejection, gives up on a long one
# (a forced-open breaker's retry_after is infinite).
def retry_on(exc):
    if isinstance(exc, qbreaker.CircuitOpenError):
        return exc.retry_after if exc.retry_after <= 1.0 else False
    return isinstance(exc, ConnectionError)

@stamina.retry(on=retry_on, attempts=10, timeout=5.0, wait_jitter=0.1)
@inventory
def stock_again():
    return fetch_stock()

print(stock_again(), len(reached))    # 7 6
