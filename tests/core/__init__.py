"""The breaker's state machine and its word: both cores, compared with each other."""
