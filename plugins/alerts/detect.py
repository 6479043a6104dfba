"""Finding alert events and queueing them, each at most once (run on a worker thread).

* **Low balance**: an account whose balance is below its threshold. ``alert_states.below``
  flips to true in a conditional ``UPDATE … WHERE below = false`` — whichever process wins
  it queues the alert, under the crossing's number — and back to false once the balance is
  at or above the threshold again (a top-up), which arms the next crossing.
* **Limits**: a key's (or account budget's) spend in the current period reaching each of
  ``key_limit_percents``; 100% also when a call was refused by that limit (holds refuse a
  call before the last micro-unit is spent). Named by limit, period and percentage.
* **Expiry**: an enabled key expiring within ``expiry_days``, named by key and expiry time.

Each event is queued as one ``alert_deliveries`` row per destination (webhook, e-mail); the
unique ``(dedupe, channel)`` constraint makes a second queueing of the same event a no-op.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text
from tokone.core.domain.money import format_amount, parse_amount
from tokone.core.domain.spend_limits import PERIOD_WORDS
from tokone.core.types import Principal
from tokone.plugins.alerts.settings import AlertSettings
from tokone.plugins.key_limits.hooks import limits_for
from tokone.plugins.key_limits.settings import KeyLimitsSettings

QUEUE = text(
    "INSERT INTO alert_deliveries (account_id, kind, dedupe, channel, target, payload, status, "
    "attempts, next_attempt_at, last_error, created_at) VALUES (:account_id, :kind, :dedupe, "
    ":channel, :target, :payload, 'pending', 0, :now, '', :now) "
    "ON CONFLICT (dedupe, channel) DO NOTHING"
)
ACCOUNTS = text(
    'SELECT id, name, "group", balance, alert_threshold, alert_webhook, alert_email '
    "FROM accounts WHERE id = :id"
)
ENSURE_STATE = text(
    "INSERT INTO alert_states (account_id, below, crossings) VALUES (:id, false, 0) "
    "ON CONFLICT (account_id) DO NOTHING"
)
CROSS_DOWN = text(
    "UPDATE alert_states SET below = true, crossings = crossings + 1 "
    "WHERE account_id = :id AND below = false RETURNING crossings"
)
REARM = text("UPDATE alert_states SET below = false WHERE account_id = :id AND below = true")
BELOW = text("SELECT account_id FROM alert_states WHERE below = true")
KEYS = text(
    "SELECT k.id, k.name, k.account_id, k.spend_limit, k.period_limit, k.limit_period, "
    'k.limit_timezone, a.name, a."group", a.budget, a.budget_period, a.alert_webhook, '
    "a.alert_email FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = :id"
)
SPENT = text("SELECT spent FROM spend_counters WHERE scope = :scope AND period = :period")
EXPIRING = text(
    "SELECT k.id, k.name, k.account_id, k.expires_at, a.name, a.alert_webhook, a.alert_email "
    "FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.status = 'enabled' "
    "AND k.expires_at > :now AND k.expires_at <= :until"
)


@dataclass(frozen=True, slots=True)
class Destinations:
    """Where one account's alerts go."""

    webhook: str
    email: str


def destinations(settings: AlertSettings, webhook: str, email: str) -> Destinations:
    """The account's own destinations, else the configured defaults (e-mail only with SMTP)."""
    mail = (email or settings.email) if settings.smtp is not None else ""
    return Destinations(webhook or settings.webhook_url, mail)


def queue(
    conn: Connection,
    account_id: int,
    kind: str,
    dedupe: str,
    payload: dict[str, Any],
    to: Destinations,
    now: float,
) -> int:
    """Queue one event for each destination; return how many rows were new."""
    body = json.dumps({"id": dedupe, "type": kind, "created_at": now, **payload})
    queued = 0
    for channel, target in (("webhook", to.webhook), ("email", to.email)):
        if target:
            row = {
                "account_id": account_id,
                "kind": kind,
                "dedupe": dedupe,
                "channel": channel,
                "target": target,
                "payload": body,
                "now": now,
            }
            queued += conn.execute(QUEUE, row).rowcount or 0
    return queued


