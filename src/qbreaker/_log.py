"""The package's ``qbreaker`` logger, made when something first logs.

Importing ``logging`` (with ``re``, ``traceback`` and ``string``) costs more
than the rest of the package, and most processes never log from qbreaker:
its users import this module inside the rare paths that log (a transition,
a hook that raised).
"""

from __future__ import annotations

import logging

logger = logging.getLogger("qbreaker")
# A library logs, the application decides where it goes: without this, every
# transition would reach stderr through logging's last-resort handler.
logger.addHandler(logging.NullHandler())
