"""Header fields and the parameterised header values of RFC 6455 §9.1."""

from __future__ import annotations

import pytest

from wsskit.protocol.headers import Headers, format_extension, is_token, parse_extensions, parse_list


def test_lookup_ignores_case_and_keeps_order() -> None:
    headers = Headers([("Host", "a"), ("X-Multi", "1"), ("x-multi", "2")])
    assert headers["host"] == "a"
    assert headers.get_all("X-MULTI") == ["1", "2"]
    assert headers["X-Multi"] == "1, 2"
    assert headers.get("missing") is None and headers.get("missing", "d") == "d"
    assert "HOST" in headers and "nope" not in headers and 3 not in headers
    assert list(headers) == ["Host", "X-Multi", "x-multi"] and len(headers) == 3
    with pytest.raises(KeyError):
        headers["missing"]


def test_set_replaces_and_remove_drops_all() -> None:
    headers = Headers({"A": "1"})
    headers.add("a", "2")
    headers["A"] = "3"
    assert headers.items() == [("A", "3")]
    headers.remove("a")
    assert len(headers) == 0


def test_equality_and_copy() -> None:
    one = Headers([("A", "1")])
    assert Headers(one) == Headers([("a", "1")])
    assert one != Headers([("A", "2")])
    assert one.__eq__("A: 1") is NotImplemented
    assert "A" in repr(one)
    with pytest.raises(TypeError):
        hash(one)


def test_tokens_and_lists() -> None:
    assert is_token("chat.v1") and not is_token("") and not is_token("a b") and not is_token("a,b")
    assert parse_list(["chat, superchat", " ", "v2"]) == ["chat", "superchat", "v2"]
    with pytest.raises(ValueError, match="token"):
        parse_list(["ok, not ok"])


def test_extensions_parse_params_and_quotes() -> None:
    values = ['permessage-deflate; client_max_window_bits; server_max_window_bits="10", x-other']
    assert parse_extensions(values) == [
        ("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "10")]),
        ("x-other", []),
    ]
    assert parse_extensions(['a; b="\\1\\0"', ""]) == [("a", [("b", "10")])]


@pytest.mark.parametrize(
    "value",
    ["bad name", "a; ", "a; b c", 'a; b="x y"', 'a; b="unterminated', 'a; b="x\\"', 'a; b="x"y"', "a; b=@"],
)
def test_malformed_extensions_raise(value: str) -> None:
    with pytest.raises(ValueError):
        parse_extensions([value])


def test_format_extension() -> None:
    assert format_extension("permessage-deflate", [("a", None), ("b", "9")]) == "permessage-deflate; a; b=9"
    assert format_extension("x", []) == "x"
