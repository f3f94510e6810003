"""The library's internals above the leaves (see the floors in DESIGN.md)."""
