"""The processes a benchmark run drives: the fake upstream, TokOne and (optionally) LiteLLM.

Each runs as its own subprocess with its output in a log file under the run's work directory.
Process statistics (resident memory, CPU time) come from psutil when it is installed and from
``/proc`` otherwise; :func:`serving_pid` finds the process that actually holds the listening
socket, so a launcher that forks workers is measured by the worker, not by the launcher.
"""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAKE_UPSTREAM = REPO / "tests" / "fake_upstream"
ACCOUNT = "bench"
TOPUP = "1000000"
"""Currency units topped up on the bench account: far more than any run can spend."""

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
"""The model each family's workloads call (the Lua scripts name the same ones)."""

_CLK_TCK = os.sysconf("SC_CLK_TCK")

try:
    import psutil
except ImportError:
    psutil = None


class BenchError(RuntimeError):
    """A service did not start, stop or answer the way the benchmark needs."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` in bytes."""
    if psutil is not None:
        return int(psutil.Process(pid).memory_info().rss)
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used so far (its threads included)."""
    if psutil is not None:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc/PID/task/*/children)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                found.extend(int(p) for p in children.read().split())
        except FileNotFoundError:
            continue
    return found


def _listen_inodes(port: int) -> set[str]:
    """Socket inodes listening on `port` (IPv4 and IPv6)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as rows:
                next(rows)
                for row in rows:
                    cols = row.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except FileNotFoundError:
            continue
    return inodes


def _holds_socket(pid: int, targets: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, PermissionError):
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in targets:
            return True
    return False


def serving_pids(root: int, port: int) -> list[int]:
    """The processes under `root` (itself included) that serve `port`, sorted.

    The deepest processes holding the listening socket win, so `tokone serve --workers N`
    gives its N uvicorn workers (not the supervisor that also holds the socket) and a
    launcher that forks its server gives the server. Falls back to `[root]` when /proc is
    not readable.
    """
    targets = _listen_inodes(port)
    tree: list[tuple[int, int]] = []  # (depth, pid)
    stack = [(0, root)]
    while stack:
        depth, pid = stack.pop()
        tree.append((depth, pid))
        stack.extend((depth + 1, child) for child in _children(pid))
    holders = [(depth, pid) for depth, pid in tree if targets and _holds_socket(pid, targets)]
    if not holders:
        return [root]
    deepest = max(depth for depth, _ in holders)
    return sorted(pid for depth, pid in holders if depth == deepest)


def serving_pid(root: int, port: int) -> int:
    """The one process that serves `port` (the first, if several workers do)."""
    return serving_pids(root, port)[0]


def cpu_total(pids: list[int]) -> float:
    """:func:`cpu_seconds` summed over `pids` (the workers of one server)."""
    return sum(cpu_seconds(pid) for pid in pids)


def rss_total(pids: list[int]) -> int:
    """:func:`rss_bytes` summed over `pids` (shared pages are counted once per process)."""
    return sum(rss_bytes(pid) for pid in pids)


def http_request(
    url: str, body: bytes | None, headers: dict[str, str], timeout: float = 30.0
) -> tuple[int, bytes]:
    """One HTTP request (POST when `body` is given, else GET); returns (status, whole body)."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
    try:
        conn.request("POST" if body is not None else "GET", "/" + path, body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Service:
    """A server subprocess with its log file; `url` is its root URL."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    cwd: Path
    env: dict[str, str | None]
    """Added to the environment; a None value removes the variable."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str, timeout: float = 60.0) -> Service:
        """Start the process and wait until GET `ready_path` answers with any HTTP status."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env={k: v for k, v in {**os.environ, **self.env}.items() if v is not None},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                http_request(self.url + ready_path, None, {}, timeout=2.0)
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.name} did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        """The pid of the process serving the port (a worker, if the launcher forks one)."""
        return self.pids[0]

    @property
    def pids(self) -> list[int]:
        """Every process serving the port (all the workers of a multi-worker server)."""
        if self.process is None:
            raise BenchError(f"{self.name} is not running")
        return serving_pids(self.process.pid, self.port)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM and wait; SIGKILL the process group after `timeout`. True if it exited."""
        if self.process is None or self.process.poll() is not None:
            return True
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return False

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the service's log."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def fake_upstream(workdir: Path, extra: list[str] | None = None) -> Service:
    """The fake upstream (`tests/fake_upstream --no-record`, zero delay unless `extra`
    paces it, e.g. ``["--first-delay", "0.3"]``), started."""
    port = free_port()
    return Service(
        name="fake upstream",
        argv=[
            sys.executable,
            str(FAKE_UPSTREAM),
            "--port",
            str(port),
            "--no-record",
            *(extra or []),
        ],
        port=port,
        log_path=workdir / "fake_upstream.log",
        cwd=REPO,
        env={},
    ).start("/v1/models")


def bare_relay(workdir: Path, upstream_url: str) -> Service:
    """`bench/bare_relay.py` in front of the fake upstream (the floor column), started."""
    port = free_port()
    return Service(
        name="bare relay",
        argv=[
            sys.executable,
            str(REPO / "bench" / "bare_relay.py"),
            "--port",
            str(port),
            "--upstream",
            upstream_url,
        ],
        port=port,
        log_path=workdir / "bare_relay.log",
        cwd=REPO,
        env={},
    ).start("/v1/models")


def available_adapters() -> set[str]:
    """Adapter names the installed TokOne registers (`[[providers]] adapter = ...`)."""
    from tokone.core.config import parse_config
    from tokone.core.plugins import make_plugin_manager

    pm, _ = make_plugin_manager(parse_config({}, "<bench>"))
    names: set[str] = set()
    for found in pm.hook.register_providers():
        names.update(found or {})
    return names


_TOKONE_CONFIG = """\
# Generated by bench/run.py: the full default plugin pipeline on SQLite.
[server]
host = "127.0.0.1"
port = {port}
workers = {workers}
secret = "{secret}"
log_level = "info"

