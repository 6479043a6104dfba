"""Third-party plugins: found by entry point or by module path, and they take effect."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import TEST_PLUGINS, importable, wait_for_usage
from tokone.core.cli.main import app
from typer.testing import CliRunner

MIN_CHARGE_TOML = '[plugins]\nmodules = ["min_charge"]\n\n[plugins.min_charge]\n'

FLAT_PRICE_PLUGIN = textwrap.dedent('''
    """A pricing rule: every call costs a flat 1234 micro-units, whatever its tokens."""
    from tokone.core.hookspecs import hookimpl
    from tokone.core.types import Charge


    @hookimpl(tryfirst=True)
    def price(call, usage, gateway):
        return Charge(1234, detail={"rule": "flat"})
''')


def make_distribution(root, module: str, entry_name: str) -> None:
    """Make `module` under `root` look installed: a .dist-info naming it as an entry point."""
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[tokone]\n{entry_name} = {module}\n")


def chat(gateway, key: str) -> None:
    gateway.openai_client(key).chat.completions.create(
        model="mock-1", messages=[{"role": "user", "content": "hi"}]
    )


def test_entry_point_plugin_replaces_pricing(make_gateway, plugin_modules):
    site = plugin_modules(tokone_flat_price=FLAT_PRICE_PLUGIN)
    make_distribution(site, "tokone_flat_price", "flat_price")
    gateway = make_gateway()
    listing = gateway.cli("plugins", "list")
    assert "flat_price" in listing and "entry point" in listing
    key = gateway.funded_key()
    chat(gateway, key)
    chat(gateway, key)
    data = wait_for_usage(gateway, 2)
    assert data["usage"]["cost_micro"] == 2 * 1234
    assert data["balance_micro"] == 10_000_000 - 2 * 1234


def test_module_path_plugin_from_config_and_disable(make_gateway, plugin_modules):
    plugin_modules(my_pricing=FLAT_PRICE_PLUGIN)
    gateway = make_gateway('[plugins]\nmodules = ["my_pricing"]\ndisable = ["usage_log"]\n')
    listing = gateway.cli("plugins", "list")
    assert "my_pricing" in listing and "config" in listing
    assert "usage_log" not in listing
    chat(gateway, gateway.funded_key())
    assert wait_for_usage(gateway, 1)["usage"]["cost_micro"] == 1234
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
    """Every hookspec (found in the module, not listed here) has a docstring worth the
    name and is named in README's "Writing a plugin" section."""
    from tokone.core import hookspecs

    specs = [
        name
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, f"{hookspecs.PROJECT}_spec")
    ]
    assert {"price", "meter", "plugin_config_schema", "register_commands"} <= set(specs)
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Writing a plugin") :]
    section = section[: section.index("\n## ", 1)]
    for name in specs:
        doc = getattr(hookspecs, name).__doc__
        assert doc and len(doc.split()) > 10, name
        assert f"`{name}`" in section, name


def cli(*args: str) -> tuple[int, str, str]:
    """Run `tokone ARGS` in-process: exit code, stdout, stderr."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_plugin_settings_and_command_from_its_own_table(make_gateway, monkeypatch):
    """A plugin loaded by module path takes `[plugins.min_charge] amount` from tokone.toml:
    the gateway charges that minimum, and the plugin's own `tokone min-charge` command
    prints it."""
    importable(monkeypatch, TEST_PLUGINS)
    gateway = make_gateway(MIN_CHARGE_TOML + 'amount = "0.001"\n')
    assert gateway.cli("min-charge") == "minimum charge per call: 0.001 (1000 micro-units)\n"
    assert "min-charge" in gateway.cli("--help")
    listing = gateway.cli("plugins", "list")
    line = next(row for row in listing.splitlines() if row.startswith("min_charge "))
    assert "plugin_config_schema" in line and "register_commands" in line and "price" in line
    chat(gateway, gateway.funded_key())
    data = wait_for_usage(gateway, 1)
    assert data["usage"]["cost_micro"] == 1000  # the mock's tokens alone cost 28
    assert data["balance_micro"] == 10_000_000 - 1000


def test_plugin_settings_default_and_gateway_plugin_config(tmp_path, monkeypatch):
    """No table: the schema's defaults; a plugin without a schema has no settings."""
    from tokone.core.config import parse_config
    from tokone.core.gateway import Gateway

    importable(monkeypatch, TEST_PLUGINS)
    database = f"sqlite:///{tmp_path / 'x.db'}"
    gateway = Gateway(
        parse_config({"database": {"url": database}, "plugins": {"modules": ["min_charge"]}})
    )
    assert gateway.plugin_config("min_charge").micro == 5000
    assert gateway.plugin_config("usage_log") is None
    assert gateway.plugin_config("not_loaded") is None
    gateway.engine.dispose()
    path = tmp_path / "tokone.toml"
    path.write_text(f'[database]\nurl = "{database}"\n' + MIN_CHARGE_TOML)
    code, out, _err = cli("--config", str(path), "min-charge")
    assert (code, out) == (0, "minimum charge per call: 0.005000 (5000 micro-units)\n")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (MIN_CHARGE_TOML + 'amout = "0.001"\n', "key plugins.min_charge.amout: unknown key"),
        (MIN_CHARGE_TOML + "amount = 1\n", "key plugins.min_charge.amount: expected `str`"),
        (MIN_CHARGE_TOML + 'amount = "abc"\n', "key plugins.min_charge: amount: not an amount"),
        (
            MIN_CHARGE_TOML + "[plugins.not_loaded]\nx = 1\n",
            "key plugins.not_loaded: no plugin named 'not_loaded' is loaded",
        ),
        (
            "[plugins.usage_log]\nx = 1\n",
            "key plugins.usage_log: plugin 'usage_log' takes no settings",
        ),
        ('[plugins]\nmodulse = ["min_charge"]\n', "key plugins.modulse: unknown key"),
    ],
)
def test_bad_plugin_table_is_a_one_line_config_error(tmp_path, monkeypatch, toml, expected):
    """`config check`, `serve` and the plugin's own command all refuse it in one line."""
    importable(monkeypatch, TEST_PLUGINS)
    path = tmp_path / "tokone.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n' + toml)
    for command in (["config", "check"], ["serve"], ["min-charge"]):
        code, out, err = cli("--config", str(path), *command)
        assert code == 1, (command, out, err)
        assert err.startswith(f"error: {path}: {expected}"), (command, err)
        assert err.count("\n") == 1, (command, err)


