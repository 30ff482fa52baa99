"""fraudstream's Faust app. ``faust -A app worker`` finds :data:`app.main.app` through here.

The app is built lazily, on first access of ``app.app``, so that importing a submodule (the CLI,
the settings, the validation contract) does not need a broker.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from app.main import app

        return app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
