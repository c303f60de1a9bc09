"""`wsskit serve --config FILE.toml`: reading, checking and overriding the file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from wsskit.app.config import ServeConfig
from wsskit.app.settings import ApiAccess, ConfigError, load_file
from wsskit.channels.namespaces import Namespace
from wsskit.cli import _parser, _serve_config
from wsskit.guards.auth import JWTAuthenticator, StaticTokenAuthenticator

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "wsskit.toml"

EXAMPLE_ENV = {
    "WSSKIT_TOKEN_KEY": "k" * 32,
    "WSSKIT_API_TOKEN_BACKEND": "backend-token-0123456789",
    "WSSKIT_API_TOKEN_NEWSROOM": "newsroom-token-0123456789",
    "WSSKIT_ALICE_TOKEN": "alice-token-0123456789",
    "WSSKIT_JWT_SECRET": "s" * 32,
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wsskit.toml"
    path.write_text(text, "utf-8")
    return path


def args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["serve", *argv])


def test_the_example_file_loads_completely() -> None:
    values = load_file(EXAMPLE, EXAMPLE_ENV)
    config = ServeConfig(**values)
    assert (config.host, config.port, config.max_size, config.backplane) == (
        "127.0.0.1",
        8443,
        2**20,
        "memory://",
    )
    assert config.origins == ("https://app.example.com",)
    assert config.token_key == b"k" * 32
    assert (config.tls, config.profile) == (True, "intermediate")
    assert (config.connection_rate, config.byte_rate, config.max_connections) == (50.0, 16 * 2**20, 10_000)
    assert config.namespaces is not None
    chat, news, private = config.namespaces
    assert chat == Namespace(
        "chat",
        history_size=100,
        history_ttl=300,
        presence=True,
        join_leave=True,
        subscribe="authenticated",
        publish="authenticated",
    )
    assert (news.name, news.history_size, news.publish) == ("news", 1000, "nobody")
    assert (private.subscribe, private.publish) == ("token", ("alice", "bob"))
    assert config.api is not None
    assert config.api.may_publish("backend", "chat")
    assert config.api.may_publish("newsroom", "news")
    assert not config.api.may_publish("newsroom", "chat")
    assert config.auth is not None and config.auth.required is False
    kinds = [type(authenticator) for authenticator in config.auth.authenticators]
    assert kinds == [JWTAuthenticator, StaticTokenAuthenticator]


def test_api_tokens_are_kept_as_digests_only() -> None:
    access = ApiAccess([("backend-token-0123456789", "backend", None)])
    assert access.authenticator.verify("backend-token-0123456789").subject == "backend"
    assert "backend-token" not in repr(access) and "backend-token" not in repr(vars(access))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hots = 'x'\n", "unknown key 'hots'"),
        ("[tls]\nenable = true\n", "unknown key 'tls.enable'"),
        ("[[namespaces]]\nname = 'a'\nhistroy_size = 1\n", "unknown key 'namespaces[0].histroy_size'"),
        (
            "[auth]\nrequired = true\n[auth.jwt]\nalgorithms = ['HS256']\nkid = 'x'\n",
            "unknown key 'auth.jwt.kid'",
        ),
        ("port = '8443'\n", "'port' must be an integer, not a string"),
        ("host = 1\n", "'host' must be a string, not a number"),
        ("origins = 'https://a.example'\n", "'origins' must be an array of strings, not a string"),
        ("[tls]\nenabled = 'yes'\n", "'tls.enabled' must be a boolean (true or false), not a string"),
        ("[limits]\nmessage_rate = 'fast'\n", "'limits.message_rate' must be a number, not a string"),
        ("[limits]\nmax_connections = 0\n", "'limits.max_connections' must be at least 1"),
        ("max_size = 'huge'\n", "'max_size' must be a size"),
        (
            "[[namespaces]]\nname = 'a'\nhistory_ttl = 'long'\n",
            "'namespaces[0].history_ttl' must be a number",
        ),
        ("[[namespaces]]\nname = 'a'\npresence = 1\n", "'namespaces[0].presence' must be a boolean"),
        ("[[namespaces]]\nname = 'a'\nsubscribe = 3\n", "'namespaces[0].subscribe' must be \"any\""),
        ("[[namespaces]]\nname = 'a'\nsubscribe = 'everyone'\n", "namespaces[0]: subscribe is 'any'"),
        ("[[namespaces]]\nhistory_size = 1\n", "namespaces[0] needs a 'name'"),
        ("[[namespaces]]\nname = 'a'\n[[namespaces]]\nname = 'a'\n", "two namespaces named 'a'"),
        ("namespaces = 'chat'\n", "'namespaces' must be an array of tables"),
        ("[tls]\nprofile = 'old'\n", "'tls.profile' must be one of 'intermediate', 'modern'"),
        ("token_key = 'short'\n", "'token_key' must be at least 32 bytes"),
        ("token_key_env = 'NOT_SET_ANYWHERE'\n", "names 'NOT_SET_ANYWHERE', which is not set"),
        ("[[api.tokens]]\nsubject = 'x'\n", "api.tokens[0] needs 'token' or 'token_env'"),
        ("[[api.tokens]]\ntoken = 'short'\n", "token #1 is shorter than 16"),
        ("[auth]\nrequired = true\n", "auth needs 'tokens' or 'jwt'"),
        ("[auth]\n[[auth.tokens]]\ntoken = 'alice-token-0123456789'\n", "auth.tokens[0] needs a 'subject'"),
        ("[auth.jwt]\nalgorithms = ['none']\nkey = 'x'\n", 'auth: the "none" algorithm'),
        ("port = \n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_file(path, {})
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "absent.toml", {})


def test_relative_paths_are_read_from_the_files_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "[tls]\ncert = 'certs/cert.pem'\nkey = '/abs/key.pem'\n")
    values = load_file(path, {})
    assert values["certfile"] == tmp_path / "certs" / "cert.pem"
    assert values["keyfile"] == Path("/abs/key.pem")


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "host = '127.0.0.2'\nport = 9000\nbackplane = 'memory://'\norigins = ['https://a.example']\n"
        "[limits]\nmessage_rate = 5\nbyte_rate = '1KiB'\n"
        "[[api.tokens]]\ntoken = 'file-token-0123456789'\nsubject = 'file'\n",
    )
    config = _serve_config(args("--config", str(path)), {})
    assert (config.host, config.port, config.message_rate, config.byte_rate) == ("127.0.0.2", 9000, 5.0, 1024)
    assert config.api is not None and list(config.api.namespaces) == ["file"]
    config = _serve_config(
        args(
            "--config",
            str(path),
            "--port",
            "9001",
            "--message-rate",
            "7",
            "--allow-origin",
            "https://b.example",
            "--no-tls",
            "--api-token",
            "cli-token-0123456789",
        ),
        {},
    )
    assert (config.host, config.port, config.message_rate, config.tls) == ("127.0.0.2", 9001, 7.0, False)
    assert config.origins == ("https://b.example",)
    assert config.api is not None and list(config.api.namespaces) == ["api"]
    assert config.api.authenticator.verify("cli-token-0123456789").subject == "api"


def test_api_tokens_from_the_environment_beat_the_file_but_not_the_options(tmp_path: Path) -> None:
    path = write(tmp_path, "[[api.tokens]]\ntoken = 'file-token-0123456789'\nsubject = 'file'\n")
    env = {"WSSKIT_API_TOKEN": "env-token-0123456789, env-token-9876543210"}
    config = _serve_config(args("--config", str(path)), env)
    assert config.api is not None and list(config.api.namespaces) == ["api"]
    assert config.api.authenticator.verify("env-token-9876543210").subject == "api"
    config = _serve_config(args("--config", str(path), "--api-token", "cli-token-0123456789"), env)
    assert config.api is not None
    assert config.api.authenticator.verify("cli-token-0123456789").subject == "api"
    with pytest.raises(Exception, match="unknown token"):
        config.api.authenticator.verify("env-token-0123456789")


def test_defaults_without_a_file_or_options() -> None:
    assert _serve_config(args(), {}) == ServeConfig()


@pytest.mark.parametrize(
    ("text", "argv", "message"),
    [
        ("[tls]\nkey = 'k.pem'\n", (), "--key needs --cert"),
        ("[tls]\ncert = 'c.pem'\n", ("--no-tls",), "--no-tls and --cert"),
    ],
)
def test_bad_combinations_across_file_and_options(
    tmp_path: Path, text: str, argv: tuple[str, ...], message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message):
        _serve_config(args("--config", str(path), *argv), {})


@pytest.mark.parametrize("off", ["0", "0.0", "'none'", "'None'", "'0'"])
def test_0_or_none_turns_every_rate_off_in_the_file(tmp_path: Path, off: str) -> None:
    path = write(
        tmp_path,
        f"[limits]\nconnection_rate = {off}\nmessage_rate = {off}\nbyte_rate = {off}\nping_rate = {off}\n",
    )
    config = ServeConfig(**load_file(path, {}))
    assert (config.connection_rate, config.message_rate, config.byte_rate, config.ping_rate) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[limits]\nbyte_rate = -1\n", "'limits.byte_rate' must be a positive number of bytes"),
        ("[limits]\nping_rate = -1\n", "'limits.ping_rate' must be a finite number of at least 0"),
        ("[limits]\nconnection_rate = false\n", "'limits.connection_rate' must be a number, not a boolean"),
        ("[limits]\nmax_connections_per_ip = 0\n", "'limits.max_connections_per_ip' must be at least 1"),
        ("[limits]\nmax_connections = 'none'\n", "'limits.max_connections' must be an integer"),
    ],
)
def test_rates_off_but_not_caps_or_nonsense(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_file(write(tmp_path, text), {})
    assert message in str(info.value)


@pytest.mark.parametrize("off", ["0", "none"])
def test_0_or_none_turns_every_rate_off_on_the_command_line(off: str) -> None:
    rates = ("--connection-rate", "--message-rate", "--byte-rate", "--ping-rate")
    config = _serve_config(args(*(item for rate in rates for item in (rate, off))), {})
    assert (config.connection_rate, config.message_rate, config.byte_rate, config.ping_rate) == (0, 0, 0, 0)


def test_the_command_line_turns_off_a_rate_the_file_sets(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nbyte_rate = '1KiB'\nmessage_rate = 5\n")
    config = _serve_config(args("--config", str(path), "--byte-rate", "0", "--message-rate", "0"), {})
    assert (config.byte_rate, config.message_rate) == (0, 0)
