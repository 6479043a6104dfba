"""TokOne benchmark: each workload against the fake upstream directly and through TokOne.

    .venv/bin/python bench/run.py [--duration 10] [--workloads chat_c1,chat_c32,...]
                                  [--soak] [--json results.json] [--litellm /venv/bin/python]
                                  [--paced 200,1000,5000] [--tokone-workers N]

Starts ``tests/fake_upstream`` (zero delay, 16 chunks per stream) and ``tokone serve``
with the full default plugin pipeline on SQLite (key auth, admission with a balance hold,
pricing, ledger, usage record, one log line per request), loads each with wrk and prints
one row per workload. Afterwards TokOne is stopped gracefully and the database must show
exactly one usage record per successful request: a mismatch is a bench error (exit 1).
See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadgen import LoadResult, run_fixed_count, run_wrk
from paced import PacedResult, paced_table, run_paced
from services import (
    REPO,
    BenchError,
    Service,
    TokOne,
    available_adapters,
    bare_relay,
    cpu_total,
    fake_upstream,
    http_request,
    litellm,
    rss_total,
)

BENCH = Path(__file__).resolve().parent
SATURATED = 0.9
"""A process using this share of one core (or more) is treated as the bottleneck."""


@dataclass(frozen=True)
class Workload:
    """One request shape at one concurrency; the body and headers live in the Lua script."""

    name: str
    family: str
    path: str
    script: str
    connections: int
    done_marker: bytes
    """Bytes a complete, correct response contains (checked once before loading)."""
    about: str

    def body(self) -> bytes:
        """The request body, read from the script's `wrk.body = '...'` line."""
        for line in (BENCH / self.script).read_text().splitlines():
            if line.startswith("wrk.body = '"):
                return line.split("'", 1)[1].rsplit("'", 1)[0].encode()
        raise BenchError(f"{self.script}: no wrk.body line")

    def headers(self, key: str) -> dict[str, str]:
        """The headers the Lua script sends, for the probe."""
        headers = {"content-type": "application/json"}
        if self.family == "anthropic":
            headers |= {"x-api-key": key, "anthropic-version": "2023-06-01"}
        elif self.family == "gemini":
            headers["x-goog-api-key"] = key
        else:
            headers["authorization"] = f"Bearer {key}"
        return headers


_GEMINI_STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "chat_c1",
            "openai",
            "/v1/chat/completions",
            "chat.lua",
            1,
            b'"finish_reason":"stop"',
            "non-streaming chat completion, 1 connection",
        ),
        Workload(
            "chat_c32",
            "openai",
            "/v1/chat/completions",
            "chat.lua",
            32,
            b'"finish_reason":"stop"',
            "non-streaming chat completion, 32 connections",
        ),
        Workload(
            "chat_stream_c32",
            "openai",
            "/v1/chat/completions",
            "chat_stream.lua",
            32,
            b"data: [DONE]",
            "streamed chat, 16 chunks + usage chunk, 32 connections",
        ),
        Workload(
            "responses_sse_c32",
            "openai",
            "/v1/responses",
            "responses_sse.lua",
            32,
            b"response.completed",
            "streamed Responses API (SSE events), 32 connections",
        ),
        Workload(
            "anthropic_stream_c32",
            "anthropic",
            "/v1/messages",
            "anthropic_stream.lua",
            32,
            b"message_stop",
            "streamed Anthropic Messages, 32 connections",
        ),
        Workload(
            "gemini_stream_c32",
            "gemini",
            _GEMINI_STREAM,
            "gemini_stream.lua",
            32,
            b'"finishReason"',
            "streamed Gemini streamGenerateContent, 32 connections",
        ),
    )
}


@dataclass
class Target:
    """A server the workloads are run against."""

    name: str
    service: Service
    key: str


