"""The module ``faust -A app worker`` loads (through :mod:`app`'s lazy attribute).

Configuration errors stop the process here, before Faust starts, with a message that names the
variable to fix.
"""

from __future__ import annotations

from app.faust_app import app_from_environment

app = app_from_environment()
