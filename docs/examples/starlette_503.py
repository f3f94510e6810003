from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

import qbreaker
from qbreaker.integrations.fastapi import require
from qbreaker.integrations.starlette import install

payments = qbreaker.CircuitBreaker(3, 30.0, 1, name="payments")
app = FastAPI()
install(app)    # a CircuitOpenError escaping a route: 503 with Retry-After

@app.get("/checkout")
def checkout(breaker=Depends(require(payments))):   # fails fast when open
    return {"paid": True}

@app.get("/ready")
def ready():    # never consults a dependency's breaker
    return {"ready": True}

for _ in range(3):
    payments.record_failure()    # the payment service failed three times

client = TestClient(app)
response = client.get("/checkout")
print(response.status_code, response.headers["Retry-After"])   # 503 30
print(client.get("/ready").status_code)                        # 200
