"""The ASGI entry point `tokone serve` hands to uvicorn (one app per worker process)."""

from __future__ import annotations

from litestar.types import ASGIApp
from tokone.core.config import load_config
from tokone.core.http.app import create_app


def app() -> ASGIApp:
    """Build the app from `$TOKONE_CONFIG` (set by `tokone serve`) or ./tokone.toml."""
    return create_app(load_config())
