import asyncio
import http.server
import threading

import aiohttp

import qbreaker
from qbreaker.integrations.aiohttp import BreakerMiddleware

# A stand-in backend on 127.0.0.1 that answers every request with a 503.
class Down(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(503)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Down)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}/price"

group = qbreaker.BreakerGroup(max_failures=3, reset_timeout=30.0)

async def main():
    middlewares = (BreakerMiddleware(group=group),)  # aiohttp 3.12 or later
    async with aiohttp.ClientSession(middlewares=middlewares) as session:
        for attempt in range(5):
            try:
                async with session.get(url) as response:
                    print(attempt, response.status)  # a 503 counts, and is returned
            except aiohttp.ClientError as exc:  # the rejection is a ClientError
                print(attempt, "rejected:", exc)

asyncio.run(main())
print(group[f"http://127.0.0.1:{server.server_port}"].state)  # open
server.shutdown()
