"""The command line: python -m qbreaker."""
