import http.server
import threading

import requests
from urllib3.util.retry import Retry

import qbreaker
from qbreaker.integrations.requests import BreakerAdapter

# A stand-in backend on 127.0.0.1 that answers every request with a 503.
class Down(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(503)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Down)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}/price"

group = qbreaker.BreakerGroup(max_failures=2, reset_timeout=30.0)
# urllib3 retries inside the adapter: the breaker sees each request once,
# after its retries (here a RetryError once they are used up).
retry = Retry(total=2, status_forcelist=[503], backoff_factor=0)
with requests.Session() as session:
    session.mount("http://", BreakerAdapter(group=group, max_retries=retry))
    for attempt in range(4):
        try:
            session.get(url, timeout=5)
        except requests.RequestException as exc:  # the rejection is one too
            print(attempt, type(exc).__name__)  # RetryError twice, then CircuitOpen
print(group[f"http://127.0.0.1:{server.server_port}"].state)  # open
server.shutdown()
