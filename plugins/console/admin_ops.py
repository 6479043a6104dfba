"""What the admin pages read and do: blocking functions, each action written to the audit log.

Every action calls the domain operation the CLI and the admin API call (``add_entry``,
``set_override``, ``set_account_group``, ``set_account_budget``, ``set_group``, ``set_key_status``,
``create_codes``, ``disable_code``, ``users.set_status``, the channel switch of
:mod:`tokone.core.health`) and then :func:`tokone.core.domain.audit.record` with the values
before and after. Nothing here checks the role: the admin router's guard does, for every
route (:mod:`tokone.plugins.console.admin_pages`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_
from sqlmodel import Session, col, select
from tokone.core.domain import audit, codes, settings_store, users
from tokone.core.domain.accounts import set_account_group, set_override
from tokone.core.domain.errors import AccountError
from tokone.core.domain.groups import create_group, known_groups, list_groups, set_group
from tokone.core.domain.key_ops import list_keys, rotate_key, set_key_status
from tokone.core.domain.ledger_entries import add_entry, ledger_entries
from tokone.core.domain.money import check_multiplier, format_amount, parse_amount
from tokone.core.domain.spend_limits import (
    PERIOD_WORDS,
    check_period,
    current_period,
    set_account_budget,
    spent,
)
from tokone.core.domain.usage_report import UsageFilter, parse_time, usage_totals
from tokone.core.gateway import Gateway
from tokone.core.health import describe, health, known_provider, write_switch
from tokone.core.store.tables import Account, ApiKey, UsageRecord, User
from tokone.core.types import Call, Family, Usage
from tokone.core.upstream import UpstreamError
from tokone.plugins.console import queries
from tokone.plugins.console.limit_forms import Features, limit_view, optional_amount

PAGE_SIZE = 50
LOW_BALANCE_MICRO = 1_000_000
"""Accounts with less available than this (and no alert threshold of their own) are "low"."""


@dataclass(slots=True)
class Actor:
    """Who is acting, for the audit log: the signed-in admin and their address."""

    user: User
    ip: str

    def record(self, gateway: Gateway, action: str, target: str, before: Any, after: Any) -> None:
        """Write one audit entry for this admin."""
        audit.record(
            gateway.engine,
            self.user.email,
            action,
            target,
            before=before,
            after=after,
            ip=self.ip,
            actor_user_id=self.user.id,
        )


def config_groups(gateway: Gateway) -> dict[str, float]:
    """The `[groups]` of the config: name to multiplier."""
    return {name: group.multiplier for name, group in gateway.config.groups.items()}


# -- reading -------------------------------------------------------------------------------


def config_groups_all(gateway: Gateway) -> list[str]:
    """The names of every group (config and database), sorted."""
    return sorted(known_groups(gateway.engine, config_groups(gateway)))


def search_accounts(gateway: Gateway, q: str, page: int) -> dict[str, Any]:
    """Accounts whose name, or one of whose users' e-mail, contains `q`; one page of them
    with their users and key counts."""
    q = q.strip().lower()
    conditions: list[Any] = []
    if q:
        by_user = select(User.account_id).where(col(User.email).contains(q))
        conditions.append(or_(func.lower(Account.name).contains(q), col(Account.id).in_(by_user)))
    with Session(gateway.engine) as session:
        total = int(session.exec(select(func.count(col(Account.id))).where(*conditions)).one())
        rows = list(
            session.exec(
                select(Account)
                .where(*conditions)
                .order_by(col(Account.name))
                .limit(PAGE_SIZE)
                .offset((page - 1) * PAGE_SIZE)
            ).all()
        )
        ids = [a.id for a in rows]
        emails: dict[int, list[str]] = {}
        for account_id, email in session.exec(
            select(User.account_id, User.email).where(col(User.account_id).in_(ids))
        ).all():
            emails.setdefault(account_id, []).append(email)
        key_counts = dict(
            session.exec(
                select(ApiKey.account_id, func.count(col(ApiKey.id)))
                .where(col(ApiKey.account_id).in_(ids))
                .group_by(col(ApiKey.account_id))
            ).all()
        )
    return {
        "q": q,
        "accounts": [(a, emails.get(a.id or 0, []), key_counts.get(a.id or 0, 0)) for a in rows],
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "total": total,
    }


def account_by_id(gateway: Gateway, account_id: int) -> Account:
    """The account with `account_id`, or AccountError 404."""
    with Session(gateway.engine) as session:
        account = session.get(Account, account_id)
    if account is None:
        raise AccountError(f"no account with id {account_id}", 404)
    return account


def account_detail(gateway: Gateway, account_id: int) -> dict[str, Any]:
    """Everything the account page shows: the account, users, keys, calls and ledger."""
    account = account_by_id(gateway, account_id)
    with Session(gateway.engine) as session:
        members = list(
            session.exec(select(User).where(User.account_id == account_id).order_by(User.email))
        )
    stats = queries.key_stats(gateway.engine, account_id)
    keys = [key for key, _ in list_keys(gateway.engine, account.name)]
    features = Features.of(gateway)
    return {
        "account": account,
        "members": members,
        "keys": [(key, stats.get(key.id or 0, queries.KeyStats())) for key in keys],
        "limits": {key.id: limit_view(gateway.engine, key, features) for key in keys},
        "budget": budget_view(gateway, account, features),
        "calls": queries.calls(gateway.engine, queries.CallFilter(account_id), 20),
        "entries": ledger_entries(gateway.engine, account.name, 50),
        "groups": list_groups(gateway.engine, config_groups(gateway)),
    }


def budget_view(gateway: Gateway, account: Account, features: Features) -> dict[str, Any] | None:
    """The account's budget and what it spent this period (None: no budget)."""
    if account.budget is None:
        return None
    period = current_period(account.budget_period or "month", features.timezone, time.time())
    return {
        "amount": account.budget,
        "period": period.kind,
        "word": PERIOD_WORDS[period.kind],
        "spent": spent(gateway.engine, f"account:{account.id}", period),
        "resets_at": period.resets_at,
    }


