"""Load generators: wrk (with its output parsed) and a fixed-count aiohttp client for soaks.

wrk runs for a duration and counts a response as done when the whole response (a stream
included) has arrived. When the duration is up it drops the requests still in flight, so a
server may have finished (and billed) up to `connections` more requests than wrk counted.
The soak generator instead sends an exact number of requests and waits for every one.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

WRK = shutil.which("wrk") or "/usr/bin/wrk"
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


@dataclass
class LoadResult:
    """One load run: how many requests completed, how fast, how slow, how many failed."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: int = 0
    non_2xx: int = 0
    client_cpu: float = 0.0
    """CPU seconds the load generator itself used (wrk: user + system)."""
    extra: dict[str, float] = field(default_factory=dict)
    """Samples taken around the run (server CPU, RSS ...), filled in by the caller."""

    @property
    def errors(self) -> int:
        """Socket errors (connect/read/write/timeout) plus 4xx/5xx responses."""
        return self.socket_errors + self.non_2xx

    @property
    def ok(self) -> int:
        """Completed requests that got a 2xx/3xx status."""
        return self.requests - self.non_2xx

    @property
    def client_cpu_share(self) -> float:
        """The load generator's CPU use as a fraction of one core over the run."""
        return self.client_cpu / self.seconds if self.seconds else 0.0


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(text: str) -> LoadResult:
    """Parse `wrk --latency` output: completed requests, req/s, p50/p99 and errors."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not done or not rps:
        raise ValueError(f"unrecognised wrk output:\n{text}")
    pct = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+" + _TIME, text, re.M)}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return LoadResult(
        requests=int(done.group(1)),
        seconds=_ms(done.group(2), done.group(3)) / 1000.0,
        rps=float(rps.group(1)),
        p50_ms=pct.get("50", float("nan")),
        p99_ms=pct.get("99", float("nan")),
        socket_errors=sum(int(n) for n in sock.groups()) if sock else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run_wrk(
    url: str, script: Path, connections: int, seconds: float, key: str
) -> tuple[LoadResult, str]:
    """Run `wrk -t1 -cN -dS --latency -s SCRIPT URL` with $BENCH_KEY set; (result, raw output).

    The CPU time wrk used is measured from the children's rusage (wrk is the only child
    reaped while it runs), to tell when the load generator rather than the server saturates.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [
        WRK,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, "BENCH_KEY": key}, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    result = parse_wrk(proc.stdout)
    result.client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, proc.stdout


def _percentile(sorted_ms: list[float], pct: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * pct / 100))]


async def _fixed_count(
    url: str, body: bytes, headers: dict[str, str], total: int, concurrency: int
) -> LoadResult:
    import aiohttp

    latencies: list[float] = []
    failures = {"status": 0, "socket": 0}
    remaining = total

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status >= 400:
                        failures["status"] += 1
            except (TimeoutError, aiohttp.ClientError):
                failures["socket"] += 1
                continue
            latencies.append((time.perf_counter() - start) * 1000.0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        requests=len(latencies),
        seconds=seconds,
        rps=len(latencies) / seconds if seconds else 0.0,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        socket_errors=failures["socket"],
        non_2xx=failures["status"],
    )


def run_fixed_count(
    url: str, body: bytes, headers: dict[str, str], total: int, concurrency: int
) -> LoadResult:
    """Send exactly `total` POSTs with `concurrency` connections and wait for all of them.

    Used by the soak, where the billing check needs exact request counts. Every request is
    either a completed response (counted in `requests`, 4xx/5xx in `non_2xx`) or a client
    error (`socket_errors`); none is abandoned.
    """
    before = time.process_time()
    result = asyncio.run(_fixed_count(url, body, headers, total, concurrency))
    result.client_cpu = time.process_time() - before
    return result
