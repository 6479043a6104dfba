"""Claude Code and Codex CLI through a channel of the *other* family, with one tool turn each.

Opt-in (they are npm packages, not Python ones): install them and point
``TOKONE_CLIENTS_BIN`` at their ``node_modules/.bin``::

    mkdir -p /tmp/clients && cd /tmp/clients && npm install @anthropic-ai/claude-code @openai/codex
    TOKONE_CLIENTS_BIN=/tmp/clients/node_modules/.bin \
        .venv/bin/pytest tests/test_translate_clients.py

The upstream (`ToolUpstream` from test_translate_tools) asks the client to run its shell tool
with ``echo translated-ok`` and answers ``It is sunny.`` once the tool's result comes back:
Claude Code (Anthropic Messages) goes to an OpenAI-compatible channel, Codex CLI (the
Responses API over SSE) to a chat-only OpenAI-compatible channel and to an Anthropic one.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY_ACCOUNTS, new_key
from ledger_checks import assert_ledger_consistent, database_url, wait_settled
from test_translate_tools import ANSWER, ToolUpstream, start_tools_gateway

BIN = os.environ.get("TOKONE_CLIENTS_BIN", "")
pytestmark = pytest.mark.skipif(
    not (BIN and Path(BIN, "claude").exists() and Path(BIN, "codex").exists()),
    reason="set TOKONE_CLIENTS_BIN to a node_modules/.bin with claude and codex",
)
MARKER = "translated-ok"


class ShellUpstream(ToolUpstream):
    """Calls the client's own shell tool, with the argument shape that tool declares."""

    def calls_for(self, offered: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """Bash (Claude Code) or shell / shell_command / exec_command (Codex)."""
        if "Bash" in offered:
            return [("Bash", {"command": f"echo {MARKER}", "description": "print a word"})]
        if "shell" in offered:
            return [("shell", {"command": ["echo", MARKER]})]
        if "shell_command" in offered:
            return [("shell_command", {"command": f"echo {MARKER}"})]
        if "exec_command" in offered:
            return [("exec_command", {"cmd": f"echo {MARKER}"})]
        return []


@pytest.fixture(scope="module")
def shell_upstream() -> Iterator[ShellUpstream]:
    up = ShellUpstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, shell_upstream: ShellUpstream):
    started = start_tools_gateway(tmp_path_factory.mktemp("clients"), shell_upstream)
    yield started
    started.stop()


def tool_results(upstream: ShellUpstream) -> list[str]:
    """Every tool result the upstream received (any family), as text."""
    found = []
    for _, body in upstream.requests:
        for message in body.get("messages") or []:
            if message.get("role") == "tool":
                found.append(str(message.get("content")))
            content = message.get("content")
            if isinstance(content, list):
                found += [str(b.get("content")) for b in content if b.get("type") == "tool_result"]
    return found


def test_claude_code_runs_a_tool_through_an_openai_channel(gateway, shell_upstream, tmp_path):
    key = new_key(gateway)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_AUTH_TOKEN": key,
        "ANTHROPIC_MODEL": "gpt-tools",
        "ANTHROPIC_SMALL_FAST_MODEL": "gpt-tools",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "gpt-tools",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    done = subprocess.run(
        [
            f"{BIN}/claude",
            "-p",
            "say the word",
            "--output-format",
            "json",
            "--allowedTools",
            "Bash",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert ANSWER in done.stdout
    assert any(MARKER in r for r in tool_results(shell_upstream)), shell_upstream.requests[-1]
    assert_billed(gateway, key)


def assert_billed(gateway, key: str) -> None:
    """Every call of the key's account succeeded, was charged, and the ledger agrees."""
    url, account = database_url(gateway), KEY_ACCOUNTS[key]
    state = wait_settled(url, account, 2)
    assert all(status == 200 and cost > 0 for status, cost in state.usage.values()), state.usage
    assert_ledger_consistent(url, account)


@pytest.mark.parametrize("model", ["chatonly-tools", "claude-tools"])
def test_codex_runs_a_tool_through_a_chat_only_or_anthropic_channel(
    gateway, shell_upstream, tmp_path, model
):
    key = new_key(gateway)
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(
        f"""
model = "{model}"
model_provider = "tokone"

[model_providers.tokone]
name = "TokOne"
base_url = "{gateway.url}/v1"
env_key = "TOKONE_KEY"
wire_api = "responses"
"""
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "TOKONE_KEY": key,
    }
    done = subprocess.run(
        [
            f"{BIN}/codex",
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "say the word",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert ANSWER in done.stdout + done.stderr
    assert any(MARKER in r for r in tool_results(shell_upstream)), shell_upstream.requests[-1]
    assert_billed(gateway, key)
