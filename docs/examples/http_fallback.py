import http.server
import threading
import urllib.request

import qbreaker

# A stand-in backend that fails every request.
class Down(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(503)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Down)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}/price"

cache = {"price": b"41 (cached)"}

def from_cache(url):
    return cache["price"]

prices = qbreaker.CircuitBreaker(3, 30.0, 1, fallback=from_cache)

@prices
def get_price(url):
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.read()

for attempt in range(5):
    try:
        print(attempt, get_price(url))
    except OSError as exc:          # the first three reach the backend and fail
        print(attempt, "backend error:", exc)
print(prices.state, prices.metrics().rejected)   # open 2: two served from cache
server.shutdown()
