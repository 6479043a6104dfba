"""Sending queued alerts: claim what is due, sign and POST webhooks, mail, record the result.

A delivery row is *claimed* with a conditional ``UPDATE`` (its ``next_attempt_at`` moved
ahead by ``CLAIM_SECONDS`` and its attempt counted), so two processes never send the same
attempt; a process that dies mid-attempt leaves the row to be retried after the claim lapses.
A failed attempt is retried after the next of ``retry_seconds``; after the last it is marked
``failed``. A webhook receiver sees the same ``x-tokone-delivery`` id on every retry of one
alert, to drop a repeat whose earlier answer it sent but the gateway did not get.

Signature: ``x-tokone-signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256, keyed with ``webhook_secret``, of ``"<t>." + body`` (the raw JSON bytes).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, text
from tokone.plugins.alerts.settings import SMTPSettings

CLAIM_SECONDS = 60.0
"""How long a claimed attempt keeps other processes off the row."""
DUE = text(
    "SELECT id, channel, target, kind, payload, attempts, next_attempt_at FROM alert_deliveries "
    "WHERE status = 'pending' AND next_attempt_at <= :now ORDER BY id LIMIT :limit"
)
CLAIM = text(
    "UPDATE alert_deliveries SET next_attempt_at = :until, attempts = attempts + 1 "
    "WHERE id = :id AND status = 'pending' AND next_attempt_at = :seen"
)
DELIVERED = text(
    "UPDATE alert_deliveries SET status = 'delivered', delivered_at = :now, last_error = '' "
    "WHERE id = :id"
)
RETRY = text(
    "UPDATE alert_deliveries SET next_attempt_at = :at, last_error = :error WHERE id = :id"
)
FAILED = text("UPDATE alert_deliveries SET status = 'failed', last_error = :error WHERE id = :id")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One claimed delivery attempt."""

    id: int
    channel: str
    target: str
    kind: str
    payload: str
    attempt: int
    """1 for the first attempt."""


def claim_due(engine: Engine, limit: int = 50) -> list[Attempt]:
    """Claim up to `limit` deliveries that are due now."""
    now = time.time()
    claimed = []
    with engine.begin() as conn:
        for row in conn.execute(DUE, {"now": now, "limit": limit}).all():
            moved = conn.execute(
                CLAIM, {"id": row[0], "until": now + CLAIM_SECONDS, "seen": row[6]}
            ).rowcount
            if moved == 1:
                claimed.append(Attempt(row[0], row[1], row[2], row[3], row[4], row[5] + 1))
    return claimed


def record(
    engine: Engine, attempt: Attempt, error: str | None, waits: list[float], final: bool = False
) -> None:
    """Record an attempt: delivered, retried after the next wait, or failed for good (after
    the last wait, or at once when `final`)."""
    now = time.time()
    with engine.begin() as conn:
        if error is None:
            conn.execute(DELIVERED, {"id": attempt.id, "now": now})
        elif final or attempt.attempt > len(waits):
            conn.execute(FAILED, {"id": attempt.id, "error": error[:500]})
        else:
            wait = waits[attempt.attempt - 1]
            conn.execute(RETRY, {"id": attempt.id, "at": now + wait, "error": error[:500]})


class RefusedTarget(Exception):
    """A webhook address the settings do not allow (a non-public address); never retried."""


async def check_public(url: str) -> None:
    """Raise :class:`RefusedTarget` unless every address `url`'s host resolves to is public.

    The check is made at delivery time (a name may resolve differently later); the name is
    resolved again by the HTTP client, so a DNS answer that changes between the two is not
    caught: a deliberate trade-off, documented in the README.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    except OSError as exc:
        raise RuntimeError(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise RefusedTarget(
                f"webhook host {host!r} resolves to the non-public address {address}; "
                "set [plugins.alerts] private_webhooks = true to allow it"
            )


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `x-tokone-signature` value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


async def post_webhook(client: httpx.AsyncClient, attempt: Attempt, secret: str) -> None:
    """POST the alert, signed; raise on a connection error or a non-2xx answer."""
    body = attempt.payload.encode()
    response = await client.post(
        attempt.target,
        content=body,
        headers={
            "content-type": "application/json",
            "user-agent": "TokOne-Alerts/1",
            "x-tokone-event": attempt.kind,
            "x-tokone-delivery": str(attempt.id),
            "x-tokone-signature": signature(secret, int(time.time()), body),
        },
    )
    if not 200 <= response.status_code < 300:
        raise RuntimeError(f"webhook answered {response.status_code}")


def send_mail(smtp: SMTPSettings, attempt: Attempt) -> None:
    """Mail the alert through the configured server (blocking: run it on a thread)."""
    payload = json.loads(attempt.payload)
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = attempt.target
    message["Subject"] = f"TokOne alert: {attempt.kind.replace('_', ' ')} ({payload['account']})"
    message["X-TokOne-Delivery"] = str(attempt.id)
    message.set_content(f"{payload['message']}\n\n{json.dumps(payload, indent=2)}\n")
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds) as server:
        if smtp.starttls:
            server.starttls()
        if smtp.username:
            server.login(smtp.username, smtp.password)
        server.send_message(message)
