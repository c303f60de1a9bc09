"""`wsskit serve` settings: safe defaults and the URL it advertises."""

from wsskit.app.config import ServeConfig


def test_defaults_are_wss_on_loopback() -> None:
    config = ServeConfig()
    assert config.tls and config.host == "127.0.0.1" and config.port == 8443
    assert config.url("/echo") == "wss://127.0.0.1:8443/echo"
    assert config.max_size == 2**20


def test_plain_and_ipv6_urls() -> None:
    assert ServeConfig(tls=False, port=80).url() == "ws://127.0.0.1:80"
    assert ServeConfig(host="::1").url("/x") == "wss://[::1]:8443/x"
