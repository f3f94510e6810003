from concurrent import futures

import grpc

import qbreaker
from qbreaker.integrations.grpc import BreakerInterceptor

# A stand-in backend on 127.0.0.1 that is down for maintenance.
def get(request, context):
    context.abort(grpc.StatusCode.UNAVAILABLE, "maintenance")

server = grpc.server(futures.ThreadPoolExecutor(2))
server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
    "shop.Prices", {"Get": grpc.unary_unary_rpc_method_handler(get)})])
target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
server.start()

outbound = qbreaker.BreakerGroup(max_failures=3, reset_timeout=30.0)
channel = grpc.intercept_channel(
    grpc.insecure_channel(target), BreakerInterceptor(target=target, group=outbound)
)
get_price = channel.unary_unary("/shop.Prices/Get")

for attempt in range(5):
    try:
        get_price(b"sku-1", timeout=2)
    except grpc.RpcError as exc:    # a rejection is one too, UNAVAILABLE
        rejected = isinstance(exc, qbreaker.CircuitOpenError)
        print(attempt, exc.code().name, "rejected" if rejected else "failed")
print(outbound[target].state)        # open: attempts 3 and 4 never left
channel.close()
server.stop(0)