def check_accounts(engine: Engine, account_ids: set[int], settings: AlertSettings) -> int:
    """Queue a low-balance alert for each account that crossed its threshold downward."""
    queued = 0
    now = time.time()
    with engine.begin() as conn:
        account_ids = account_ids | {int(r[0]) for r in conn.execute(BELOW).all()}
        for account_id in sorted(account_ids):
            found = conn.execute(ACCOUNTS, {"id": account_id}).first()
            if found is None:
                continue
            _, name, group, balance, threshold, webhook, email = found
            if threshold is None and group in settings.groups:
                default = settings.groups[group].threshold
                threshold = parse_amount(default) if default is not None else None
            if threshold is None:
                continue
            conn.execute(ENSURE_STATE, {"id": account_id})
            if balance >= threshold:
                conn.execute(REARM, {"id": account_id})
                continue
            crossing = conn.execute(CROSS_DOWN, {"id": account_id}).scalar()
            if crossing is None:
                continue  # already below: alerted at the crossing
            payload = {
                "account": name,
                "balance": balance,
                "threshold": threshold,
                "message": f"The balance of account {name} is {format_amount(balance)}, "
                f"below the alert threshold {format_amount(threshold)}.",
            }
            to = destinations(settings, webhook, email)
            dedupe = f"low_balance:{account_id}:{crossing}"
            queued += queue(conn, account_id, "low_balance", dedupe, payload, to, now)
    return queued


def check_keys(
    engine: Engine,
    keys: dict[int, set[str]],
    settings: AlertSettings,
    limits_settings: KeyLimitsSettings | None,
) -> int:
    """Queue limit alerts for keys whose spend reached a percentage of one of their limits.

    `keys` maps a key id to the 402 messages its calls were refused with since the last scan.
    """
    queued = 0
    now = time.time()
    limit_settings = limits_settings or KeyLimitsSettings()
    with engine.begin() as conn:
        for key_id, refusals in sorted(keys.items()):
            row = conn.execute(KEYS, {"id": key_id}).first()
            if row is None:
                continue
            principal = Principal(
                key_id=key_id,
                account_id=row[2],
                account_name=row[7],
                group=row[8],
                key_name=row[1],
                spend_limit=row[3],
                period_limit=row[4],
                limit_period=row[5],
                limit_timezone=row[6],
                account_budget=row[9],
                account_budget_period=row[10],
            )
            to = destinations(settings, row[11], row[12])
            for limit in limits_for(principal, limit_settings, now):
                spent = int(
                    conn.execute(SPENT, {"scope": limit.scope, "period": limit.period}).scalar()
                    or 0
                )
                kind = "key_limit" if limit.scope.startswith("key:") else "account_budget"
                word = PERIOD_WORDS.get(limit.period.split(":", 1)[0], "")
                who = f"Key {key_id}" if kind == "key_limit" else "The account"
                for percent in settings.key_limit_percents:
                    reached = spent * 100 >= percent * limit.amount
                    if not reached and not (percent >= 100 and limit.refusal in refusals):
                        continue
                    payload = {
                        "account": principal.account_name,
                        "key_id": key_id,
                        "key_name": principal.key_name,
                        "scope": limit.scope,
                        "period": limit.period,
                        "limit": limit.amount,
                        "spent": spent,
                        "percent": percent,
                        "message": f"{who} has used {percent}% of its {word} limit "
                        f"({format_amount(spent)} of {format_amount(limit.amount)}).",
                    }
                    dedupe = f"{kind}:{limit.scope}:{limit.period}:{percent}"
                    queued += queue(conn, principal.account_id, kind, dedupe, payload, to, now)
    return queued


def check_expiring(engine: Engine, settings: AlertSettings) -> int:
    """Queue an alert for each enabled key expiring within `expiry_days`."""
    queued = 0
    now = time.time()
    until = now + settings.expiry_days * 86400
    with engine.begin() as conn:
        for key_id, name, account_id, expires_at, account, webhook, email in conn.execute(
            EXPIRING, {"now": now, "until": until}
        ).all():
            payload = {
                "account": account,
                "key_id": key_id,
                "key_name": name,
                "expires_at": expires_at,
                "message": f"Key {key_id} ({name or 'unnamed'}) of account {account} expires "
                f"at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(expires_at))}.",
            }
            to = destinations(settings, webhook, email)
            dedupe = f"key_expiry:{key_id}:{int(expires_at)}"
            queued += queue(conn, account_id, "key_expiry", dedupe, payload, to, now)
    return queued