@dataclass
class Row:
    """One workload's results, keyed by target name."""

    workload: str
    results: dict[str, LoadResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class Tally:
    """Client-side counts of requests sent through TokOne, for the billing check."""

    ok: int = 0
    slack: int = 0

    def add(self, result: LoadResult, in_flight: int) -> None:
        """Count a run's successes; its errors and abandoned in-flight requests are slack."""
        self.ok += result.ok
        self.slack += result.errors + in_flight


def probe(target: Target, workload: Workload) -> str | None:
    """Send the workload's request once; None if the answer is complete, else why not."""
    url = target.service.url + workload.path
    try:
        status, body = http_request(url, workload.body(), workload.headers(target.key))
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if status != 200:
        return f"HTTP {status}: {body[:300].decode(errors='replace')}"
    if workload.done_marker not in body:
        return f"response lacks {workload.done_marker!r}: {body[-300:].decode(errors='replace')}"
    return None


def wait_idle(pids: list[int], timeout: float = 10.0) -> None:
    """Wait until `pids` use < 5% CPU over 200 ms (abandoned requests and ledger writes done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_total(pids)
        time.sleep(0.2)
        if cpu_total(pids) - before < 0.01:
            return


def measure(target: Target, workload: Workload, seconds: float, upstream: Service) -> LoadResult:
    """One wrk run with CPU of the target and the upstream, and the target's RSS after.

    A target with several workers has its CPU and RSS summed over them.
    """
    pids = {"server": target.service.pids, "upstream": [upstream.pid]}
    cpu_before = {name: cpu_total(p) for name, p in pids.items()}
    result, _ = run_wrk(
        target.service.url + workload.path,
        BENCH / workload.script,
        workload.connections,
        seconds,
        target.key,
    )
    for name, p in pids.items():
        result.extra[f"{name}_cpu"] = (cpu_total(p) - cpu_before[name]) / result.seconds
    result.extra["rss_mb"] = rss_total(pids["server"]) / 2**20
    return result


def fmt_ms(value: float) -> str:
    """Milliseconds with precision that suits the size."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with right-aligned columns (the first left-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        first, *rest = cells
        padded = (c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))
        return " | ".join([first.ljust(widths[0]), *padded])

    return "\n".join([line(headers), "-+-".join("-" * w for w in widths), *map(line, rows)])


def results_table(rows: list[Row], targets: list[str]) -> str:
    """The main table: throughput, latency and errors, direct vs TokOne (vs LiteLLM)."""
    headers = [
        "workload",
        "direct req/s",
        "tokone req/s",
        "ratio",
        "direct p50/p99 ms",
        "tokone p50/p99 ms",
        "added p50 ms",
        "errors d/t",
    ]
    if "litellm" in targets:
        headers += ["litellm req/s", "litellm p50/p99 ms", "litellm errors"]
    lines: list[list[str]] = []
    for row in rows:
        direct, tok = row.results.get("direct"), row.results.get("tokone")
        if direct is None or tok is None:
            lines.append([row.workload, "skipped", *[""] * (len(headers) - 2)])
            continue
        cells = [
            row.workload,
            f"{direct.rps:.0f}",
            f"{tok.rps:.0f}",
            f"{tok.rps / direct.rps:.2f}" if direct.rps else "-",
            f"{fmt_ms(direct.p50_ms)}/{fmt_ms(direct.p99_ms)}",
            f"{fmt_ms(tok.p50_ms)}/{fmt_ms(tok.p99_ms)}",
            fmt_ms(tok.p50_ms - direct.p50_ms),
            f"{direct.errors}/{tok.errors}",
        ]
        if "litellm" in targets:
            lite = row.results.get("litellm")
            cells += (
                [
                    f"{lite.rps:.0f}",
                    f"{fmt_ms(lite.p50_ms)}/{fmt_ms(lite.p99_ms)}",
                    str(lite.errors),
                ]
                if lite
                else ["skipped", "", ""]
            )
        lines.append(cells)
    return table(headers, lines)