def overview(gateway: Gateway) -> dict[str, Any]:
    """Totals today / 7 / 30 days, by model and by channel, the daily series, channels not
    in service and accounts whose balance is low."""
    now = time.time()
    today = now - now % queries.DAY
    periods = {
        label: usage_totals(gateway.engine, UsageFilter(since=since))
        for label, since in (
            ("Today", today),
            ("7 days", now - 7 * 86400),
            ("30 days", now - 30 * 86400),
        )
    }
    since = now - 30 * 86400
    channels = health(gateway)
    troubled = [
        describe(p, channels.status(p.name))
        for p in gateway.config.providers
        if channels.status(p.name).get("state") not in ("healthy", "enabled", None)
    ]
    available: Any = col(Account.balance) - col(Account.held)
    threshold = func.coalesce(Account.alert_threshold, LOW_BALANCE_MICRO)
    with Session(gateway.engine) as session:
        low = list(
            session.exec(
                select(Account).where(available < threshold).order_by(available).limit(20)
            ).all()
        )
    return {
        "periods": periods,
        "by_model": grouped(gateway, UsageRecord.model, since),
        "by_channel": grouped(gateway, UsageRecord.provider, since),
        "series": queries.daily(gateway.engine, queries.CallFilter(None), 30),
        "troubled": troubled,
        "low": low,
    }


def grouped(gateway: Gateway, column: Any, since: float) -> list[tuple[str, int, int, int, int]]:
    """(value, requests, errors, tokens, cost) per value of `column` since `since`."""
    errors = func.sum(case((col(UsageRecord.status) >= 400, 1), else_=0))
    with Session(gateway.engine) as session:
        rows = session.exec(
            select(  # type: ignore[call-overload]  # sqlmodel's stubs stop at 4 columns
                column,
                func.count(col(UsageRecord.id)),
                errors,
                func.sum(UsageRecord.input_tokens + UsageRecord.output_tokens),
                func.sum(UsageRecord.cost),
            )
            .where(UsageRecord.created_at >= since)
            .group_by(column)
            .order_by(func.sum(UsageRecord.cost).desc())
        ).all()
    return [(v or "-", int(n), int(e or 0), int(t or 0), int(c or 0)) for v, n, e, t, c in rows]


