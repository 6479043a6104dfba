"""structlog set-up: one JSON line per event, with the request id; never a key."""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _encode_json(event: dict[str, Any], **_: Any) -> bytes:
    """msgspec's JSON encoder (several times faster than `json.dumps` per log line)."""
    return msgspec.json.encode(event, enc_hook=repr)


def configure_logging(level: str = "info") -> None:
    """Send structlog JSON lines to stderr at `level`; quiet the chatty HTTP libraries."""
    numeric = LEVELS.get(level.lower(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_encode_json),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