[database]
url = "sqlite:///{database}"
{providers}
[prices."gpt-4o-mini"]
input = 0.15
output = 0.60
cached_input = 0.075

[prices."claude-haiku-4-5"]
input = 1.00
output = 5.00
cached_input = 0.10

[prices."gemini-2.5-flash"]
input = 0.30
output = 2.50
cached_input = 0.075
"""

_PROVIDER = """
[[providers]]
name = "fake-{adapter}"
adapter = "{adapter}"
base_url = "{base_url}"
api_key = "bench-upstream-key"
models = ["{model}"]
"""


@dataclass
class Billing:
    """What the database says the bench account was charged (read after the gateway stopped)."""

    records: int
    records_failed: int
    records_unpriced: int
    records_estimated: int
    cost: int
    captures: int
    topups: int
    balance: int
    held: int
    open_holds: int
    log_lines: int

    def problems(self, client_ok: int, slack: int) -> list[str]:
        """Invariant violations, given the successes clients saw and the in-flight allowance.

        Every success a client saw must have exactly one usage record; requests abandoned
        when a load run stopped (at most `slack`) may have one too.
        """
        found: list[str] = []
        if not client_ok <= self.records <= client_ok + slack:
            found.append(
                f"usage records {self.records} outside [{client_ok}, {client_ok + slack}] "
                "(successful client requests .. plus requests in flight when a run stopped)"
            )
        if self.records_unpriced:
            found.append(f"{self.records_unpriced} successful usage records with cost 0")
        if self.cost != -self.captures:
            found.append(f"usage cost {self.cost} != captured {-self.captures}")
        if self.balance != self.topups + self.captures:
            found.append(f"balance {self.balance} != ledger sum {self.topups + self.captures}")
        if self.held or self.open_holds:
            found.append(f"{self.open_holds} holds still open ({self.held} held)")
        if self.log_lines != self.records:
            found.append(f"{self.log_lines} request log lines != {self.records} usage records")
        return found


class TokOne:
    """A TokOne gateway on SQLite in `workdir`, set up with a funded account and a key."""

    def __init__(
        self, workdir: Path, upstream_url: str, adapters: set[str], workers: int = 1
    ) -> None:
        self.workdir = workdir
        self.workers = workers
        self.database = workdir / "tokone.db"
        self.config_path = workdir / "tokone.bench.toml"
        self.log_path = workdir / "tokone.log"
        self.families = sorted(adapters & set(MODELS))
        self.port = free_port()
        providers = "".join(
            _PROVIDER.format(
                adapter=family,
                base_url=upstream_url + ("/v1" if family == "openai" else ""),
                model=MODELS[family],
            )
            for family in self.families
        )
        self.config_path.write_text(
            _TOKONE_CONFIG.format(
                port=self.port,
                workers=workers,
                secret=secrets.token_hex(16),
                database=self.database,
                providers=providers,
            )
        )
        self.key = ""
        self.service: Service | None = None

    def cli(self, *args: str) -> str:
        """Run `tokone --config <bench config> ARGS`; return stdout or raise with its stderr."""
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tokone.core.cli.main",
                "--config",
                str(self.config_path),
                *args,
            ],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(f"tokone {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
        return result.stdout

    def setup(self) -> str:
        """Create the bench account, top it up and create its key (returned)."""
        self.cli("accounts", "create", ACCOUNT)
        self.cli("accounts", "topup", ACCOUNT, TOPUP)
        self.key = self.cli("keys", "create", "--account", ACCOUNT).strip().splitlines()[-1]
        return self.key

    def start(self) -> Service:
        """`tokone serve --port P --workers N`, logging to tokone.log; waits for /healthz.

        With several workers it also waits until all N hold the listening socket, so their
        pids (:attr:`Service.pids`) can be measured together.
        """
        argv = [sys.executable, "-m", "tokone.core.cli.main", "--config", str(self.config_path)]
        self.service = Service(
            name="tokone",
            argv=[*argv, "serve", "--port", str(self.port), "--workers", str(self.workers)],
            port=self.port,
            log_path=self.log_path,
            cwd=self.workdir,
            env={"PYTHONUNBUFFERED": "1"},
        ).start("/healthz")
        deadline = time.monotonic() + 60.0
        while self.workers > 1 and len(self.service.pids) < self.workers:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"tokone: {len(self.service.pids)} of {self.workers} workers serving "
                    f"after 60 s:\n{self.service.log_tail()}"
                )
            time.sleep(0.2)
        return self.service

    def stop(self) -> bool:
        """Stop the gateway gracefully (pending ledger writes flush); True if it exited cleanly."""
        return self.service.stop(timeout=60.0) if self.service else True

    def billing(self) -> Billing:
        """Read the bench account's usage records, ledger and holds (after :meth:`stop`)."""
        with sqlite3.connect(self.database) as db:
            account_id, balance, held = db.execute(
                "SELECT id, balance, held FROM accounts WHERE name = ?", (ACCOUNT,)
            ).fetchone()
            records, failed, unpriced, estimated, cost = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(status >= 400), 0), "
                "COALESCE(SUM(status < 400 AND cost <= 0), 0), COALESCE(SUM(estimated), 0), "
                "COALESCE(SUM(cost), 0) FROM usage_records WHERE account_id = ?",
                (account_id,),
            ).fetchone()
            captures, topups = db.execute(
                "SELECT COALESCE(SUM(CASE WHEN kind = 'capture' THEN amount END), 0), "
                "COALESCE(SUM(CASE WHEN kind <> 'capture' THEN amount END), 0) "
                "FROM ledger_entries WHERE account_id = ?",
                (account_id,),
            ).fetchone()
            (open_holds,) = db.execute(
                "SELECT COUNT(*) FROM holds WHERE account_id = ?", (account_id,)
            ).fetchone()
        with self.log_path.open(encoding="utf-8", errors="replace") as log:
            log_lines = sum(1 for line in log if '"event":"request"' in line)
        return Billing(
            records=records,
            records_failed=failed,
            records_unpriced=unpriced,
            records_estimated=estimated,
            cost=cost,
            captures=captures,
            topups=topups,
            balance=balance,
            held=held,
            open_holds=open_holds,
            log_lines=log_lines,
        )


