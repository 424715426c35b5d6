"""Run the app under gunicorn with a fresh app (and engine) per worker after fork."""

from __future__ import annotations

import random
from typing import Any

from gunicorn.app.base import BaseApplication


class _GunicornApp(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from gridgov import create_app
        from gridgov.mapdata import start_cache_warmer
        from gridgov.sla import start_background_sweeper

        app = create_app()
        # After the fork (preload_app=False): each worker sweeps with its own engine;
        # concurrent sweeps are safe (optimistic locking) and start at random offsets.
        start_background_sweeper(app)
        # Each worker builds its map polygons and grid index before the first leader asks,
        # and again after an import anywhere (the geodata version changes).
        start_cache_warmer(app, first_delay_s=random.uniform(1, 5))
        return app


def run_gunicorn(
    *, bind: str, workers: int, certfile: str | None = None, keyfile: str | None = None
) -> None:
    """Serve gridgov with gunicorn; each worker builds its own app after the fork."""
    _GunicornApp(
        {
            "bind": bind,
            "workers": workers,
            "certfile": certfile,
            "keyfile": keyfile,
            "accesslog": "-",
            "preload_app": False,
            "timeout": 60,
        }
    ).run()
