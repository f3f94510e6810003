"""Threads, processes, forks and long runs."""
