"""Paced-stream load: hold N concurrent streams against a paced fake upstream.

The fake upstream (``--first-delay``, ``--chunk-delay``, ``--chunks``) answers every stream
like a slow model: headers at once, the first content chunk after the first delay, then one
chunk per chunk delay. All N streams are opened at once and held to the end; per stream the
client records the time to the first content chunk (TTFT) and the worst gap between two
reads after it. Gateway CPU (``/proc/<pid>/stat``, summed over its serving processes) is
divided by the chunks relayed. With ``clients > 1`` the N streams are split over that many
client processes (forked, each with its own event loop), so the load generator is not one
core's worth of Python.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import threading
import time
from dataclasses import dataclass, field

from services import cpu_seconds, cpu_total, rss_total

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
    """Peak resident memory of the gateway (summed over its workers) during the run."""
    idle_rss_mb: float | None = None
    """The gateway's resident memory before its first paced run (for RSS per stream)."""
    first_error: str = ""
    error_kinds: dict[str, int] = field(default_factory=dict)
    """Errors by kind (HTTP status or exception name)."""
    clients: int = 1
    client_cpu: float = 0.0
    """CPU share of one core used by the busiest client process during the run."""
    upstream_cpu: float | None = None
    """CPU share of one core used by the fake upstream during the run."""
    workers: int = 1
    """Processes the gateway's CPU and RSS are summed over."""

    @property
    def rss_per_stream_kb(self) -> float | None:
        """(peak RSS - idle RSS) / streams, in KiB."""
        if self.rss_mb is None or self.idle_rss_mb is None or not self.streams:
            return None
        return (self.rss_mb - self.idle_rss_mb) * 1024 / self.streams

    def merge(self, other: PacedResult) -> None:
        """Add another client process's share of the same run."""
        self.streams += other.streams
        self.completed += other.completed
        self.errors += other.errors
        self.ttft_ms += other.ttft_ms
        self.worst_gap_ms += other.worst_gap_ms
        self.seconds = max(self.seconds, other.seconds)
        self.first_error = self.first_error or other.first_error
        for kind, n in other.error_kinds.items():
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + n
        self.client_cpu = max(self.client_cpu, other.client_cpu)


def _error(out: PacedResult, kind: str, text: str) -> None:
    out.errors += 1
    out.error_kinds[kind] = out.error_kinds.get(kind, 0) + 1
    out.first_error = out.first_error or text


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
                _error(out, str(response.status), f"{response.status} {await response.text()}")
                return
            tail = data = b""
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
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        _error(out, type(exc).__name__, f"{type(exc).__name__}: {exc}")
        return
    out.completed += 1
    if first is not None:
        out.ttft_ms.append((first - start) * 1000.0)
        out.worst_gap_ms.append(worst * 1000.0)


async def _run(url: str, body: bytes, headers: dict[str, str], streams: int) -> PacedResult:
    """One client: open `streams` streams at once on one session and hold them to the end."""
    import aiohttp

    out = PacedResult(streams=streams)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    cpu = time.process_time()
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(_one(session, url, body, headers, out) for _ in range(streams)))
    out.seconds = time.perf_counter() - started
    out.client_cpu = (time.process_time() - cpu) / out.seconds
    return out


def _client(url: str, body: bytes, headers: dict[str, str], streams: int) -> PacedResult:
    """A client process's work (module level, so multiprocessing can run it)."""
    try:
        from uvloop import new_event_loop
    except ImportError:
        from asyncio import new_event_loop
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_run(url, body, headers, streams))


