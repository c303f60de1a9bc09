"""Bad-input campaign, auth group: forged and misplaced credentials, forged Origins, client certificates.

``/private`` on the main listener takes a bearer token (an HS256 JWT for
``campaign-api`` from ``https://issuer.example``, or the static token) from
the Authorization header, a cookie, the query or ``Sec-WebSocket-Protocol``.
A refusal is 401 with the exact ``WWW-Authenticate`` challenge of RFC 6750
§3; whatever the outcome, the token never shows up in the response or in
the server's log. Every WebSocket request passes an Origin allow-list
(``https://app.example``, or no Origin). The ``mtls`` listener requires a
client certificate from the campaign CA and lets only alice's in.

Around every case :func:`~tests.security.campaign.guarded` checks the
neighbour, the memory bound and the log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest

from tests.security.campaign import (
    MIB,
    TIMEOUT,
    CampaignServer,
    HttpResponse,
    guarded,
    http_request,
    open_peer,
    open_ws,
)
from wsskit import tls

#: A valid input kept beside the hostile ones (a boundary or a control); see conftest.py.
CONTROL = pytest.mark.campaign_control

MEMORY = 2 * MIB

DROP = object()  # a claim to leave out


def b64(data: dict[str, Any] | bytes) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class Tokens:
    """Mints tokens for the campaign server's JWT authenticator."""

    secret: bytes
    audience: str
    issuer: str
    static: str

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": "alice",
            "aud": self.audience,
            "iss": self.issuer,
            "iat": now,
            "exp": now + 300,
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not DROP}

    def jwt(self, *, key: bytes | None = None, headers: dict[str, Any] | None = None, **changes: Any) -> str:
        return jwt.encode(self.claims(**changes), key or self.secret, algorithm="HS256", headers=headers)

    def unsigned(self, alg: str, signature: str = "", **changes: Any) -> str:
        """A token whose header names ``alg``, with ``signature`` (none by default)."""
        return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(self.claims(**changes))}.{signature}"


def tokens_of(campaign: CampaignServer) -> Tokens:
    info = campaign.info
    return Tokens(
        bytes.fromhex(info["jwt_secret"]), info["jwt_audience"], info["jwt_issuer"], info["static_token"]
    )


