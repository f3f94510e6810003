"""The Python-level API: call forms, wrappers, groups, typing."""
