"""The ledger's SQL: every statement the writer runs, in one place.

Plain SQL rather than ORM calls, so a batch is a fixed, small number of statements per
account (see :mod:`tokone.plugins.ledger.batch`) and each is executed many-rows-at-once.
"""

from __future__ import annotations

from sqlalchemy import text

LOCK = text("UPDATE accounts SET held = held WHERE id = :account_id RETURNING balance - held")
"""Take the account's row lock (a no-op update) and read what is still available."""
MOVE = text(
    "UPDATE accounts SET balance = balance - :cost, held = held + :held WHERE id = :account_id"
)
LEASE = text("SELECT amount FROM holds WHERE request_id = :lease_id")
INSERT_LEASE = text(
    "INSERT INTO holds (request_id, account_id, amount, created_at) "
    "VALUES (:lease_id, :account_id, :amount, :now)"
)
UPDATE_LEASE = text(
    "UPDATE holds SET amount = :amount, created_at = :now WHERE request_id = :lease_id"
)
DELETE_HOLD = text("DELETE FROM holds WHERE request_id = :request_id")
CAPTURE = text(
    "INSERT INTO ledger_entries (account_id, kind, amount, request_id, actor, note, created_at) "
    "VALUES (:account_id, 'capture', :amount, :request_id, 'gateway', '', :now)"
)
USAGE = text(
    "INSERT INTO usage_records (request_id, account_id, key_id, endpoint, stream, model, "
    "provider, upstream_model, input_tokens, cached_input_tokens, output_tokens, estimated, "
    "cost, multiplier, tier, status, latency_ms, created_at) VALUES (:request_id, "
    ":account_id, :key_id, :endpoint, :stream, :model, :provider, :upstream_model, "
    ":input_tokens, :cached_input_tokens, :output_tokens, :estimated, :cost, :multiplier, "
    ":tier, :status, :latency_ms, :now)"
)
STALE = text(
    "SELECT request_id, account_id, amount FROM holds WHERE created_at < :cutoff "
    "ORDER BY account_id"
)
OWN = text(
    "SELECT request_id, account_id, amount FROM holds WHERE request_id LIKE :prefix "
    "ORDER BY account_id"
)
HEARTBEAT = text("UPDATE holds SET created_at = :now WHERE request_id LIKE :prefix")
RELEASE = text("UPDATE accounts SET held = held - :amount WHERE id = :account_id")
PING = text("SELECT 1")
