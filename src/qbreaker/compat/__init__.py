"""Drop-in replacements for other circuit breaker libraries, on qbreaker's core.

``import qbreaker.compat.pybreaker as pybreaker`` gives pybreaker 1.4.1's
public API without its lock around every protected call. Nothing is imported
here: each compat module is loaded only by code that asks for it.
"""

__all__ = ("pybreaker",)
