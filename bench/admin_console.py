"""Admin console list pages on big tables: 1,000,000 usage rows and 10,000 accounts in PostgreSQL.

    .venv/bin/python bench/admin_console.py [--rows 1000000] [--accounts 10000]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--repeat 5]

Makes a fresh database next to the given one (dropped afterwards), migrates it, fills it
with SQL `generate_series` (accounts, one user each, usage records spread over 60 days and
three channels), starts `tokone serve` on it, signs in as an admin over HTTP and times (best
and median of `--repeat`, after one warm-up each):

* ``/manage/usage`` (no filter; and one account; and one channel, last 7 days),
* ``/manage/usage.csv`` until its first bytes arrive (no filter),
* ``/manage/accounts?q=...`` (an e-mail fragment) and its last page.

and the overview page (not held to the second: it sums the last 30 days several ways).
Not a test: it prints the figures (and exits 1 if a list page is over a second).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

PASSWORD = "bench password 1234"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fill(url: str, rows: int, accounts: int) -> None:
    """Accounts (one user each) and usage records, inserted by the database itself."""
    now = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            'INSERT INTO accounts (name, "group", balance, held, created_at) '
            "SELECT 'acct-' || g, 'default', (g %% 50) * 100000, 0, %s "
            "FROM generate_series(1, %s) g",
            (now, accounts),
        )
        conn.execute(
            "INSERT INTO users (email, password_hash, display_name, role, status, account_id, "
            "created_at) SELECT 'user' || a.id || '@bench.example', 'x', '', 'user', 'active', "
            "a.id, %s FROM accounts a WHERE a.name LIKE 'acct-%%'",
            (now,),
        )
        conn.execute(
            "INSERT INTO usage_records (request_id, account_id, key_id, endpoint, model, "
            "provider, upstream_model, input_tokens, cached_input_tokens, output_tokens, "
            "estimated, cost, multiplier, tier, status, latency_ms, created_at) "
            "SELECT 'req_' || g, 1 + (g::bigint * 7919) %% %s, NULL, 'chat.completions', "
            "(ARRAY['mock-1','gpt-4o-mini','claude-x'])[1 + g %% 3], "
            "(ARRAY['primary','backup','spare'])[1 + g %% 3], 'm', 100, 0, 50, false, "
            "g %% 1000, 1.0, 'default', CASE WHEN g %% 97 = 0 THEN 502 ELSE 200 END, 12.5, "
            "%s - (g::float / %s) * 60 * 86400 FROM generate_series(1, %s) g",
            (accounts, now, rows, rows),
        )
        conn.execute("ANALYZE")


def timed(client: httpx.Client, path: str, repeat: int, first_bytes: bool = False) -> list[float]:
    """Seconds for `repeat` requests of `path` (after one warm-up); to the first body bytes
    only when `first_bytes`."""
    out = []
    for i in range(repeat + 1):
        started = time.perf_counter()
        with client.stream("GET", path) as answer:
            assert answer.status_code == 200, (path, answer.status_code)
            if first_bytes:
                next(answer.iter_bytes())
            else:
                answer.read()
        if i:
            out.append(time.perf_counter() - started)
    return out


def main() -> int:
    """Build the database, start the gateway, time the pages, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    name = "tokone_bench_" + secrets.token_hex(4)
    base = args.postgres.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    work = Path(tempfile.mkdtemp(prefix="tokone-admin-bench-"))
    port = free_port()
    config = work / "tokone.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nsecret = "bench"\n'
        f'[database]\nurl = "{url}"\n'
        '[[providers]]\nname = "primary"\nadapter = "mock"\nmodels = ["mock-1"]\n'
    )
    tokone = [str(Path(sys.executable).parent / "tokone"), "--config", str(config)]
    server = None
    try:
        subprocess.run([*tokone, "db", "upgrade"], check=True, capture_output=True)
        started = time.perf_counter()
        fill(url, args.rows, args.accounts)
        print(
            f"filled {args.rows:_} usage rows, {args.accounts:_} accounts "
            f"in {time.perf_counter() - started:.1f} s"
        )
        subprocess.run(
            [*tokone, "users", "create", "admin@bench.example", "--admin", "--password-stdin"],
            input=PASSWORD.encode(),
            check=True,
            capture_output=True,
        )
        log = (work / "serve.log").open("wb")
        server = subprocess.Popen(
            [*tokone, "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        gateway = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{gateway}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.2)
        with httpx.Client(base_url=gateway, timeout=120) as client:
            token = re.search(r'name="_csrf_token" value="([^"]+)"', client.get("/login").text)
            assert token
            signed_in = client.post(
                "/login",
                data={
                    "email": "admin@bench.example",
                    "password": PASSWORD,
                    "_csrf_token": token.group(1),
                },
            )
            if signed_in.status_code != 303 or "tokone_session" not in client.cookies:
                raise RuntimeError(
                    f"sign-in failed: {signed_in.status_code} {signed_in.text[:300]}"
                )
            last = -(-args.accounts // 50)
            since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 7 * 86400))
            cases = [
                ("overview (today, 7 d, 30 d, by model/channel)", "/manage", False),
                ("usage page, no filter", "/manage/usage", False),
                ("usage page, one account", "/manage/usage?account=acct-42", False),
                (
                    "usage page, one channel, 7 days",
                    f"/manage/usage?channel=backup&since={since}",
                    False,
                ),
                ("usage page 100 (offset 4950)", "/manage/usage?page=100", False),
                ("usage CSV, first bytes", "/manage/usage.csv", True),
                ("accounts search 'user42'", "/manage/accounts?q=user42", False),
                (f"accounts, page {last}", f"/manage/accounts?page={last}", False),
            ]
            slow = False
            print(f"{'what':<46} {'best':>8} {'median':>8}")
            for label, path, first in cases:
                times = timed(client, path, args.repeat, first)
                best, median = min(times), statistics.median(times)
                slow |= median > 1.0 and path != "/manage"
                print(f"{label:<46} {best * 1000:>6.0f}ms {median * 1000:>6.0f}ms")
        return 1 if slow else 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
