import http.server
import threading

import httpx

import qbreaker
from qbreaker.integrations.httpx import BreakerTransport

# A stand-in backend on 127.0.0.1 that answers every request with a 503.
class Down(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(503)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Down)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}/price"

# A breaker per scheme://host:port, taken from this group.
group = qbreaker.BreakerGroup(max_failures=3, reset_timeout=30.0)
transport = BreakerTransport(httpx.HTTPTransport(), group=group)

with httpx.Client(transport=transport) as client:
    for attempt in range(5):
        try:
            print(attempt, client.get(url).status_code)  # a 503 counts, and is returned
        except httpx.RequestError as exc:  # the rejection is an httpx.RequestError
            print(attempt, "rejected:", exc)
print(group[f"http://127.0.0.1:{server.server_port}"].state)  # open
server.shutdown()
