"""Paced-stream load: hold N concurrent streams against a paced fake upstream.

The fake upstream (``--first-delay``, ``--chunk-delay``, ``--chunks``) answers every stream
like a slow model: headers at once, the first content chunk after the first delay, then one
chunk per chunk delay. All N streams are opened at once and held to the end; per stream the
client records the time to the first content chunk (TTFT) and the worst gap between two
reads after it. Gateway CPU (``/proc/<pid>/stat``) is divided by the chunks relayed.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

from services import cpu_seconds, rss_bytes

_CONTENT = re.compile(rb'"content":"[^"]')


@dataclass
class PacedResult:
    """What one paced run measured."""

    streams: int
    completed: int = 0
    errors: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    worst_gap_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    chunks: int = 0
    cpu_us_per_chunk: float | None = None
    rss_mb: float | None = None
    first_error: str = ""


def percentile(values: list[float], pct: float) -> float:
    """The `pct` percentile of `values` (nearest rank), NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def _one(session, url: str, body: bytes, headers: dict[str, str], out: PacedResult) -> None:
    import aiohttp

    start = time.perf_counter()
    first: float | None = None
    last = 0.0
    worst = 0.0
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                out.errors += 1
                out.first_error = out.first_error or f"{response.status} {await response.text()}"
                return
            tail = b""
            async for data in response.content.iter_any():
                now = time.perf_counter()
                if first is None:
                    if _CONTENT.search(tail + data):
                        first = last = now
                    tail = data[-32:]
                    continue
                worst = max(worst, now - last)
                last = now
            if b"[DONE]" not in tail + data:
                raise aiohttp.ClientPayloadError("stream ended without [DONE]")
    except (TimeoutError, aiohttp.ClientError) as exc:
        out.errors += 1
        out.first_error = out.first_error or f"{type(exc).__name__}: {exc}"
        return
    out.completed += 1
    if first is not None:
        out.ttft_ms.append((first - start) * 1000.0)
        out.worst_gap_ms.append(worst * 1000.0)


async def _run(
    url: str, body: bytes, headers: dict[str, str], streams: int, pid: int | None
) -> PacedResult:
    import aiohttp

    out = PacedResult(streams=streams)
    peak = [0]

    async def sample() -> None:
        while pid is not None:
            peak[0] = max(peak[0], rss_bytes(pid))
            await asyncio.sleep(0.2)

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(_one(session, url, body, headers, out) for _ in range(streams)))
    out.seconds = time.perf_counter() - started
    sampler.cancel()
    if pid is not None:
        out.rss_mb = max(peak[0], rss_bytes(pid)) / 2**20
    return out


def run_paced(
    url: str,
    body: bytes,
    headers: dict[str, str],
    streams: int,
    chunks_per_stream: int,
    gateway_pid: int | None = None,
) -> PacedResult:
    """Open `streams` streams at once, hold them to the end, and measure (see module doc).

    `gateway_pid` (None for the direct run) is the process whose CPU and peak RSS are read.
    """
    if gateway_pid is None:
        return asyncio.run(_run(url, body, headers, streams, None))
    # chunks relayed = completed streams x content chunks; known only afterwards, so the
    # CPU is read around the run and divided here
    cpu_before = cpu_seconds(gateway_pid)
    result = asyncio.run(_run(url, body, headers, streams, gateway_pid))
    result.chunks = result.completed * chunks_per_stream
    cpu = cpu_seconds(gateway_pid) - cpu_before
    result.cpu_us_per_chunk = cpu * 1e6 / result.chunks if result.chunks else None
    return result


def paced_table(rows: list[tuple[str, PacedResult]]) -> str:
    """One row per (target, stream count)."""
    headers = [
        "target",
        "streams",
        "completed",
        "errors",
        "TTFT p50/p99 ms",
        "worst gap p50/p99 ms",
        "gateway CPU us/chunk",
        "CPU / bare",
        "gateway RSS MB",
        "seconds",
    ]
    lines = [headers]
    floor = {r.streams: r.cpu_us_per_chunk for name, r in rows if name == "bare"}
    for name, r in rows:
        base = floor.get(r.streams)
        ratio = "-"
        if name not in ("direct", "bare") and base and r.cpu_us_per_chunk is not None:
            ratio = f"{r.cpu_us_per_chunk / base:.2f}"
        lines.append(
            [
                name,
                str(r.streams),
                str(r.completed),
                str(r.errors),
                f"{percentile(r.ttft_ms, 50):.0f}/{percentile(r.ttft_ms, 99):.0f}",
                f"{percentile(r.worst_gap_ms, 50):.0f}/{percentile(r.worst_gap_ms, 99):.0f}",
                "-" if r.cpu_us_per_chunk is None else f"{r.cpu_us_per_chunk:.0f}",
                ratio,
                "-" if r.rss_mb is None else f"{r.rss_mb:.1f}",
                f"{r.seconds:.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(headers))]
    text = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in lines
    ]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)
