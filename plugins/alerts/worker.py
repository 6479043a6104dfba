"""The background task: look for crossings, send what is due, never on a call's way.

`meter` only notes which accounts and keys spent (and which 402s a key got) in memory; every
``scan_seconds`` this task checks them against their thresholds and limits on a thread
(:mod:`.detect`), then claims due deliveries and sends them concurrently with their own
timeouts (:mod:`.deliver`), so a dead webhook endpoint never slows or fails a call.

The ledger and the limit counters are written behind the calls, by their own writers, so a
scan can read a balance from before a call's charge. An account or key is therefore checked
on every scan until ``settle_seconds`` after its last call, not only on the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import structlog
from tokone.core.gateway import Gateway
from tokone.plugins.alerts import deliver, detect
from tokone.plugins.alerts.settings import AlertSettings


class AlertWorker:
    """What one process saw since its last scan, and the task that acts on it."""

    def __init__(self, gateway: Gateway, settings: AlertSettings) -> None:
        self.engine = gateway.engine
        self.settings = settings
        self.secret = settings.webhook_secret or gateway.config.server.secret
        self.limits_settings = gateway.plugin_config("key_limits")
        self.accounts: dict[int, float] = {}
        """Account id → when (monotonic) it last made a call."""
        self.keys: dict[int, float] = {}
        """Key id → when (monotonic) it last made a call."""
        self.refusals: dict[int, set[str]] = {}
        """Key id → the 402 messages its calls got since the last scan."""
        self.log = structlog.get_logger("tokone")
        self.client = httpx.AsyncClient(timeout=settings.timeout_seconds)
        self._next_expiry_scan = 0.0
        self._task = asyncio.get_running_loop().create_task(self._run())

    def saw(self, account_id: int, key_id: int, refusal: str | None) -> None:
        """A call of `key_id` finished (refused with `refusal` when a 402): check it later."""
        now = time.monotonic()
        self.accounts[account_id] = now
        self.keys[key_id] = now
        if refusal is not None:
            self.refusals.setdefault(key_id, set()).add(refusal)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scan_seconds)
            try:
                await self.scan()
                await self.send_due()
            except Exception as exc:  # the database is away: try again next time
                self.log.warning("alerts_scan_failed", error=repr(exc)[:300])

    async def scan(self) -> None:
        """Queue the alerts of the accounts and keys that spent lately (and expiring keys)."""
        horizon = time.monotonic() - self.settings.settle_seconds
        accounts = set(self.accounts)
        refusals, self.refusals = self.refusals, {}
        keys = {key_id: refusals.get(key_id, set()) for key_id in self.keys}
        try:
            await asyncio.to_thread(detect.check_accounts, self.engine, accounts, self.settings)
            if keys:
                await asyncio.to_thread(
                    detect.check_keys, self.engine, keys, self.settings, self.limits_settings
                )
        except BaseException:
            for key_id, seen in refusals.items():  # look again next time
                self.refusals.setdefault(key_id, set()).update(seen)
            raise
        self.accounts = {a: t for a, t in self.accounts.items() if t >= horizon}
        self.keys = {k: t for k, t in self.keys.items() if t >= horizon}
        if time.monotonic() >= self._next_expiry_scan:
            self._next_expiry_scan = time.monotonic() + self.settings.expiry_scan_seconds
            await asyncio.to_thread(detect.check_expiring, self.engine, self.settings)

    async def send_due(self) -> None:
        """Claim the deliveries that are due and attempt each, recording the outcome."""
        attempts = await asyncio.to_thread(deliver.claim_due, self.engine)
        if attempts:
            await asyncio.gather(*(self._attempt(a) for a in attempts))

    async def _attempt(self, attempt: deliver.Attempt) -> None:
        error: str | None = None
        final = False
        try:
            if attempt.channel == "webhook":
                if attempt.target != self.settings.webhook_url and not (
                    self.settings.private_webhooks
                ):
                    await deliver.check_public(attempt.target)
                await deliver.post_webhook(self.client, attempt, self.secret)
            elif self.settings.smtp is None:
                raise RuntimeError("no [plugins.alerts.smtp] server is configured")
            else:
                await asyncio.to_thread(deliver.send_mail, self.settings.smtp, attempt)
        except deliver.RefusedTarget as exc:
            error, final = f"refused: {exc}", True
            self.log.warning("alert_webhook_refused", id=attempt.id, error=str(exc))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.log.info("alert_delivery_failed", id=attempt.id, attempt=attempt.attempt)
        await asyncio.to_thread(
            deliver.record, self.engine, attempt, error, self.settings.retry_seconds, final
        )

    async def stop(self) -> None:
        """Stop the task; what is queued stays in the database for the next process."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(Exception):
            await self.scan()
        await self.client.aclose()