def diagnostics_table(rows: list[Row], targets: list[str]) -> str:
    """CPU shares (of one core) of wrk, the upstream and the gateway, and gateway RSS."""
    headers = ["workload / target", "req/s", "wrk cpu", "upstream cpu", "gateway cpu", "RSS MB"]
    lines = []
    for row in rows:
        for name in targets:
            r = row.results.get(name)
            if r is None:
                continue
            gateway = name != "direct"
            lines.append(
                [
                    f"{row.workload} / {name}",
                    f"{r.rps:.0f}",
                    f"{r.client_cpu_share:.2f}",
                    f"{r.extra['upstream_cpu']:.2f}",
                    f"{r.extra['server_cpu']:.2f}" if gateway else "-",
                    f"{r.extra['rss_mb']:.1f}" if gateway else "-",
                ]
            )
    return table(headers, lines) if lines else "(no runs)"


def notes_for(rows: list[Row]) -> list[str]:
    """Why runs were skipped, and runs where wrk or the fake upstream was saturated."""
    notes = []
    for row in rows:
        for name, reason in row.skipped.items():
            notes.append(f"{row.workload}/{name} skipped: {reason[:300]}")
        for name, r in row.results.items():
            if r.client_cpu_share >= SATURATED:
                notes.append(
                    f"{row.workload}/{name}: wrk used {r.client_cpu_share:.2f} of a core; "
                    "it may be the bottleneck."
                )
            if name == "direct" and r.extra["upstream_cpu"] >= SATURATED:
                notes.append(
                    f"{row.workload}/direct: the fake upstream used "
                    f"{r.extra['upstream_cpu']:.2f} of a core; direct req/s is its ceiling."
                )
    return notes