def account_names(gateway: Gateway, ids: set[int] | None = None) -> dict[int, str]:
    """The names of the accounts with `ids` (None: of every account), by id."""
    query = select(Account.id, Account.name)
    if ids is not None:
        query = query.where(col(Account.id).in_(ids))
    with Session(gateway.engine) as session:
        return {i: n for i, n in session.exec(query).all() if i}


def channels_data(gateway: Gateway) -> list[dict[str, Any]]:
    """Every configured channel as the admin API describes it."""
    channels = health(gateway)
    return [describe(p, channels.status(p.name)) for p in gateway.config.providers]


# -- actions -------------------------------------------------------------------------------


def money_action(
    gateway: Gateway, actor: Actor, account_id: int, action: str, form: dict[str, str]
) -> str:
    """Top up, adjust (with a required note) or refund (a charged request, once); the
    amount is parsed as the CLI parses it."""
    account = account_by_id(gateway, account_id)
    note = form.get("note", "").strip()
    if len(note) > 500:
        raise AccountError("a note must be at most 500 characters")
    kind = {"topup": "topup", "adjust": "adjustment", "refund": "refund"}[action]
    if kind == "adjustment" and not note:
        raise AccountError("an adjustment needs a note saying why")
    amount = parse_amount(form.get("amount", ""))
    request_id = form.get("request_id", "").strip() or None
    if kind != "refund":
        request_id = None
    balance = add_entry(
        gateway.engine, account.name, kind, amount, f"console:{actor.user.email}", note, request_id
    )
    actor.record(
        gateway,
        f"account.{action}",
        f"account:{account.name}",
        {"balance": format_amount(account.balance)},
        {
            "balance": format_amount(balance),
            "amount": format_amount(amount),
            "note": note,
            **({"request_id": request_id} if request_id else {}),
        },
    )
    return (
        f"{kind.capitalize()} of {format_amount(amount)} written; balance {format_amount(balance)}."
    )


def override_action(gateway: Gateway, actor: Actor, account_id: int, form: dict[str, str]) -> str:
    """Set (a multiplier) or clear (empty, or `clear`) the account's own multiplier."""
    account = account_by_id(gateway, account_id)
    text = form.get("multiplier", "").strip()
    value = None if form.get("clear") or not text else check_multiplier(text)
    set_override(gateway.engine, account.name, value)
    actor.record(
        gateway,
        "account.override",
        f"account:{account.name}",
        {"multiplier_override": account.multiplier_override},
        {"multiplier_override": value},
    )
    return "Override cleared." if value is None else f"Override set to {value:g}."


def budget_action(gateway: Gateway, actor: Actor, account_id: int, form: dict[str, str]) -> str:
    """Set (an amount per period) or remove (empty, or `clear`) the account's budget."""
    account = account_by_id(gateway, account_id)
    budget = None if form.get("clear") else optional_amount(form.get("budget", ""), "Budget")
    period = check_period(form.get("period", "month") or "month", total=True)
    set_account_budget(gateway.engine, account.name, budget, period)
    actor.record(
        gateway,
        "account.budget",
        f"account:{account.name}",
        {"budget": account.budget, "period": account.budget_period},
        {"budget": budget, "period": period if budget is not None else None},
    )
    if budget is None:
        return "Budget removed."
    return f"Budget set to {format_amount(budget)} {PERIOD_WORDS[period]}."


def group_action(gateway: Gateway, actor: Actor, account_id: int, form: dict[str, str]) -> str:
    """Move the account to another group."""
    account = account_by_id(gateway, account_id)
    group = form.get("group", "").strip()
    known = known_groups(gateway.engine, config_groups(gateway))
    set_account_group(gateway.engine, account.name, group, known)
    actor.record(
        gateway,
        "account.group",
        f"account:{account.name}",
        {"group": account.group},
        {"group": group},
    )
    return f"Moved to group {group}."


