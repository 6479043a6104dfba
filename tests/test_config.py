"""Config loading and validation: every bad file fails with one message naming file and key."""

from __future__ import annotations

import pytest
from tokone.core.cli.main import app
from tokone.core.config import ConfigError, load_config, parse_config
from typer.testing import CliRunner


def write(tmp_path, text: str):
    path = tmp_path / "tokone.toml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid_and_uses_sqlite_and_the_mock(monkeypatch):
    monkeypatch.delenv("TOKONE_DATABASE_URL", raising=False)
    config = load_config("tokone.toml")
    assert config.database.url.startswith("sqlite:///")
    assert [p.adapter for p in config.providers] == ["mock"]
    assert config.server.key_prefix == "sk-"


def test_defaults_without_any_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKONE_CONFIG", raising=False)
    config = load_config()
    assert config.path == "<defaults>" and config.server.port == 8000


def test_env_var_selects_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "[server]\nport = 9123\n")
    monkeypatch.setenv("TOKONE_CONFIG", str(path))
    assert load_config().server.port == 9123


def test_env_substitution_with_default(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "secret-value")
    path = write(
        tmp_path,
        """
[server]
secret = "${NOT_SET_ANYWHERE:-fallback}"
[[providers]]
name = "a"
adapter = "openai"
base_url = "http://x/v1"
api_key = "${UPSTREAM_KEY}"
models = ["m"]
""",
    )
    config = load_config(str(path))
    assert config.providers[0].api_key == "secret-value"
    assert config.server.secret == "fallback"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nport = 'eighty'\n", "key server.port: expected `int`, got `str`"),
        ("[server]\nprot = 80\n", "key server.prot: unknown key"),
        ("[[providers]]\nname = 'a'\nmodels = []\n", "key providers[0].adapter: required"),
        (
            "[[providers]]\nname='a'\nadapter='openai'\nmodels=['m']\n",
            "key providers[0].base_url: required for this adapter",
        ),
        (
            "[[providers]]\nname='a'\nadapter='mock'\nmodels=['m']\n"
            "[[providers]]\nname='a'\nadapter='mock'\nmodels=['m']\n",
            "key providers[1].name: duplicate provider name",
        ),
        ("[prices.m]\ninput = -1\n", "key prices.m.input: expected >= 0"),
        (
            "[[providers]]\nname='a'\nadapter='mock'\nmodels=['m']\nmax_connections=-1\n",
            "key providers[0].max_connections: expected >= 0",
        ),
        (
            "[[providers]]\nname='a'\nadapter='mock'\nmodels=['m']\nmax_connections='x'\n",
            "key providers[0].max_connections: expected `int`",
        ),
        (
            "[[providers]]\nname='a'\nadapter='mock'\nmodels=['m']\nkeepalive_expiry=-1\n",
            "key providers[0].keepalive_expiry: expected >= 0",
        ),
        ("[groups.g]\nmultiplier = 'x'\n", "key groups.g.multiplier: expected `float`"),
        ("[server]\napi_key = '${MISSING_VAR_XYZ}'\n", "server.api_key: environment variable"),
        ("[server]\napi_key = 'x'\n", "key server.api_key: unknown key"),
        ("[server]\nsecret = '${MISSING_VAR_XYZ}'\n", "server.secret: environment variable"),
        ("[server\nport = 1\n", "not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_expectation(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message, message
    assert "\n" not in message


def test_provider_pool_defaults_have_no_practical_cap():
    config = parse_config({"providers": [{"name": "a", "adapter": "mock", "models": ["m"]}]})
    provider = config.providers[0]
    assert provider.max_connections == 10_000
    assert provider.keepalive_expiry == 15.0


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "nope.toml"))


def test_relative_sqlite_path_is_relative_to_the_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKONE_DATABASE_URL", raising=False)
    path = write(tmp_path, "[database]\nurl = 'sqlite:///data/x.db'\n")
    assert load_config(str(path)).database.url == f"sqlite:///{tmp_path}/data/x.db"


def test_parse_config_accepts_a_plain_dict():
    config = parse_config({"groups": {"vip": {"multiplier": 0.5}}})
    assert config.groups["vip"].multiplier == 0.5
    assert "default" in config.groups


def test_config_check_cli(tmp_path):
    good = write(tmp_path, "[[providers]]\nname='m'\nadapter='mock'\nmodels=['mock-1']\n")
    result = CliRunner().invoke(app, ["--config", str(good), "config", "check"])
    assert result.exit_code == 0 and "OK" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[[providers]]\nname='m'\nadapter='nosuch'\nmodels=['x']\nbase_url='http://x'\n")
    result = CliRunner().invoke(app, ["--config", str(bad), "config", "check"])
    assert result.exit_code == 1
    assert "providers[0].adapter: unknown adapter 'nosuch'" in result.stderr
