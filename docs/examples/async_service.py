import asyncio

import qbreaker

async def main():
    # A stand-in microservice that answers "ok" to one line.
    async def serve(reader, writer):
        await reader.readline()
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    inventory = qbreaker.CircuitBreaker(
        5, 5.0, 2,
        # A 5xx-style answer is a failure even though nothing was raised.
        is_failure_result=lambda answer: answer.startswith(b"error"),
    )

    @inventory
    async def stock_level(sku):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(sku.encode() + b"\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), timeout=1)
        writer.close()
        return answer

    print(await asyncio.gather(*(stock_level(f"sku-{i}") for i in range(3))))
    print(inventory.metrics().successes)     # 3
    server.close()
    await server.wait_closed()

asyncio.run(main())