def user_action(
    gateway: Gateway, actor: Actor, user_id: int, action: str, reset_link: Any
) -> tuple[int, str]:
    """Disable or enable a user, or make a password-reset link (`reset_link(user)` makes and
    maybe mails it, returning the message); (the user's account id, the message)."""
    user = users.user_by_id(gateway.engine, user_id)
    if action in ("disable", "enable"):
        if user.id == actor.user.id and action == "disable":
            raise AccountError("you cannot disable yourself", 409)
        status = "disabled" if action == "disable" else "active"
        users.set_status(gateway.engine, user.email, status)
        actor.record(
            gateway,
            f"user.{action}",
            f"user:{user.email}",
            {"status": user.status},
            {"status": status},
        )
        return user.account_id, f"{user.email} is now {status}."
    if action == "reset":
        message: str = reset_link(user)
        actor.record(gateway, "user.reset_link", f"user:{user.email}", None, {"link": "issued"})
        return user.account_id, message
    raise AccountError(f"unknown action {action!r}", 404)


def key_action(gateway: Gateway, actor: Actor, key_id: int, action: str) -> int:
    """Disable, enable or revoke any key; the key's account id."""
    statuses = {"disable": "disabled", "enable": "enabled", "revoke": "revoked"}
    if action not in statuses:
        raise AccountError(f"unknown action {action!r}", 404)
    with Session(gateway.engine) as session:
        row = session.get(ApiKey, key_id)
    if row is None:
        raise AccountError(f"no key with id {key_id}", 404)
    set_key_status(gateway.engine, key_id, statuses[action])
    actor.record(
        gateway,
        f"key.{action}",
        f"key:{key_id}",
        {"status": row.status, "prefix": row.prefix},
        {"status": statuses[action]},
    )
    return row.account_id


def key_rotate(gateway: Gateway, actor: Actor, key_id: int) -> tuple[ApiKey, str]:
    """Give any key a new secret (the old one stops within a second); (row, the new key)."""
    with Session(gateway.engine) as session:
        old = session.get(ApiKey, key_id)
    if old is None:
        raise AccountError(f"no key with id {key_id}", 404)
    row, key = rotate_key(gateway.engine, gateway.hasher, gateway.config.server.key_prefix, key_id)
    actor.record(
        gateway, "key.rotate", f"key:{key_id}", {"prefix": old.prefix}, {"prefix": row.prefix}
    )
    return row, key


def user_create(gateway: Gateway, actor: Actor, form: dict[str, str], policy: Any) -> User:
    """Onboard a user: a new account in a group (or an existing account), role `user` or
    `admin`, with a random password nobody knows (the admin hands out a reset link)."""
    account = form.get("account", "").strip() or None
    group = form.get("group", "").strip() or "default"
    role = "admin" if form.get("role") == "admin" else "user"
    user = users.create_user(
        gateway.engine,
        form.get("email", ""),
        secrets.token_urlsafe(24),
        policy=policy,
        display_name=form.get("display_name", ""),
        role=role,
        account=account,
        group=group,
        known_groups=known_groups(gateway.engine, config_groups(gateway)),
        actor=f"console:{actor.user.email}",
    )
    actor.record(
        gateway,
        "user.create",
        f"user:{user.email}",
        None,
        {"role": role, "account_id": user.account_id, "group": None if account else group},
    )
    return user


def groups_data(gateway: Gateway) -> list[tuple[str, float, str, int]]:
    """Every group with its multiplier, source and how many accounts are in it."""
    with Session(gateway.engine) as session:
        counts = dict(
            session.exec(
                select(Account.group, func.count(col(Account.id))).group_by(col(Account.group))
            ).all()
        )
    return [
        (name, m, source, counts.get(name, 0))
        for name, m, source in list_groups(gateway.engine, config_groups(gateway))
    ]


def group_create(gateway: Gateway, actor: Actor, form: dict[str, str]) -> str:
    """Create a group in the database."""
    name = form.get("name", "").strip()
    group = create_group(
        gateway.engine, name, form.get("multiplier", "").strip(), config_groups(gateway)
    )
    gateway.hook.groups_changed(gateway=gateway)
    actor.record(gateway, "group.create", f"group:{name}", None, {"multiplier": group.multiplier})
    return f"Created group {name} (multiplier {group.multiplier:g})."