_LITELLM_CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {upstream}/v1
      api_key: bench-upstream-key
  - model_name: claude-haiku-4-5
    litellm_params:
      model: anthropic/claude-haiku-4-5
      api_base: {upstream}
      api_key: bench-upstream-key
  - model_name: gemini-2.5-flash
    litellm_params:
      model: gemini/gemini-2.5-flash
      api_base: {upstream}/v1beta
      api_key: bench-upstream-key
litellm_settings:
  drop_params: false
  set_verbose: false
general_settings:
  master_key: {master_key}
"""


def litellm(python: str, workdir: Path, upstream_url: str) -> tuple[Service, str]:
    """LiteLLM's proxy (master key only, no database) in front of the fake upstream, started.

    `python` is the interpreter of a separate venv with `litellm[proxy]` installed; returns
    the service and its master key.
    """
    master_key = "sk-bench-" + secrets.token_hex(24)
    config = workdir / "litellm.yaml"
    config.write_text(_LITELLM_CONFIG.format(upstream=upstream_url, master_key=master_key))
    script = Path(python).parent / "litellm"
    launcher = (
        [str(script)] if script.exists() else [python, "-c", "import litellm; litellm.run_server()"]
    )
    port = free_port()
    service = Service(
        name="litellm",
        argv=[
            *launcher,
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        port=port,
        log_path=workdir / "litellm.log",
        cwd=workdir,
        env={
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_MASTER_KEY": master_key,
            "DATABASE_URL": None,
            "PYTHONUNBUFFERED": "1",
        },
    ).start("/health/liveliness", timeout=180.0)
    return service, master_key
