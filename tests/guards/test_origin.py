"""OriginPolicy and normalize_origin: the RFC 6455 §10.2 Origin check."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsskit.exceptions import Forbidden
from wsskit.guards.origin import OriginPolicy, normalize_origin
from wsskit.protocol.events import Request
from wsskit.protocol.headers import Headers


def _request(*origins: str) -> Request:
    return Request(
        target="/chat", headers=Headers([("Host", "example.com"), *(("Origin", o) for o in origins)])
    )


# --- normalize_origin ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://example.com", "https://example.com"),
        ("HTTPS://EXAMPLE.COM", "https://example.com"),
        ("HtTp://Example.Com:8080", "http://example.com:8080"),
        # Default ports are dropped, for the web and the WebSocket schemes alike.
        ("https://example.com:443", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("wss://example.com:443", "wss://example.com"),
        ("ws://example.com:80", "ws://example.com"),
        ("https://example.com:0443", "https://example.com"),
        # ...but only the scheme's own default.
        ("https://example.com:80", "https://example.com:80"),
        ("http://example.com:443", "http://example.com:443"),
        ("ftp://example.com:21", "ftp://example.com:21"),
        ("https://example.com:65535", "https://example.com:65535"),
        # IDNA: browsers send the xn-- form; configured values may be Unicode.
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("https://BÜCHER.example:443", "https://xn--bcher-kva.example"),
        ("https://XN--BCHER-KVA.example", "https://xn--bcher-kva.example"),
        # IP literals.
        ("http://127.0.0.1:8443", "http://127.0.0.1:8443"),
        ("http://[::1]:8443", "http://[::1]:8443"),
        ("http://[0:0:0:0:0:0:0:1]:8443", "http://[::1]:8443"),
        ("https://[2001:DB8::1]", "https://[2001:db8::1]"),
        ("https://[2001:db8:0:0:1:0:0:1]:443", "https://[2001:db8::1:0:0:1]"),
        ("https://[2001:db8:1:1:1:1:1:1]", "https://[2001:db8:1:1:1:1:1:1]"),
        ("https://[1:0:2:3:4:5:6:7]", "https://[1:0:2:3:4:5:6:7]"),
        ("http://[::]", "http://[::]"),
        # An IPv4-mapped address in hex pieces, as browsers write it.
        ("http://[::ffff:127.0.0.1]", "http://[::ffff:7f00:1]"),
        # Other schemes and host forms browsers produce.
        (
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
        ),
        ("https://example.com.", "https://example.com."),
        ("https://my_service.internal", "https://my_service.internal"),
        ("https://localhost", "https://localhost"),
        ("null", "null"),
    ],
)
def test_normalize_origin(value: str, expected: str) -> None:
    assert normalize_origin(value) == expected
    assert normalize_origin(expected) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "example.com",
        "//example.com",
        "https:example.com",
        "https://",
        "https://:443",
        "1https://example.com",
        # RFC 6454 §6.2: an origin is scheme, host and port; nothing after.
        "https://example.com/",
        "https://example.com/path",
        "https://example.com:443/",
        "https://example.com?query",
        "https://example.com#fragment",
        "https://user@example.com",
        "https://user:pw@example.com",
        # Ports.
        "https://example.com:",
        "https://example.com:0",
        "https://example.com:65536",
        "https://example.com:123456",
        "https://example.com:+80",
        "https://example.com:8_0",
        "https://example.com:\u0668\u0660",
        "https://example.com:80:80",
        # Whitespace and control characters.
        " https://example.com",
        "https://example.com ",
        "https://exa mple.com",
        "https://example.com\r\nX-Injected: 1",
        "https://example.com\x00",
        "https://example.com\u200b",
        # IPv6 literals.
        "https://[::1",
        "https://[::1]x",
        "https://[]",
        "https://[zz::1]",
        "https://[127.0.0.1]",
        "https://[fe80::1%eth0]",
        "https://[fe80::1%25eth0]",
        "https://::1",
        # IPv4: the dotted quad only.
        "https://1.2.3",
        "https://256.1.1.1",
        "https://01.2.3.4",
        "https://1.2.3.4.",
        # Host names.
        "https://a..example",
        "https://.example",
        "https://-a.example",
        "https://a-.example",
        "https://a%2eexample",
        "https://a*.example",
        "https://" + "a" * 64 + ".example",
        "https://" + ".".join(["a" * 63] * 4) + ".com",
        "https://bücher..example",
        # IDNA 2003 and 2008 disagree: the configured value would never match.
        "https://straße.de",
        "https://\u03c2.example",
        # "null" is case-sensitive (RFC 6454 §7.1 spells it in %x values).
        "NULL",
        "Null",
        # A list of origins (RFC 6454 §7.1) is not one origin.
        "https://a.example https://b.example",
        "https://example.com," + "x" * 2000,
    ],
)
def test_normalize_origin_refuses_garbage(value: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        normalize_origin(value)


def test_normalize_origin_refuses_non_str() -> None:
    with pytest.raises(ValueError, match="must be a str"):
        normalize_origin(b"https://example.com")  # type: ignore[arg-type]


def test_normalize_origin_messages_say_what() -> None:
    with pytest.raises(ValueError, match="no path"):
        normalize_origin("https://example.com/")
    with pytest.raises(ValueError, match="port"):
        normalize_origin("https://example.com:99999")
    with pytest.raises(ValueError, match="xn--"):
        normalize_origin("https://straße.de")
    with pytest.raises(ValueError, match="zone"):
        normalize_origin("https://[fe80::1%eth0]")
    with pytest.raises(ValueError, match="253"):
        normalize_origin("https://" + ".".join(["a" * 63] * 4) + ".com")
    with pytest.raises(ValueError, match="longer than 1024"):
        normalize_origin("https://" + "a" * 1024)


@given(st.ip_addresses(v=6))
def test_ipv6_literals_use_rfc5952_text(address: ipaddress.IPv6Address) -> None:
    normalized = normalize_origin(f"https://[{address.exploded}]:8443")
    assert normalized.startswith("https://[") and normalized.endswith("]:8443")
    text = normalized[len("https://[") : -len("]:8443")]
    assert ipaddress.IPv6Address(text) == address
    assert "." not in text  # hex pieces only, as browsers write it
    if address.ipv4_mapped is None:
        # The standard library writes RFC 5952 text for everything else.
        assert text == str(address)


_LABEL = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9_-]{0,10}[a-zA-Z0-9])?", fullmatch=True)


@given(
    scheme=st.sampled_from(["http", "HTTPS", "ws", "Wss", "chrome-extension", "app"]),
    labels=st.lists(_LABEL, min_size=1, max_size=4),
    tld=st.from_regex(r"[a-zA-Z]{2,6}", fullmatch=True),
    port=st.none() | st.integers(1, 65535),
)
def test_normalize_origin_is_idempotent_and_case_blind(
    scheme: str, labels: list[str], tld: str, port: int | None
) -> None:
    origin = f"{scheme}://{'.'.join([*labels, tld])}" + ("" if port is None else f":{port}")
    normalized = normalize_origin(origin)
    assert normalize_origin(normalized) == normalized
    assert normalized == normalized.lower()
    assert normalize_origin(origin.upper()) == normalized


# --- OriginPolicy: exact origins -------------------------------------------


def test_exact_origins_match_after_normalisation() -> None:
    policy = OriginPolicy(["https://Example.com:443", "http://[::1]:8443"])
    assert policy.allowed == frozenset({"https://example.com", "http://[::1]:8443"})
    for origin in [
        "https://example.com",
        "HTTPS://EXAMPLE.COM",
        "https://example.com:443",
        "http://[::1]:8443",
        "http://[0::1]:8443",
    ]:
        policy.check(_request(origin))
        assert policy.allows(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "http://example.com",
        "https://example.com:8443",
        "https://www.example.com",
        "https://example.com.evil.net",
        "https://example.com.",
        "http://[::1]:8444",
    ],
)
def test_other_origins_are_forbidden(origin: str) -> None:
    policy = OriginPolicy(["https://example.com", "http://[::1]:8443"])
    assert not policy.allows(origin)
    with pytest.raises(Forbidden, match="origin not allowed") as info:
        policy.check(_request(origin))
    assert info.value.status == 403
    assert repr(origin) in str(info.value)


def test_empty_policy_forbids_every_origin() -> None:
    policy = OriginPolicy()
    with pytest.raises(Forbidden):
        policy.check(_request("https://example.com"))


def test_idna_origins() -> None:
    policy = OriginPolicy(["https://bücher.example"])
    policy.check(_request("https://xn--bcher-kva.example"))
    # A browser sends the ASCII serialisation; Unicode in the header did not
    # come from one and is refused rather than mapped.
    assert not policy.allows("https://bücher.example")


def test_header_whitespace_is_ignored() -> None:
    OriginPolicy(["https://example.com"]).check(_request(" \thttps://example.com \t"))


@pytest.mark.parametrize(
    "value",
    ["", "https://example.com/", "https://example.com https://example.com", "https://example.com\x00"],
)
def test_malformed_header_is_forbidden(value: str) -> None:
    policy = OriginPolicy(["https://example.com"], allow_missing=True)
    assert not policy.allows(value)
    with pytest.raises(Forbidden, match="origin not allowed"):
        policy.check(_request(value))


def test_long_header_is_cut_short_in_the_message() -> None:
    value = "https://" + "a" * 5000 + ".example"
    with pytest.raises(Forbidden) as info:
        OriginPolicy(["https://example.com"]).check(_request(value))
    assert len(str(info.value)) < 200
    assert str(info.value).endswith("...'")


# --- missing, duplicate and null origins -----------------------------------


def test_missing_origin_is_forbidden_by_default() -> None:
    with pytest.raises(Forbidden, match="missing Origin") as info:
        OriginPolicy(["https://example.com"]).check(_request())
    assert info.value.status == 403
    assert OriginPolicy().allow_missing is False


def test_missing_origin_allowed_for_non_browser_clients() -> None:
    policy = OriginPolicy(["https://example.com"], allow_missing=True)
    assert policy.allow_missing is True
    policy.check(_request())
    with pytest.raises(Forbidden):
        policy.check(_request("https://evil.example"))


@pytest.mark.parametrize("allow_missing", [False, True])
def test_multiple_origin_headers_are_forbidden(allow_missing: bool) -> None:
    policy = OriginPolicy(["https://example.com"], allow_missing=allow_missing)
    with pytest.raises(Forbidden, match="multiple Origin headers"):
        policy.check(_request("https://example.com", "https://example.com"))
    headers = Headers([("Origin", "https://example.com"), ("origin", "https://evil.example")])
    with pytest.raises(Forbidden, match="multiple Origin headers"):
        policy.check(Request(target="/", headers=headers))


def test_null_origin_is_forbidden_unless_listed() -> None:
    with pytest.raises(Forbidden, match="'null'"):
        OriginPolicy(["https://example.com"]).check(_request("null"))
    # Not even a pattern that matches everything lets it through.
    assert not OriginPolicy(patterns=[".*"]).allows("null")
    assert OriginPolicy(patterns=[".*"]).allows("https://example.com")
    policy = OriginPolicy(["null"])
    policy.check(_request("null"))
    assert not policy.allows("NULL")


# --- patterns ---------------------------------------------------------------


def test_patterns_fullmatch_the_normalised_origin() -> None:
    policy = OriginPolicy(patterns=[r"https://[a-z0-9-]+\.example\.com", r"http://localhost:\d+"])
    for origin in [
        "https://app.example.com",
        "https://APP.Example.com:443",
        "http://localhost:3000",
    ]:
        policy.check(_request(origin))
    for origin in [
        "https://example.com",
        "http://app.example.com",
        "https://app.example.com.evil.net",
        "https://evil.net/?https://app.example.com",
        "https://a.b.example.com",
        "http://localhost",
    ]:
        assert not policy.allows(origin), origin
    assert [p.pattern for p in policy.patterns] == [
        r"https://[a-z0-9-]+\.example\.com",
        r"http://localhost:\d+",
    ]


def test_exact_and_patterns_combine() -> None:
    policy = OriginPolicy(["https://example.com"], patterns=[r"https://.+\.example\.com"])
    assert policy.allows("https://example.com")
    assert policy.allows("https://www.example.com")
    assert not policy.allows("https://example.org")


def test_bad_pattern_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"invalid origin pattern 'https://\(unclosed'"):
        OriginPolicy(patterns=["https://(unclosed"])


# --- configuration errors ----------------------------------------------------


@pytest.mark.parametrize("origin", ["https://example.com/", "example.com", "https://example.com:0", "*"])
def test_bad_configured_origin_is_a_value_error(origin: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        OriginPolicy([origin])


def test_single_strings_are_type_errors() -> None:
    with pytest.raises(TypeError, match="single str"):
        OriginPolicy("https://example.com")
    with pytest.raises(TypeError, match="single str"):
        OriginPolicy(patterns=r"https://.*")
    with pytest.raises(TypeError, match="must be a str"):
        OriginPolicy(patterns=[b"https://.*"])  # type: ignore[list-item]


def test_repr() -> None:
    policy = OriginPolicy(["https://b.example", "https://a.example"], patterns=["x"], allow_missing=True)
    assert repr(policy) == (
        "OriginPolicy(['https://a.example', 'https://b.example'], patterns=['x'], allow_missing=True)"
    )


# --- for_server --------------------------------------------------------------


def test_for_server_allows_its_own_origin() -> None:
    policy = OriginPolicy.for_server("https", "Example.com", 8443)
    assert policy.allowed == frozenset({"https://example.com:8443"})
    policy.check(_request("https://example.com:8443"))
    for origin in ["http://example.com:8443", "https://example.com", "https://localhost:8443"]:
        assert not policy.allows(origin)
    assert not policy.allow_missing


@pytest.mark.parametrize(
    ("scheme", "port", "expected"),
    [
        ("https", 443, "https://example.com"),
        ("wss", 443, "https://example.com"),
        ("WSS", 8443, "https://example.com:8443"),
        ("http", 80, "http://example.com"),
        ("ws", 8080, "http://example.com:8080"),
    ],
)
def test_for_server_uses_the_page_scheme(scheme: str, port: int, expected: str) -> None:
    assert OriginPolicy.for_server(scheme, "example.com", port).allowed == frozenset({expected})


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "127.0.0.1", "::1", "[::1]", "0.0.0.0", "::", "[::]", ""]
)
def test_for_server_on_loopback_allows_all_three_spellings(host: str) -> None:
    policy = OriginPolicy.for_server("https", host, 8443)
    assert policy.allowed == frozenset(
        {"https://localhost:8443", "https://127.0.0.1:8443", "https://[::1]:8443"}
    )
    policy.check(_request("https://[::1]:8443"))
    assert not policy.allows("https://127.0.0.2:8443")


def test_for_server_ipv6_and_idna_hosts() -> None:
    assert OriginPolicy.for_server("https", "2001:db8::1", 8443).allowed == frozenset(
        {"https://[2001:db8::1]:8443"}
    )
    assert OriginPolicy.for_server("https", "[2001:DB8::1]", 443).allowed == frozenset(
        {"https://[2001:db8::1]"}
    )
    assert OriginPolicy.for_server("https", "bücher.example", 443).allowed == frozenset(
        {"https://xn--bcher-kva.example"}
    )


def test_for_server_adds_allowed_patterns_and_allow_missing() -> None:
    policy = OriginPolicy.for_server(
        "https",
        "example.com",
        443,
        allowed=["https://other.example"],
        patterns=[r"https://.+\.example\.com"],
        allow_missing=True,
    )
    assert policy.allowed == frozenset({"https://example.com", "https://other.example"})
    assert policy.allows("https://www.example.com")
    policy.check(_request())


@pytest.mark.parametrize(
    ("scheme", "host", "port"),
    [
        ("ftp", "example.com", 21),
        ("https", "example.com", 0),
        ("https", "example.com", 65536),
        ("https", "example.com", True),
        ("https", "example.com", "443"),
        ("https", "bad host", 443),
        ("https", "example.com/path", 443),
    ],
)
def test_for_server_refuses_bad_arguments(scheme: str, host: str, port: int) -> None:
    with pytest.raises(ValueError, match=r"."):
        OriginPolicy.for_server(scheme, host, port)


def test_for_server_refuses_a_single_str() -> None:
    with pytest.raises(TypeError, match="single str"):
        OriginPolicy.for_server("https", "example.com", 443, allowed="https://other.example")