def group_set(gateway: Gateway, actor: Actor, name: str, form: dict[str, str]) -> str:
    """Re-price a group (every process within a second, this one at once)."""
    before = {n: m for n, m, _ in list_groups(gateway.engine, config_groups(gateway))}
    group = set_group(
        gateway.engine, name, form.get("multiplier", "").strip(), config_groups(gateway)
    )
    gateway.hook.groups_changed(gateway=gateway)
    actor.record(
        gateway,
        "group.set",
        f"group:{name}",
        {"multiplier": before.get(name)},
        {"multiplier": group.multiplier},
    )
    return f"Group {name}: multiplier {group.multiplier:g}."


def channel_switch(gateway: Gateway, actor: Actor, name: str, disabled: bool, reason: str) -> str:
    """Switch a channel off or on for every process (as `/admin/providers/.../disable`)."""
    provider = known_provider(gateway.config, name)
    if provider is None:
        raise AccountError(f"no provider named {name!r} in the configuration", 404)
    channels = health(gateway)
    if not channels.obeys_switches:
        raise AccountError("no plugin keeps channel health here, so switches are not obeyed", 409)
    before = channels.status(name).get("state")
    written = write_switch(gateway.engine, name, disabled, reason.strip()[:300])
    channels.set_switch(name, written)
    gateway.log.info("channel_switched", provider=name, disabled=disabled, reason=reason)
    after = channels.status(name).get("state")
    actor.record(
        gateway,
        "channel.disable" if disabled else "channel.enable",
        f"channel:{name}",
        {"state": before},
        {"state": after, **({"reason": written.reason} if disabled else {})},
    )
    return f"Channel {name} is now {after}."


def codes_create(gateway: Gateway, actor: Actor, form: dict[str, str]) -> tuple[list[str], str]:
    """Create a batch of codes (shown once); (the codes, the batch name)."""
    amount = parse_amount(form.get("amount", ""))
    try:
        count = int(form.get("count", "1").strip() or "1")
    except ValueError:
        raise AccountError("count must be a whole number") from None
    batch = form.get("batch", "").strip()
    expires_text = form.get("expires", "").strip()
    expires_at = None
    if expires_text:
        expires_at = parse_time(expires_text)
        if len(expires_text) == 10:  # a date: the end of that day (UTC)
            expires_at += queries.DAY
    created = codes.create_codes(
        gateway.engine,
        gateway.hasher,
        amount,
        count,
        f"console:{actor.user.email}",
        batch=batch,
        expires_at=expires_at,
    )
    actor.record(
        gateway,
        "codes.create",
        f"codes:{batch}" if batch else "codes",
        None,
        {"count": count, "amount": format_amount(amount), "batch": batch, "expires_at": expires_at},
    )
    return created, batch


def code_disable(gateway: Gateway, actor: Actor, code_id: int) -> str:
    """Disable an unused code."""
    codes.disable_code(gateway.engine, code_id)
    actor.record(
        gateway, "code.disable", f"code:{code_id}", {"state": "unused"}, {"state": "disabled"}
    )
    return f"Code {code_id} disabled."


SETTING_FIELDS = (
    ("signup", "Sign-up policy"),
    ("signup_credit", "Sign-up credit"),
    ("allowed_email_domains", "Allowed e-mail domains"),
)
"""The console settings an admin may change here: field of ConsoleConfig, label."""


def settings_data(gateway: Gateway, defaults: Any) -> list[dict[str, Any]]:
    """Each changeable setting: its `tokone.toml` value, the stored override (if any) and
    who stored it when."""
    stored = settings_store.read_settings(gateway.engine)
    out = []
    for field, label in SETTING_FIELDS:
        row = stored.get(f"console.{field}")
        default = getattr(defaults, field)
        value = json.loads(row.value) if row is not None else default
        out.append(
            {
                "field": field,
                "label": label,
                "default": default,
                "value": value,
                "overridden": row is not None,
                "updated_at": row.updated_at if row else None,
                "updated_by": row.updated_by if row else "",
            }
        )
    return out