def run_paced(
    url: str,
    body: bytes,
    headers: dict[str, str],
    streams: int,
    chunks_per_stream: int,
    gateway_pids: list[int] | None = None,
    clients: int = 1,
    upstream_pid: int | None = None,
) -> PacedResult:
    """Open `streams` streams at once, hold them to the end, and measure (see module doc).

    `gateway_pids` (None for the direct run) are the processes whose CPU and peak RSS are
    read (summed: all the workers of one gateway); `clients` client processes share the
    streams; `upstream_pid`'s CPU is reported too.
    """
    pids = gateway_pids or []
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while pids and not done.is_set():
            peak[0] = max(peak[0], rss_total(pids))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    cpu_before = cpu_total(pids)
    upstream_before = cpu_seconds(upstream_pid) if upstream_pid else 0.0
    started = time.perf_counter()
    sampler.start()
    shares = [streams // clients + (i < streams % clients) for i in range(clients)]
    if clients == 1:
        result = _client(url, body, headers, streams)
    else:
        with multiprocessing.get_context("fork").Pool(clients) as pool:
            parts = pool.starmap(_client, [(url, body, headers, n) for n in shares])
        result = PacedResult(streams=0)
        for part in parts:
            result.merge(part)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    result.clients = clients
    result.workers = max(1, len(pids))
    if upstream_pid:
        result.upstream_cpu = (cpu_seconds(upstream_pid) - upstream_before) / elapsed
    if pids:
        # chunks relayed = completed streams x content chunks; known only afterwards
        result.chunks = result.completed * chunks_per_stream
        cpu = cpu_total(pids) - cpu_before
        result.cpu_us_per_chunk = cpu * 1e6 / result.chunks if result.chunks else None
        result.rss_mb = max(peak[0], rss_total(pids)) / 2**20
    return result


def _ms(values: list[float]) -> str:
    return f"{percentile(values, 50):.0f}/{percentile(values, 99):.0f}"


def paced_table(rows: list[tuple[str, PacedResult]]) -> str:
    """One row per (target, stream count), as a Markdown table.

    "added" = this target's percentile minus the direct run's at the same stream count.
    CPU and RSS of a gateway with several workers are summed over them (`workers` column).
    """
    headers = [
        "target",
        "streams",
        "completed",
        "errors",
        "TTFT p50/p99 ms",
        "added TTFT p50/p99",
        "worst gap p50/p99 ms",
        "added gap p50/p99",
        "gateway CPU us/chunk",
        "CPU / bare",
        "workers",
        "gateway RSS MB",
        "RSS/stream KB",
        "client cpu",
        "upstream cpu",
        "seconds",
    ]
    lines = [headers]
    floor = {r.streams: r.cpu_us_per_chunk for name, r in rows if name == "bare"}
    direct = {r.streams: r for name, r in rows if name == "direct"}

    def added(values: list[float], base: list[float] | None) -> str:
        if not values or not base:
            return "-"
        p50 = percentile(values, 50) - percentile(base, 50)
        p99 = percentile(values, 99) - percentile(base, 99)
        return f"{p50:+.0f}/{p99:+.0f}"

    for name, r in rows:
        base = floor.get(r.streams)
        ratio = "-"
        if name not in ("direct", "bare") and base and r.cpu_us_per_chunk is not None:
            ratio = f"{r.cpu_us_per_chunk / base:.2f}"
        d = direct.get(r.streams) if name != "direct" else None
        per_stream = r.rss_per_stream_kb
        lines.append(
            [
                name,
                str(r.streams),
                str(r.completed),
                str(r.errors),
                _ms(r.ttft_ms),
                added(r.ttft_ms, d.ttft_ms if d else None),
                _ms(r.worst_gap_ms),
                added(r.worst_gap_ms, d.worst_gap_ms if d else None),
                "-" if r.cpu_us_per_chunk is None else f"{r.cpu_us_per_chunk:.0f}",
                ratio,
                "-" if name == "direct" else str(r.workers),
                "-" if r.rss_mb is None else f"{r.rss_mb:.1f}",
                "-" if per_stream is None else f"{per_stream:.1f}",
                f"{r.client_cpu:.2f}" + (f" x{r.clients}" if r.clients > 1 else ""),
                "-" if r.upstream_cpu is None else f"{r.upstream_cpu:.2f}",
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