def tampered(token: str) -> str:
    """``token`` with its payload changed to another subject, the signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    return f"{header}.{b64(claims)}.{signature}"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


@dataclass(frozen=True)
class Attempt:
    """Where a case puts its credentials: the target and extra header fields; ``secret`` must never leak."""

    target: str = "/private"
    headers: list[tuple[str, str]] = field(default_factory=list)
    secret: str | None = None


def in_header(token: str) -> Attempt:
    return Attempt(headers=bearer(token), secret=token)


def in_query(token: str) -> Attempt:
    return Attempt(f"/private?access_token={token}", secret=token)


def in_cookie(token: str) -> Attempt:
    return Attempt(headers=[("Cookie", f"access_token={token}")], secret=token)


def in_subprotocol(token: str) -> Attempt:
    return Attempt(headers=[("Sec-WebSocket-Protocol", f"app.v1, access_token.{token}")], secret=token)


@dataclass(frozen=True)
class Case:
    id: str
    attempt: Callable[[Tokens], Attempt]
    status: int
    description: str | None = None  # error_description of an invalid_token challenge; None: bare challenge


TOKEN_CASES = [
    Case("no-token", lambda t: Attempt(), 401),
    Case("alg-none", lambda t: in_header(t.unsigned("none")), 401, "algorithm not allowed"),
    Case("alg-None-capitalised", lambda t: in_header(t.unsigned("None")), 401, "algorithm not allowed"),
    Case(
        "alg-RS256-confusion",
        lambda t: in_header(t.unsigned("RS256", b64(b"x" * 32))),
        401,
        "algorithm not allowed",
    ),
    Case(
        "alg-HS512-not-allowed",
        lambda t: in_header(t.unsigned("HS512", b64(b"x" * 64))),
        401,
        "algorithm not allowed",
    ),
    Case("expired", lambda t: in_header(t.jwt(exp=int(time.time()) - 60)), 401, "token expired"),
    Case("expiring-this-second", lambda t: in_header(t.jwt(exp=int(time.time()))), 401, "token expired"),
    Case("not-yet-valid", lambda t: in_header(t.jwt(nbf=int(time.time()) + 600)), 401, "token not yet valid"),
    Case(
        "issued-in-the-future",
        lambda t: in_header(t.jwt(iat=int(time.time()) + 600)),
        401,
        "token issued in the future",
    ),
    Case("wrong-audience", lambda t: in_header(t.jwt(aud="another-api")), 401, "invalid audience"),
    Case("no-audience", lambda t: in_header(t.jwt(aud=DROP)), 401, "missing claim 'aud'"),
    Case("wrong-issuer", lambda t: in_header(t.jwt(iss="https://evil.example")), 401, "invalid issuer"),
    Case("wrong-key", lambda t: in_header(t.jwt(key=b"k" * 32)), 401, "invalid signature"),
    Case("bad-signature-tampered-payload", lambda t: in_header(tampered(t.jwt())), 401, "invalid signature"),
    Case(
        "signature-stripped", lambda t: in_header(t.jwt().rpartition(".")[0] + "."), 401, "invalid signature"
    ),
    Case("no-exp", lambda t: in_header(t.jwt(exp=DROP)), 401, "missing claim 'exp'"),
    Case("no-sub", lambda t: in_header(t.jwt(sub=DROP)), 401, "missing claim 'sub'"),
    Case("exp-not-a-number", lambda t: in_header(t.jwt(exp="tomorrow")), 401, "claim 'exp' is not a number"),
    Case(
        "kid-and-jku-pointing-elsewhere",
        lambda t: in_header(
            t.jwt(key=b"k" * 32, headers={"kid": "../../x", "jku": "https://evil.example/k"})
        ),
        401,
        "invalid signature",
    ),
    Case("unknown-static-token", lambda t: in_header("x" * 43), 401, "unknown token"),
    Case("malformed-token", lambda t: in_header("abc$def"), 401, "malformed token"),
    Case("empty-bearer", lambda t: Attempt(headers=[("Authorization", "Bearer ")]), 401, "malformed token"),
    Case(
        "two-bearer-tokens",
        lambda t: Attempt(headers=bearer(t.static) + bearer(t.jwt()), secret=t.static),
        401,
        "several bearer tokens",
    ),
    Case(
        "basic-auth-is-not-a-token",
        lambda t: Attempt(headers=[("Authorization", "Basic " + b64(f"alice:{t.static}".encode()))]),
        401,
    ),
    Case(
        "expired-token-in-query",
        lambda t: in_query(t.jwt(exp=int(time.time()) - 60)),
        401,
        "token expired",
    ),
    Case(
        "two-tokens-in-query",
        lambda t: Attempt(f"/private?access_token={t.static}&access_token=x", secret=t.static),
        401,
        "several tokens in the query",
    ),
    Case(
        # Cookies are no token source by default: a browser sends them with any site's requests.
        "valid-token-in-cookie-ignored",
        lambda t: in_cookie(t.jwt()),
        401,
    ),
    Case(
        "two-tokens-in-subprotocol",
        lambda t: Attempt(
            headers=[("Sec-WebSocket-Protocol", f"app.v1, access_token.{t.static}, access_token.x")],
            secret=t.static,
        ),
        401,
        "several tokens in Sec-WebSocket-Protocol",
    ),
    Case(
        "forged-token-in-subprotocol",
        lambda t: in_subprotocol(t.jwt(key=b"k" * 32)),
        401,
        "invalid signature",
    ),
]


def _challenge(campaign: CampaignServer, description: str | None) -> str:
    challenge = f'Bearer realm="{campaign.info["realm"]}"'
    if description is not None:
        challenge += f', error="invalid_token", error_description="{description}"'
    return challenge


async def _request(campaign: CampaignServer, attempt: Attempt, *, port: int | None = None) -> HttpResponse:
    port = campaign.port if port is None else port
    async with open_peer(port, campaign.context()) as peer:
        await peer.send(http_request(port, attempt.target, add=attempt.headers))
        response = await peer.read_response()
        if response.status != 101:
            assert await peer.expect_eof() == b""
        return response


def _assert_not_leaked(
    campaign: CampaignServer, mark: int, response: HttpResponse, secret: str | None
) -> None:
    if secret is None:
        return
    assert secret.encode() not in response.head + response.body
    leaks = [line for line in campaign.log.since(mark) if secret in line]
    assert leaks == []


@pytest.mark.parametrize("case", TOKEN_CASES, ids=[case.id for case in TOKEN_CASES])
async def test_bad_credentials(campaign: CampaignServer, case: Case) -> None:
    attempt = case.attempt(tokens_of(campaign))
    async with guarded(campaign, memory_kib=MEMORY) as guard:
        response = await _request(campaign, attempt)
        assert response.status == case.status, response
        assert response.get_all("WWW-Authenticate") == [_challenge(campaign, case.description)]
        await campaign.barrier()
        _assert_not_leaked(campaign, guard.mark, response, attempt.secret)


# -- credentials that work, and must still not leak ---------------------------------------


async def test_token_in_query_string_is_accepted_and_never_logged(campaign: CampaignServer) -> None:
    token = tokens_of(campaign).jwt()
    async with guarded(campaign, memory_kib=MEMORY) as guard:
        async with open_ws(campaign, f"/private?room=1&access_token={token}") as peer:
            greeting = await peer.read_frame()
            assert greeting.payload == b"hello alice"
        await campaign.barrier()
        _assert_not_leaked(campaign, guard.mark, peer.response, token)


async def test_token_in_subprotocol_is_never_echoed_back(campaign: CampaignServer) -> None:
    token = tokens_of(campaign).static
    offer = [("Sec-WebSocket-Protocol", f"access_token.{token}, app.v1")]
    async with guarded(campaign, memory_kib=MEMORY) as guard:
        async with open_ws(campaign, "/private", add=offer) as peer:
            assert peer.response is not None
            assert peer.response.get_all("Sec-WebSocket-Protocol") == ["app.v1"]
            assert (await peer.read_frame()).payload == b"hello robot"
        await campaign.barrier()
        _assert_not_leaked(campaign, guard.mark, peer.response, token)


async def test_token_alone_in_subprotocol_selects_no_subprotocol(campaign: CampaignServer) -> None:
    """Only the token offered: the response selects nothing rather than the token."""
    token = tokens_of(campaign).static
    async with guarded(campaign, memory_kib=MEMORY) as guard:
        async with open_ws(
            campaign, "/private", add=[("Sec-WebSocket-Protocol", f"access_token.{token}")]
        ) as peer:
            assert peer.response is not None
            assert peer.response.get_all("Sec-WebSocket-Protocol") == []
        await campaign.barrier()
        _assert_not_leaked(campaign, guard.mark, peer.response, token)


async def test_connection_closes_with_1008_when_the_token_expires(campaign: CampaignServer) -> None:
    token = tokens_of(campaign).jwt(exp=int(time.time()) + 2)
    async with guarded(campaign, memory_kib=MEMORY), open_ws(campaign, "/private", add=bearer(token)) as peer:
        assert (await peer.read_frame()).payload == b"hello alice"
        await peer.expect_close(1008, reason=b"credentials expired", timeout=TIMEOUT)


# -- Origin -------------------------------------------------------------------------------

FORGED_ORIGINS = [
    ("evil-site", [("Origin", "https://evil.example")]),
    ("null-origin", [("Origin", "null")]),
    ("http-downgrade", [("Origin", "http://app.example")]),
    ("other-port", [("Origin", "https://app.example:8443")]),
    ("suffix-trick", [("Origin", "https://app.example.evil.example")]),
    ("prefix-trick", [("Origin", "https://evilapp.example")]),
    ("userinfo-trick", [("Origin", "https://app.example@evil.example")]),
    ("trailing-slash", [("Origin", "https://app.example/")]),
    ("homograph-cyrillic-a", [("Origin", "https://\u0430pp.example".encode().decode("latin-1"))]),
    ("origin-list", [("Origin", "https://app.example https://evil.example")]),
    ("two-origin-fields", [("Origin", "https://app.example"), ("Origin", "https://evil.example")]),
    ("empty-origin", [("Origin", "")]),
    ("origin-1500-chars", [("Origin", "https://" + "a" * 1500 + ".example")]),
]


@pytest.mark.parametrize("headers", [h for _, h in FORGED_ORIGINS], ids=[i for i, _ in FORGED_ORIGINS])
async def test_forged_origin(campaign: CampaignServer, headers: list[tuple[str, str]]) -> None:
    async with guarded(campaign, memory_kib=MEMORY):
        response = await _request(campaign, Attempt("/echo", headers))
        assert response.status == 403, response


@CONTROL
@pytest.mark.parametrize("origin", ["https://app.example", "HTTPS://APP.EXAMPLE", "https://app.example:443"])
async def test_allowed_origin_spellings(campaign: CampaignServer, origin: str) -> None:
    """Boundary of the Origin cases: the allowed origin in any spelling RFC 6454 makes equal."""
    async with guarded(campaign, memory_kib=MEMORY), open_ws(campaign, add=[("Origin", origin)]):
        pass


# -- client certificates (mutual TLS) -------------------------------------------------------

# A certificate the server does not accept ends the connection once TLS 1.3
# processes it (the client has finished its side by then): no HTTP answer.
REFUSED_CERTIFICATES = ["missing", "untrusted", "expired", "server_usage"]


def _client_context(campaign: CampaignServer, certificate: str, *, tls12: bool = False) -> ssl.SSLContext:
    if certificate == "missing":
        context = tls.client_context(cafile=campaign.ca)
    else:
        cert, key = campaign.info["client_certs"][certificate]
        context = tls.client_context(cafile=campaign.ca, certfile=cert, keyfile=key)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


@pytest.mark.parametrize("certificate", REFUSED_CERTIFICATES)
async def test_client_certificate_refused_tls13(campaign: CampaignServer, certificate: str) -> None:
    port = campaign.ports["mtls"]
    async with guarded(campaign, memory_kib=MEMORY):
        async with open_peer(port, _client_context(campaign, certificate)) as peer:
            assert peer.writer.get_extra_info("ssl_object").version() == "TLSv1.3"
            # The server may have dropped the connection before the request goes out.
            with suppress(ConnectionError):
                await peer.send(http_request(port, "/mtls"))
            assert await peer.expect_eof(timeout=1.0) == b""
        assert (await campaign.stats())["mtls"] == 0


@pytest.mark.parametrize("certificate", ["missing", "untrusted"])
async def test_client_certificate_refused_tls12(campaign: CampaignServer, certificate: str) -> None:
    """Under TLS 1.2 the server's verdict comes inside the handshake, which fails."""
    async with guarded(campaign, memory_kib=MEMORY):
        with pytest.raises((ConnectionResetError, ssl.SSLError, asyncio.IncompleteReadError)):
            async with open_peer(campaign.ports["mtls"], _client_context(campaign, certificate, tls12=True)):
                pass


async def test_client_certificate_not_allowed_gets_403(campaign: CampaignServer) -> None:
    """mallory's certificate is from the trusted CA, but not on /mtls's list."""
    port = campaign.ports["mtls"]
    async with (
        guarded(campaign, memory_kib=MEMORY),
        open_peer(port, _client_context(campaign, "mallory")) as peer,
    ):
        await peer.send(http_request(port, "/mtls"))
        response = await peer.read_response()
        assert response.status == 403, response
        assert response.get_all("WWW-Authenticate") == []


@CONTROL
async def test_client_certificate_allowed(campaign: CampaignServer) -> None:
    """Control of the certificate cases: alice's certificate opens /mtls."""
    port = campaign.ports["mtls"]
    async with (
        guarded(campaign, memory_kib=MEMORY),
        open_peer(port, _client_context(campaign, "alice")) as peer,
    ):
        await peer.send(http_request(port, "/mtls"))
        assert (await peer.read_response()).status == 101
        assert (await peer.read_frame()).payload.startswith(b"hello CN=alice,")