def settings_save(gateway: Gateway, actor: Actor, form: dict[str, str], defaults: Any) -> str:
    """Store the settings form: a field equal to its `tokone.toml` value (`defaults`) or
    marked "use the default" is removed from the database; the others are stored, and each
    change is audited. Every field is checked before anything is stored."""
    wanted: dict[str, Any] = {}
    for field, _label in SETTING_FIELDS:
        text = form.get(field, "").strip()
        value: Any
        if form.get(f"{field}__default"):
            value = None
        elif field == "allowed_email_domains":
            value = [d.strip() for d in text.replace("\n", ",").split(",") if d.strip()]
        else:
            value = text
        if value is not None:
            value = settings_store.KNOWN[f"console.{field}"](value)
        wanted[field] = None if value == getattr(defaults, field) else value
    changed = []
    for field, value in wanted.items():
        name = f"console.{field}"
        before, after = settings_store.set_setting(gateway.engine, name, value, actor.user.email)
        if before != after:
            actor.record(
                gateway, "setting.set", f"setting:{name}", {"value": before}, {"value": after}
            )
            changed.append(field)
    return f"Saved: {', '.join(changed)}." if changed else "Nothing changed."


def _test_body(family: Family, model: str) -> tuple[str, dict[str, Any]]:
    """The endpoint and body of the smallest request a channel of `family` answers."""
    ping = [{"role": "user", "content": "ping"}]
    if family is Family.ANTHROPIC:
        return "messages", {"model": model, "max_tokens": 1, "messages": ping}
    if family is Family.GEMINI:
        return "generateContent", {
            "contents": [{"role": "user", "parts": [{"text": "ping"}]}],
            "generationConfig": {"maxOutputTokens": 1},
        }
    return "chat.completions", {"model": model, "messages": ping, "max_tokens": 1}


async def channel_test(gateway: Gateway, actor: Actor, name: str) -> dict[str, Any]:
    """Send one tiny request through channel `name` (its own adapter, no routing or
    failover, nothing charged) and record it as a test in the usage log, on the admin's
    account with cost 0; (status, latency, usage, error) for the page."""
    adapter = gateway.adapters.get(name)
    if adapter is None:
        raise AccountError(f"no provider named {name!r} in the configuration", 404)
    provider = adapter.provider
    model = next((m for m in [*provider.models, *provider.model_map] if "*" not in m), None)
    if model is None:
        raise AccountError(f"channel {name} lists only model patterns; nothing to test with")
    family = next(
        f for f in (Family.OPENAI, Family.ANTHROPIC, Family.GEMINI) if f in adapter.families
    )
    endpoint, body = _test_body(family, model)
    call = Call(
        request_id=f"test_{secrets.token_hex(12)}",
        family=family,
        endpoint=endpoint,
        model=model,
        raw=json.dumps(body).encode(),
        max_output_tokens=1,
    )
    upstream = provider.model_map.get(model, model)
    started = time.perf_counter()
    usage, error, status = Usage(), "", 0
    try:
        reply = await adapter.send(call, upstream)
        status, usage = reply.status, reply.usage
        await reply.aclose()
    except UpstreamError as exc:
        status, error = exc.status or 502, str(exc)[:300]
    latency = (time.perf_counter() - started) * 1000
    result = {
        "channel": name,
        "model": model,
        "status": status,
        "latency_ms": round(latency, 1),
        "input_tokens": usage.input_tokens or 0,
        "output_tokens": usage.output_tokens or 0,
        "error": error,
        "request_id": call.request_id,
    }
    await asyncio.to_thread(_record_test, gateway, actor, call, provider.name, upstream, result)
    return result


def _record_test(
    gateway: Gateway, actor: Actor, call: Call, provider: str, upstream: str, result: dict[str, Any]
) -> None:
    """The channel test in the usage log (tier `test`, cost 0) and the audit log."""
    with Session(gateway.engine) as session:
        session.add(
            UsageRecord(
                request_id=call.request_id,
                account_id=actor.user.account_id,
                endpoint=call.endpoint,
                model=call.model,
                provider=provider,
                upstream_model=upstream,
                input_tokens=result["input_tokens"],
                output_tokens=result["output_tokens"],
                cost=0,
                tier="test",
                status=result["status"],
                latency_ms=result["latency_ms"],
            )
        )
        session.commit()
    actor.record(gateway, "channel.test", f"channel:{provider}", None, result)