def run_py_spy(
    pid: int, seconds: float, out: Path, rate: int = 100
) -> subprocess.Popen[bytes] | None:
    """Start `py-spy record --gil --format raw` on `pid` (None if py-spy is missing).

    `--gil` samples only the thread holding the GIL: in one gateway process that is where
    the interpreter's time goes (waits with the GIL released, e.g. SQLite I/O, are left out).
    It records for `seconds` or until :func:`stop_py_spy`.
    """
    exe = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if exe is None:
        print("  py-spy not found (pip install py-spy); not profiling", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--gil",
            "--format",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_py_spy(profiler: subprocess.Popen[bytes]) -> None:
    """End a recording now (SIGINT: py-spy writes what it sampled) and wait for the file."""
    if profiler.poll() is None:
        profiler.send_signal(signal.SIGINT)
    profiler.wait(timeout=60)


PROJECT_DIRS = ("core/", "plugins/", "providers/")
ENTRY_FRAMES = ("core/cli.py", "<frozen runpy>")


def _function(frame: str) -> tuple[str, str]:
    """`name (path:line)` -> (`name (path)`, path)."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    return f"{name} ({path})", path


def _package(path: str) -> str:
    """`sqlalchemy/engine/base.py` -> `sqlalchemy`; TokOne's own folders -> `tokone/<dir>`."""
    top = path.split("/", 1)[0]
    return f"tokone/{top}" if path.startswith(PROJECT_DIRS) else top.removesuffix(".py")


def profile_summary(raw: Path, count: int = 15) -> dict[str, list[tuple[float, str]]]:
    """Sum up a py-spy raw profile (shares of all samples, in %).

    Top functions by self time, self time per package, and TokOne's own functions by total
    (inclusive) time.
    """
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [_function(f) for f in stack.split(";")]
        samples += int(n)
        own[frames[-1][0]] += int(n)
        packages[_package(frames[-1][1])] += int(n)
        for func in {
            f
            for f, path in frames
            if path.startswith(PROJECT_DIRS) and not path.startswith(ENTRY_FRAMES)
        }:
            total[func] += int(n)
    share = 100.0 / (samples or 1)
    return {
        "self time": [(n * share, f) for f, n in own.most_common(count)],
        "self time by package": [(n * share, f) for f, n in packages.most_common(count)],
        "TokOne functions, total time": [(n * share, f) for f, n in total.most_common(count)],
    }


def run_workloads(
    args: argparse.Namespace,
    targets: list[Target],
    upstream: Service,
    tally: Tally,
    families: list[str],
    report: Callable[[str], None],
) -> list[Row]:
    """Probe, warm up and measure every selected workload on every target."""
    rows: list[Row] = []
    for name in args.workloads:
        workload = WORKLOADS[name]
        row = Row(name)
        rows.append(row)
        if workload.family not in families:
            why = f"TokOne has no {workload.family!r} adapter (providers/{workload.family}.py)"
            row.skipped = {"tokone": why}
            report(f"{name}: skipped, {why}")
            continue
        for target in targets:
            failure = probe(target, workload)
            if failure:
                row.skipped[target.name] = f"probe failed: {failure}"
                report(f"{name}/{target.name}: skipped, probe failed: {failure}")
                if target.name != "litellm":
                    break
                continue
            if target.name == "tokone":
                tally.ok += 1
            if args.warmup > 0:
                warm, _ = run_wrk(
                    target.service.url + workload.path,
                    BENCH / workload.script,
                    workload.connections,
                    args.warmup,
                    target.key,
                )
                if target.name == "tokone":
                    tally.add(warm, workload.connections)
                wait_idle(target.service.pids)
            profiler = None
            if args.py_spy and target.name == "tokone":
                out = Path(args.py_spy) / f"{name}.raw.txt"
                out.parent.mkdir(parents=True, exist_ok=True)
                profiler = run_py_spy(target.service.pid, args.duration, out, args.py_spy_rate)
            result = measure(target, workload, args.duration, upstream)
            if target.name == "tokone":
                tally.add(result, workload.connections)
            if profiler is not None:
                profiler.wait(timeout=60)
                report(f"{name}/tokone py-spy, share of GIL-holding samples ({out}):")
                for title, top in profile_summary(out).items():
                    report(f"  top {title}:")
                    for pct, func in top:
                        report(f"    {pct:5.1f}%  {func}")
            row.results[target.name] = result
            report(
                f"{name}/{target.name}: {result.rps:.0f} req/s, p50 {fmt_ms(result.p50_ms)} ms, "
                f"p99 {fmt_ms(result.p99_ms)} ms, {result.errors} errors"
                + (f", RSS {result.extra['rss_mb']:.1f} MB" if target.name != "direct" else "")
            )
            wait_idle(target.service.pids)
    return rows


def run_soak(
    args: argparse.Namespace, tokone: Target, tally: Tally, report: Callable[[str], None]
) -> list[dict[str, float]]:
    """Rounds of an exact number of non-streaming chats through TokOne, RSS between rounds."""
    workload = WORKLOADS["chat_c32"]
    url = tokone.service.url + workload.path
    body, headers = workload.body(), workload.headers(tokone.key)
    baseline = rss_total(tokone.service.pids) / 2**20
    report(
        f"soak: {args.soak_rounds} rounds x {args.soak_requests} requests, "
        f"{workload.connections} connections, RSS before: {baseline:.1f} MB"
    )
    rounds: list[dict[str, float]] = []
    previous = baseline
    for n in range(1, args.soak_rounds + 1):
        result = run_fixed_count(url, body, headers, args.soak_requests, workload.connections)
        tally.ok += result.ok
        tally.slack += result.errors
        wait_idle(tokone.service.pids)
        rss = rss_total(tokone.service.pids) / 2**20
        rounds.append(
            {
                "round": n,
                "requests": result.requests,
                "seconds": result.seconds,
                "rps": result.rps,
                "p50_ms": result.p50_ms,
                "p99_ms": result.p99_ms,
                "errors": result.errors,
                "rss_mb": rss,
                "rss_delta_mb": rss - previous,
                "client_cpu_share": result.client_cpu_share,
            }
        )
        previous = rss
        report(f"soak round {n}: {result.rps:.0f} req/s, {result.errors} errors, RSS {rss:.1f} MB")
    return rounds


def run_paced_mode(
    args: argparse.Namespace,
    targets: list[Target],
    upstream: Service,
    tally: Tally,
    report: Callable[[str], None],
) -> list[tuple[str, PacedResult]]:
    """For each stream count: hold that many paced chat streams against each target in turn.

    Gateway CPU and RSS are summed over the target's serving processes (TokOne's workers;
    LiteLLM's serving worker). LiteLLM is skipped above `--litellm-max-streams`.
    """
    workload = WORKLOADS["chat_stream_c32"]
    rows: list[tuple[str, PacedResult]] = []
    idle_rss: dict[str, float] = {}
    for streams in args.paced:
        for target in targets:
            if target.name == "litellm" and streams > (args.litellm_max_streams or streams):
                report(f"paced {streams}/litellm: skipped (--litellm-max-streams)")
                continue
            pids = None if target.name == "direct" else target.service.pids
            if pids and target.name not in idle_rss:
                if args.paced_warmup > 0:  # first calls pay imports, caches, pool set-up
                    warm = run_paced(
                        target.service.url + workload.path,
                        workload.body(),
                        workload.headers(target.key),
                        args.paced_warmup,
                        args.paced_chunks,
                    )
                    if target.name == "tokone":
                        tally.ok += warm.completed
                        tally.slack += warm.errors
                    wait_idle(pids)
                idle_rss[target.name] = rss_total(pids) / 2**20
            profiler = None
            if args.py_spy and target.name == "tokone":
                out = Path(args.py_spy) / f"paced_{streams}x{args.paced_chunks}.raw.txt"
                out.parent.mkdir(parents=True, exist_ok=True)
                # the whole run: stopped when the last stream has ended
                profiler = run_py_spy(target.service.pid, 600, out, args.py_spy_rate)
            report(f"paced {streams}/{target.name}: running")
            result = run_paced(
                target.service.url + workload.path,
                workload.body(),
                workload.headers(target.key),
                streams,
                args.paced_chunks,
                pids,
                clients=args.paced_clients,
                upstream_pid=upstream.pid,
            )
            result.idle_rss_mb = idle_rss.get(target.name)
            if profiler is not None:
                stop_py_spy(profiler)
                report(f"paced {streams}/tokone py-spy, share of GIL-holding samples ({out}):")
                for title, top in profile_summary(out).items():
                    report(f"  top {title}:")
                    for pct, func in top:
                        report(f"    {pct:5.1f}%  {func}")
            if target.name == "tokone":
                tally.ok += result.completed
                tally.slack += result.errors
            rows.append((target.name, result))
            report(
                f"paced {streams}/{target.name}: {result.completed} completed, "
                f"{result.errors} errors {result.error_kinds or ''} {result.first_error[:200]}"
                f" ({result.seconds:.1f} s, client cpu {result.client_cpu:.2f})"
            )
            if pids is not None:
                wait_idle(pids, timeout=60.0)
    return rows


def paced_notes(rows: list[tuple[str, PacedResult]]) -> list[str]:
    """Runs where a client process or the fake upstream was near a full core."""
    notes = []
    for name, r in rows:
        if r.client_cpu >= SATURATED:
            notes.append(
                f"paced {r.streams}/{name}: a client process used {r.client_cpu:.2f} of a core; "
                "the load generator may be the bottleneck (try --paced-clients 2)."
            )
        if r.upstream_cpu is not None and r.upstream_cpu >= SATURATED:
            notes.append(
                f"paced {r.streams}/{name}: the fake upstream used {r.upstream_cpu:.2f} of a core."
            )
    return notes


def soak_table(rounds: list[dict[str, float]]) -> str:
    """One row per soak round."""
    headers = [
        "round",
        "requests",
        "seconds",
        "req/s",
        "p50/p99 ms",
        "errors",
        "RSS MB",
        "RSS delta MB",
        "client cpu",
    ]
    return table(
        headers,
        [
            [
                str(r["round"]),
                str(r["requests"]),
                f"{r['seconds']:.1f}",
                f"{r['rps']:.0f}",
                f"{fmt_ms(r['p50_ms'])}/{fmt_ms(r['p99_ms'])}",
                str(r["errors"]),
                f"{r['rss_mb']:.1f}",
                f"{r['rss_delta_mb']:+.1f}",
                f"{r['client_cpu_share']:.2f}",
            ]
            for r in rounds
        ],
    )


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of load per workload and target (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of unmeasured load before each run (0: none; default 1)",
    )
    parser.add_argument(
        "--workloads",
        default=None,
        help=f"comma-separated subset of: {', '.join(WORKLOADS)} (default all)",
    )
    parser.add_argument(
        "--soak",
        action="store_true",
        help="soak mode: rounds of non-streaming chats through TokOne, RSS per "
        "round (runs only the soak unless --workloads is also given)",
    )
    parser.add_argument("--soak-rounds", type=int, default=3)
    parser.add_argument(
        "--soak-requests",
        type=int,
        default=100_000,
        help="requests per soak round (default 100000)",
    )
    parser.add_argument(
        "--paced",
        metavar="N,N",
        default=None,
        help="paced-stream mode: hold N concurrent streams (each count in turn) "
        "against a paced fake upstream, direct and through TokOne",
    )
    parser.add_argument(
        "--paced-first",
        type=float,
        default=0.3,
        help="paced mode: seconds before a stream's first chunk (default 0.3)",
    )
    parser.add_argument(
        "--paced-gap",
        type=float,
        default=0.1,
        help="paced mode: seconds between chunks (default 0.1)",
    )
    parser.add_argument(
        "--paced-chunks",
        type=int,
        default=16,
        help="paced mode: content chunks per stream (default 16)",
    )
    parser.add_argument(
        "--paced-warmup",
        type=int,
        default=10,
        help="paced mode: streams sent unmeasured through each gateway first (default 10)",
    )
    parser.add_argument(
        "--paced-clients",
        type=int,
        default=1,
        help="paced mode: client processes the streams are split over (default 1)",
    )
    parser.add_argument(
        "--litellm-max-streams",
        type=int,
        default=None,
        help="paced mode: run LiteLLM only at stream counts up to this (default: all)",
    )
    parser.add_argument(
        "--tokone-workers",
        type=int,
        default=1,
        help="tokone serve --workers N (default 1); CPU and RSS are summed over the workers",
    )
    parser.add_argument("--json", metavar="PATH", help="also write all results as JSON here")
    parser.add_argument(
        "--litellm",
        metavar="PYTHON",
        help="python of a venv with litellm[proxy]: add LiteLLM as a column",
    )
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="profile each TokOne run with py-spy (raw stacks into DIR) and "
        "print the top self-time functions",
    )
    parser.add_argument(
        "--py-spy-rate",
        type=int,
        default=100,
        help="py-spy samples per second (default 100)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the work directory (config, logs, SQLite db) afterwards",
    )
    args = parser.parse_args(argv)
    args.paced = [int(n) for n in args.paced.split(",") if n.strip()] if args.paced else []
    if args.workloads is None:
        args.workloads = [] if args.soak or args.paced else list(WORKLOADS)
    else:
        args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
        unknown = [w for w in args.workloads if w not in WORKLOADS]
        if unknown:
            parser.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 if every request succeeded and billing kept up."""
    args = parse_args(argv)
    needs_wrk = bool(args.workloads)
    if needs_wrk and shutil.which("wrk") is None and not Path("/usr/bin/wrk").exists():
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    def report(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="tokone-bench-"))
    report(f"work directory: {workdir}")
    services: list[Service] = []
    tokone: TokOne | None = None
    failed = True
    try:
        adapters = available_adapters()
        pacing = (
            [
                "--first-delay",
                str(args.paced_first),
                "--chunk-delay",
                str(args.paced_gap),
                "--chunks",
                str(args.paced_chunks),
            ]
            if args.paced
            else None
        )
        upstream = fake_upstream(workdir, pacing)
        services.append(upstream)
        tokone = TokOne(workdir, upstream.url, adapters, workers=args.tokone_workers)
        missing = sorted({"openai", "anthropic", "gemini"} - set(tokone.families))
        if missing:
            report(f"TokOne has no adapter for {', '.join(missing)}: those workloads are skipped")
        key = tokone.setup()
        services.append(tokone.start())
        targets = [Target("direct", upstream, key), Target("tokone", tokone.service, key)]
        if args.litellm:
            lite, master = litellm(args.litellm, workdir, upstream.url)
            services.append(lite)
            targets.append(Target("litellm", lite, master))
        report(
            f"fake upstream {upstream.url} (pid {upstream.pid}), TokOne {tokone.service.url} "
            f"(serving pids {tokone.service.pids})"
            + (f", LiteLLM serving pids {targets[2].service.pids}" if args.litellm else "")
        )
        tally = Tally()
        rows = run_workloads(args, targets, upstream, tally, tokone.families, report)
        rounds = run_soak(args, targets[1], tally, report) if args.soak else []
        paced: list[tuple[str, PacedResult]] = []
        if args.paced:
            # the floor: a bare ASGI relay (no auth, parsing or billing) on the same server
            bare = bare_relay(workdir, upstream.url)
            services.append(bare)
            report(f"bare relay {bare.url} (pid {bare.pid})")
            relays = [targets[0], Target("bare", bare, key), *targets[1:]]
            paced = run_paced_mode(args, relays, upstream, tally, report)
        clean_stop = tokone.stop()
        billing = tokone.billing()
        problems = billing.problems(tally.ok, tally.slack)
        if not clean_stop:
            problems.append("TokOne did not stop within 60 s (killed): pending writes were lost")
        names = [t.name for t in targets]
        notes = notes_for(rows) + paced_notes(paced)
        if rows:
            print("\nResults (req/s: higher is better; latency in ms; errors = socket + 4xx/5xx)")
            print(results_table(rows, names))
            print("\nWhere the CPU went (share of one core during the measured run)")
            print(diagnostics_table(rows, names))
        if paced:
            print(
                f"\nPaced streams (first chunk after {args.paced_first:g}s, then "
                f"{args.paced_chunks - 1} more {args.paced_gap:g}s apart; openai chat; "
                f"TokOne with {args.tokone_workers} worker(s), CPU and RSS summed over them; "
                f"{args.paced_clients} client process(es); {os.cpu_count()} cores shared by "
                "client, upstream and gateways)"
            )
            print(paced_table(paced))
        if rounds:
            print("\nSoak (non-streaming chat through TokOne, exact request counts)")
            print(soak_table(rounds))
        for note in notes:
            print(f"note: {note}")
        print(
            f"\nBilling: {billing.records} usage records ({billing.records_failed} failed, "
            f"{billing.records_estimated} estimated) for {tally.ok} successful client requests "
            f"(+ up to {tally.slack} in flight or failed); spent {billing.cost} micro-units; "
            f"{billing.log_lines} request log lines; open holds {billing.open_holds}: "
            + ("OK" if not problems else "MISMATCH")
        )
        for problem in problems:
            print(f"billing error: {problem}")
        request_errors = sum(r.errors for row in rows for r in row.results.values())
        request_errors += sum(int(r["errors"]) for r in rounds)
        request_errors += sum(r.errors for _, r in paced)
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "machine": machine(),
                        "args": {k: v for k, v in vars(args).items() if k != "json"},
                        "workloads": [
                            {
                                "workload": row.workload,
                                "skipped": row.skipped,
                                "results": {
                                    t: {**asdict(r), "errors": r.errors}
                                    for t, r in row.results.items()
                                },
                            }
                            for row in rows
                        ],
                        "soak": rounds,
                        "paced": [{"target": name, **asdict(r)} for name, r in paced],
                        "billing": {
                            **asdict(billing),
                            "client_ok": tally.ok,
                            "slack": tally.slack,
                            "problems": problems,
                        },
                        "notes": notes,
                    },
                    indent=2,
                    default=str,
                )
            )
            report(f"results written to {args.json}")
        failed = bool(problems or request_errors)
        if request_errors:
            print(f"bench error: {request_errors} requests failed")
        return 1 if failed else 0
    except BenchError as exc:
        report(f"bench setup failed: {exc}")
        return 2
    finally:
        for service in reversed(services):
            service.stop()
        if failed or args.keep:
            report(f"kept {workdir} (config, logs, database)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
