"""Shared segments across processes."""
