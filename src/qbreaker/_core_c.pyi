# The compiled core mirrors the twin (tests/core/test_parity.py checks
# names and docstrings), so the twin's annotations type it.
from ._impl.twin import CircuitBreaker as CircuitBreaker
from ._impl.twin import describe_word as describe_word
from ._impl.twin import with_blocks as with_blocks

LAYOUT: dict[str, int]

def u64_load(buffer: object, offset: int) -> int: ...
def u64_store(buffer: object, offset: int, value: int) -> None: ...
