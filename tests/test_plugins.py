"""Third-party plugins: found by entry point or by module path, and they take effect."""

from __future__ import annotations

import json
import os
import textwrap
import time

import openai
from tokone.core.cli import app
from typer.testing import CliRunner

FLAT_PRICE_PLUGIN = textwrap.dedent('''
    """A pricing rule: every call costs a flat 1234 micro-units, whatever its tokens."""
    from tokone.core.hookspecs import hookimpl
    from tokone.core.types import Charge


    @hookimpl(tryfirst=True)
    def price(call, usage, gateway):
        return Charge(1234, detail={"rule": "flat"})
''')


def make_distribution(root, module: str, entry_name: str) -> None:
    """An installed-looking distribution (a .dist-info with an entry point) under `root`."""
    (root / f"{module}.py").write_text(FLAT_PRICE_PLUGIN)
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[tokone]\n{entry_name} = {module}\n")


def wait_cost(gateway, requests: int) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = json.loads(gateway.cli("accounts", "show", "demo", "--json"))
        if data["usage"]["requests"] >= requests and data["held_micro"] == 0:
            return data
        time.sleep(0.05)
    raise AssertionError(data)


def chat(gateway, key: str) -> None:
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    sdk.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hi"}])


def test_entry_point_plugin_replaces_pricing(make_gateway, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "tokone_flat_price", "flat_price")
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.syspath_prepend(str(site))
    gateway = make_gateway()
    listing = gateway.cli("plugins", "list")
    assert "flat_price" in listing and "entry point" in listing
    key = gateway.funded_key()
    chat(gateway, key)
    chat(gateway, key)
    data = wait_cost(gateway, 2)
    assert data["usage"]["cost_micro"] == 2 * 1234
    assert data["balance_micro"] == 10_000_000 - 2 * 1234


def test_module_path_plugin_from_config_and_disable(make_gateway, tmp_path, monkeypatch):
    site = tmp_path / "mods"
    site.mkdir()
    (site / "my_pricing.py").write_text(FLAT_PRICE_PLUGIN)
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.syspath_prepend(str(site))
    gateway = make_gateway('[plugins]\nmodules = ["my_pricing"]\ndisable = ["usage_log"]\n')
    listing = gateway.cli("plugins", "list")
    assert "my_pricing" in listing and "config" in listing
    assert "usage_log" not in listing
    chat(gateway, gateway.funded_key())
    assert wait_cost(gateway, 1)["usage"]["cost_micro"] == 1234
    events = [
        json.loads(line)["event"] for line in gateway.log.splitlines() if line.startswith("{")
    ]
    assert "request" not in events  # (test_openai_chat shows the line when enabled)


def test_unimportable_plugin_module_is_a_config_error(tmp_path):
    path = tmp_path / "tokone.toml"
    path.write_text('[plugins]\nmodules = ["no_such_plugin_module"]\n')
    result = CliRunner().invoke(app, ["--config", str(path), "config", "check"])
    assert result.exit_code == 1
    assert "plugins.modules: cannot import plugin 'no_such_plugin_module'" in result.stderr


def test_every_hook_is_documented():
    from tokone.core import hookspecs

    for name in (
        "register_providers",
        "authenticate",
        "admit",
        "route",
        "price",
        "meter",
        "routes",
        "startup",
        "shutdown",
    ):
        doc = getattr(hookspecs, name).__doc__
        assert doc and len(doc.split()) > 10, name
