"""Tests for wsskit.uri: ws:// and wss:// parsing (RFC 6455 §3)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsskit.exceptions import InvalidURI, WebSocketError
from wsskit.uri import WebSocketURI, parse_uri


@pytest.mark.parametrize(
    ("uri", "secure", "host", "port", "path"),
    [
        ("ws://example.com", False, "example.com", 80, "/"),
        ("wss://example.com", True, "example.com", 443, "/"),
        ("ws://example.com/", False, "example.com", 80, "/"),
        ("wss://example.com:8443/chat", True, "example.com", 8443, "/chat"),
        ("ws://example.com?x=1", False, "example.com", 80, "/?x=1"),
        ("ws://example.com/a/b?x=1&y=%20", False, "example.com", 80, "/a/b?x=1&y=%20"),
        ("WSS://Example.COM/Path", True, "example.com", 443, "/Path"),
        ("Ws://localhost:1/", False, "localhost", 1, "/"),
        ("ws://localhost:65535", False, "localhost", 65535, "/"),
        ("ws://localhost:/x", False, "localhost", 80, "/x"),
        ("ws://127.0.0.1:8080/", False, "127.0.0.1", 8080, "/"),
        ("wss://[::1]/", True, "::1", 443, "/"),
        ("wss://[::1]:9000/", True, "::1", 9000, "/"),
        ("wss://[2001:DB8:0::1]/", True, "2001:db8::1", 443, "/"),
        ("ws://my_service.internal/", False, "my_service.internal", 80, "/"),
        ("ws://localhost./", False, "localhost.", 80, "/"),
        ("wss://bücher.example/", True, "xn--bcher-kva.example", 443, "/"),
        ("wss://xn--bcher-kva.example/", True, "xn--bcher-kva.example", 443, "/"),
        ("ws://example.com/caf\u00e9?q=\u00e9", False, "example.com", 80, "/caf%C3%A9?q=%C3%A9"),
        ("ws://example.com/a%23b", False, "example.com", 80, "/a%23b"),
    ],
)
def test_parse_valid(uri: str, secure: bool, host: str, port: int, path: str) -> None:
    parsed = parse_uri(uri)
    assert parsed == WebSocketURI(secure=secure, host=host, port=port, path=path)
    assert parsed.resource_name == path
    assert parsed.user is None
    assert parsed.password is None


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "http://example.com/",
        "https://example.com/",
        "wsx://example.com/",
        "example.com",
        "ws:example.com",
        "ws:/example.com",
        "ws://",
        "ws:///path",
        "ws://:80/",
        "ws://user@/",
        # RFC 6455 §3: no fragments, not even empty ones.
        "ws://example.com/#frag",
        "ws://example.com/#",
        "ws://example.com#x",
        # Ports.
        "ws://example.com:0/",
        "ws://example.com:65536/",
        "ws://example.com:99999999/",
        "ws://example.com:+80/",
        "ws://example.com:8_0/",
        "ws://example.com:http/",
        "ws://example.com:\u0661\u0662/",
        "ws://example.com:80:80/",
        # Whitespace and control characters anywhere.
        " ws://example.com/",
        "ws://example.com/ ",
        "ws://exa mple.com/",
        "ws://example.com/a b",
        "ws://example.com/\r\nX-Injected: 1",
        "ws://example.com/\n",
        "ws://example.com/\t",
        "ws://example.com/\x00",
        "ws://example.com/\x7f",
        "ws://example.com/\x85",
        "ws://example.com/\u00a0",
        "ws://example.com/\u2028",
        # Hosts.
        "ws://::1/",
        "ws://[::1/",
        "ws://[::1]x/",
        "ws://[example.com]/",
        "ws://[v1.fe]/",
        "ws://[fe80::1%25]/",
        "ws://[fe80::1%250a%0a]/",
        "ws://exa%2fmple.com/",
        "ws://exa$mple.com/",
        "ws://-example.com/",
        "ws://example-.com/",
        "ws://example..com/",
        "ws://.example.com/",
        "ws://" + "a" * 64 + ".com/",
        "ws://" + ("a" * 60 + ".") * 5 + "com/",
        "ws://256.0.0.1/",
        "ws://127.1/",
        "ws://1.2.3/",
        "ws://0x7f.0.0.1/",
        "ws://%ff/",
        "ws://xn--a\u00e9.com/",
    ],
)
def test_parse_invalid(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_uri(uri)


def test_invalid_uri_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="fragment"):
        parse_uri("wss://example.com/#top")
    with pytest.raises(WebSocketError):
        parse_uri("http://example.com/")


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidURI):
        parse_uri(b"ws://example.com/")  # type: ignore[arg-type]


def test_userinfo_is_decoded() -> None:
    parsed = parse_uri("wss://al%20ice:p%40ss:word@example.com/")
    assert parsed.user == "al ice"
    assert parsed.password == "p@ss:word"
    assert parsed.host == "example.com"
    assert parsed.host_header == "example.com"


def test_userinfo_without_password() -> None:
    parsed = parse_uri("ws://alice@example.com:8080/")
    assert (parsed.user, parsed.password, parsed.port) == ("alice", None, 8080)
    parsed = parse_uri("ws://alice:@example.com/")
    assert (parsed.user, parsed.password) == ("alice", "")


def test_at_sign_in_path_is_not_userinfo() -> None:
    parsed = parse_uri("ws://example.com/mail@host")
    assert parsed.user is None
    assert parsed.host == "example.com"
    assert parsed.path == "/mail@host"


def test_userinfo_must_be_utf8() -> None:
    with pytest.raises(InvalidURI):
        parse_uri("ws://%ff@example.com/")


def test_password_is_not_in_repr() -> None:
    parsed = parse_uri("wss://alice:secret@example.com/")
    assert "secret" not in repr(parsed)
    assert "alice" in repr(parsed)


@pytest.mark.parametrize(
    ("uri", "host_header"),
    [
        ("ws://example.com/", "example.com"),
        ("ws://example.com:80/", "example.com"),
        ("ws://example.com:443/", "example.com:443"),
        ("wss://example.com:443/", "example.com"),
        ("wss://example.com:80/", "example.com:80"),
        ("wss://example.com:8443/", "example.com:8443"),
        ("wss://[::1]/", "[::1]"),
        ("ws://[::1]:8080/", "[::1]:8080"),
        ("ws://127.0.0.1:8080/", "127.0.0.1:8080"),
        ("wss://[fe80::1%25eth0]:8443/", "[fe80::1%25eth0]:8443"),
    ],
)
def test_host_header(uri: str, host_header: str) -> None:
    assert parse_uri(uri).host_header == host_header


def test_zone_identifier() -> None:
    parsed = parse_uri("ws://[fe80::1%25eth0]/")
    assert parsed.host == "fe80::1%eth0"


def test_uri_is_frozen() -> None:
    parsed = parse_uri("ws://example.com/")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.port = 1  # type: ignore[misc]
    assert not hasattr(parsed, "__dict__")  # slots


_labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12).filter(
    lambda label: not label.isdigit()
)
_hosts = st.lists(_labels, min_size=1, max_size=4).map(".".join)
_path_chars = st.sampled_from("abcXYZ019-._~!$&'()*+,;=:@/%?")


@given(
    secure=st.booleans(),
    host=_hosts,
    port=st.none() | st.integers(min_value=1, max_value=65535),
    path=st.text(alphabet=_path_chars, max_size=30),
)
def test_round_trip(secure: bool, host: str, port: int | None, path: str) -> None:
    scheme = "wss" if secure else "ws"
    authority = host if port is None else f"{host}:{port}"
    parsed = parse_uri(f"{scheme}://{authority}/{path}")
    assert parsed.secure is secure
    assert parsed.host == host
    assert parsed.port == (port if port is not None else (443 if secure else 80))
    assert parsed.resource_name == "/" + path
    again = parse_uri(f"{scheme}://{parsed.host_header}{parsed.resource_name}")
    assert again == parsed


@given(st.text(max_size=40))
def test_never_crashes(text: str) -> None:
    try:
        parsed = parse_uri("ws://" + text)
    except InvalidURI:
        return
    # Whatever is accepted is safe to put in a request line and a Host header.
    for value in (parsed.resource_name, parsed.host_header):
        assert value.isascii()
        assert not any(char.isspace() or ord(char) < 0x21 for char in value)
    assert parsed.resource_name.startswith("/")
    assert "#" not in parsed.resource_name
