"""``python -m qbreaker``: the command line lives in ``qbreaker._cli``."""

from qbreaker._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