def test_a_disabled_plugin_may_keep_its_table(tmp_path, monkeypatch):
    """Switching a plugin off with `disable` does not mean deleting its settings."""
    importable(monkeypatch, TEST_PLUGINS)
    path = tmp_path / "tokone.toml"
    path.write_text(
        '[plugins]\nmodules = ["min_charge"]\ndisable = ["min_charge"]\n'
        '[plugins.min_charge]\namount = "0.001"\n'
    )
    code, out, err = cli("--config", str(path), "config", "check")
    assert code == 0 and "OK" in out, err
    code, _out, err = cli("--config", str(path), "min-charge")
    assert code == 2 and "No such command 'min-charge'" in err


COMMAND_PLUGIN = textwrap.dedent('''
    """A plugin command, and one that tries to take over a built-in name."""
    import typer
    from tokone.core.hookspecs import hookimpl


    @hookimpl
    def register_commands(app):
        @app.command()
        def hello(name: str = "world"):
            """Say hello."""
            typer.echo(f"hello {name}")

        @app.command("serve")
        def not_serve():
            """Never reached: built-in names win."""
            typer.echo("plugin serve")
''')


def test_plugin_commands_sit_beside_the_built_ins(tmp_path, monkeypatch):
    """`tokone --help` lists a plugin's command; a built-in name keeps its built-in command;
    without the plugin in the config the command does not exist."""
    (tmp_path / "hello_cmd.py").write_text(COMMAND_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "tokone.toml"
    path.write_text('[plugins]\nmodules = ["hello_cmd"]\n')
    assert cli("--config", str(path), "hello", "--name", "you")[:2] == (0, "hello you\n")
    code, out, _err = cli("--config", str(path), "--help")
    assert code == 0 and "hello" in out and "Say hello." in out
    code, out, _err = cli("--config", str(path), "serve", "--help")
    assert code == 0 and "Run the gateway" in out
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKONE_CONFIG", raising=False)
    assert cli("hello")[:2] == (0, "hello world\n")  # ./tokone.toml
    (tmp_path / "other.toml").write_text("")
    assert cli("--config", str(tmp_path / "other.toml"), "hello")[0] == 2


def test_trace_plugins_prints_every_hook_call(make_gateway, tmp_path, monkeypatch):
    """`TOKONE_TRACE_PLUGINS=1`: one stderr line per hook implementation call, with the
    plugin, arguments (the client's key redacted), duration and result — in the CLI and in
    the server, `meter` (which the core calls plugin by plugin) included."""
    importable(monkeypatch, TEST_PLUGINS)
    monkeypatch.setenv("TOKONE_TRACE_PLUGINS", "1")
    path = tmp_path / "tokone.toml"
    path.write_text(MIN_CHARGE_TOML)
    code, _out, err = cli("--config", str(path), "config", "check")
    assert code == 0, err
    assert "tokone trace: plugin_config_schema plugin=min_charge " in err
    assert "tokone trace: register_providers plugin=mock " in err
    gateway = make_gateway(MIN_CHARGE_TOML)
    key = gateway.funded_key()
    chat(gateway, key)
    wait_for_usage(gateway, 1)
    lines = [line for line in gateway.log.splitlines() if line.startswith("tokone trace: ")]
    by_hook = {(line.split()[2], line.split()[3]) for line in lines}
    for hook, plugin in [
        ("authenticate", "key_auth"),
        ("admit", "ledger"),
        ("route", "routing"),
        ("price", "min_charge"),
        ("price", "token_pricing"),
        ("meter", "ledger"),
        ("startup", "ledger"),
    ]:
        assert (hook, f"plugin={plugin}") in by_hook, (hook, plugin, sorted(by_hook))
    price = next(line for line in lines if "price plugin=min_charge" in line)
    assert " ms (call=Call(" in price and "(wrapper) -> Charge(amount=5000" in price
    assert key not in gateway.log
    assert "key=<redacted" in next(line for line in lines if " authenticate " in line)
    monkeypatch.setenv("TOKONE_TRACE_PLUGINS", "0")
    assert "tokone trace:" not in cli("--config", str(path), "config", "check")[2]
