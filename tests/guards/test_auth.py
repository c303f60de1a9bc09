"""Tests for wsskit.guards.auth: token sources, authenticators and the chain."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import secrets
import ssl
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, HMACAlgorithm

from wsskit.certs import ensure_dev_certificates, issue_client_certificate
from wsskit.exceptions import Forbidden, Rejected, Unauthorized
from wsskit.guards.auth import (
    DEFAULT_TOKEN_EXTRACTOR,
    AuthChain,
    AuthContext,
    CallableAuthenticator,
    ClientCertificateAuthenticator,
    Identity,
    InvalidToken,
    JWTAuthenticator,
    PeerCertificate,
    StaticTokenAuthenticator,
    TokenExtractor,
    redact_target,
    subprotocols_without_token,
)
from wsskit.protocol.events import Request
from wsskit.protocol.headers import Headers
from wsskit.tls import client_context, server_context

NOW = 1_700_000_000.0
SECRET = secrets.token_bytes(32)


def fixed_clock(value: float = NOW) -> Callable[[], float]:
    return lambda: value


def make_request(
    target: str = "/chat",
    headers: list[tuple[str, str]] | None = None,
    subprotocols: tuple[str, ...] = (),
) -> Request:
    return Request(target=target, headers=Headers(headers or []), subprotocols=subprotocols)


def make_ctx(
    target: str = "/chat",
    headers: list[tuple[str, str]] | None = None,
    subprotocols: tuple[str, ...] = (),
    peer_certificate: PeerCertificate | None = None,
) -> AuthContext:
    return AuthContext(
        make_request(target, headers, subprotocols),
        remote_address=("192.0.2.7", 50000),
        peer_certificate=peer_certificate,
    )


def bearer(token: str) -> AuthContext:
    return make_ctx(headers=[("Authorization", f"Bearer {token}")])


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "exp": NOW + 300}
    base.update(extra)
    return {name: value for name, value in base.items() if value is not None}


def hs256(payload: dict[str, Any], key: bytes = SECRET, **kwargs: Any) -> str:
    return jwt.encode(payload, key, algorithm="HS256", **kwargs)


def hs_authenticator(**kwargs: Any) -> JWTAuthenticator:
    kwargs.setdefault("key", SECRET)
    kwargs.setdefault("algorithms", ["HS256"])
    kwargs.setdefault("clock", fixed_clock())
    return JWTAuthenticator(**kwargs)


def refusal(authenticator: JWTAuthenticator, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        authenticator.verify(token)
    return info.value


def pem(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# -- Identity, AuthContext ---------------------------------------------------


def test_identity_copies_its_claims_and_is_hashable() -> None:
    source = {"sub": "alice", "scope": "read"}
    identity = Identity("alice", "jwt", source, NOW)
    source["scope"] = "admin"
    assert identity.claims == {"sub": "alice", "scope": "read"}
    assert hash(identity) == hash(Identity("alice", "jwt", {"other": 1}, NOW))
    assert Identity("bob", "token").claims == {}
    assert Identity("bob", "token").expires_at is None


def test_identity_needs_a_subject() -> None:
    with pytest.raises(ValueError, match="subject"):
        Identity("", "token")


def test_auth_context_repr_hides_tokens() -> None:
    token = hs256(claims())
    ctx = make_ctx(
        target=f"/chat?room=1&access_token={token}",
        headers=[("Authorization", f"Bearer {token}"), ("Cookie", f"access_token={token}")],
        subprotocols=("app.v1", f"access_token.{token}"),
    )
    text = repr(ctx)
    assert token not in text
    assert "/chat?room=1&access_token=[redacted]" in text
    assert "192.0.2.7" in text


# -- token sources -----------------------------------------------------------

TOKEN = "tok-" + "A1b2C3d4E5f6G7h8"


def test_token_from_authorization_header() -> None:
    assert (
        DEFAULT_TOKEN_EXTRACTOR.extract(make_request(headers=[("Authorization", f"Bearer {TOKEN}")])) == TOKEN
    )
    # RFC 7235 §2.1: the scheme is case-insensitive.
    assert (
        DEFAULT_TOKEN_EXTRACTOR.extract(make_request(headers=[("authorization", f"bEaReR   {TOKEN} ")]))
        == TOKEN
    )


def test_other_authorization_schemes_are_not_bearer_tokens() -> None:
    request = make_request(headers=[("Authorization", "Basic YWxpY2U6c2VjcmV0")])
    assert DEFAULT_TOKEN_EXTRACTOR.extract(request) is None


def test_token_from_cookie_only_when_asked_for() -> None:
    request = make_request(
        headers=[("Cookie", "theme=dark; access_token_old=x"), ("Cookie", f'access_token="{TOKEN}"; lang=en')]
    )
    # Cookies are opt-in: they need an Origin check (see AuthGuard).
    assert DEFAULT_TOKEN_EXTRACTOR.extract(request) is None
    assert TokenExtractor(("cookie",)).extract(request) == TOKEN
    named = TokenExtractor(("cookie",), cookie_name="sid")
    assert named.extract(make_request(headers=[("Cookie", f"a=1; sid={TOKEN}")])) == TOKEN
    assert named.extract(make_request(headers=[("Cookie", f"access_token={TOKEN}")])) is None


def test_token_from_query() -> None:
    assert DEFAULT_TOKEN_EXTRACTOR.extract(make_request(f"/chat?room=1&access_token={TOKEN}")) == TOKEN
    named = TokenExtractor(query_parameter="token")
    assert named.extract(make_request(f"/chat?token={TOKEN}")) == TOKEN
    assert named.extract(make_request(f"/chat?access_token={TOKEN}")) is None


def test_token_from_subprotocol() -> None:
    request = make_request(subprotocols=("wsskit.v1", f"access_token.{TOKEN}"))
    assert DEFAULT_TOKEN_EXTRACTOR.extract(request) == TOKEN
    named = TokenExtractor(subprotocol_prefix="bearer.")
    assert named.extract(make_request(subprotocols=("app", f"bearer.{TOKEN}"))) == TOKEN


def test_empty_cookie_or_query_value_is_no_token() -> None:
    assert TokenExtractor(("cookie",)).extract(make_request(headers=[("Cookie", "access_token=")])) is None
    assert DEFAULT_TOKEN_EXTRACTOR.extract(make_request("/chat?access_token=")) is None
    assert DEFAULT_TOKEN_EXTRACTOR.extract(make_request("/chat")) is None


def test_sources_are_tried_in_order() -> None:
    request = make_request(
        f"/chat?access_token=from-query-{TOKEN}",
        headers=[
            ("Authorization", f"Bearer from-header-{TOKEN}"),
            ("Cookie", f"access_token=from-cookie-{TOKEN}"),
        ],
        subprotocols=(f"access_token.from-protocol-{TOKEN}",),
    )
    assert DEFAULT_TOKEN_EXTRACTOR.extract(request) == f"from-header-{TOKEN}"
    assert TokenExtractor(("query", "header")).extract(request) == f"from-query-{TOKEN}"
    assert TokenExtractor(["subprotocol", "cookie"]).extract(request) == f"from-protocol-{TOKEN}"
    assert TokenExtractor(("cookie",)).extract(request) == f"from-cookie-{TOKEN}"


def test_disabled_sources_are_ignored() -> None:
    extractor = TokenExtractor(("header", "subprotocol"))
    assert extractor.extract(make_request(f"/chat?access_token={TOKEN}")) is None
    assert extractor.extract(make_request(headers=[("Cookie", f"access_token={TOKEN}")])) is None


@pytest.mark.parametrize(
    "request_",
    [
        make_request(headers=[("Authorization", "Bearer")]),
        make_request(headers=[("Authorization", "Bearer two words")]),
        make_request(headers=[("Authorization", 'Bearer a"b')]),
        make_request(headers=[("Cookie", "access_token=a,b")]),
        make_request("/chat?access_token=a%20b"),
        make_request(subprotocols=("access_token.",)),
    ],
    ids=["empty", "space", "quote", "cookie-comma", "query-space", "empty-protocol"],
)
def test_malformed_tokens_are_refused(request_: Request) -> None:
    with pytest.raises(InvalidToken, match="malformed token"):
        TokenExtractor(("header", "cookie", "query", "subprotocol")).extract(request_)


@pytest.mark.parametrize(
    "request_",
    [
        make_request(headers=[("Authorization", f"Bearer {TOKEN}"), ("Authorization", f"Bearer x{TOKEN}")]),
        make_request(f"/chat?access_token={TOKEN}&access_token=x{TOKEN}"),
        make_request(subprotocols=(f"access_token.{TOKEN}", f"access_token.x{TOKEN}")),
    ],
    ids=["header", "query", "subprotocol"],
)
def test_several_tokens_in_one_source_are_refused(request_: Request) -> None:
    with pytest.raises(InvalidToken, match="several") as info:
        DEFAULT_TOKEN_EXTRACTOR.extract(request_)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {"sources": ()}),
        ((("header", "header"),), {}),
        ((("body",),), {}),
        (("header",), {}),
        ((), {"cookie_name": "a b"}),
        ((), {"query_parameter": ""}),
        ((), {"subprotocol_prefix": ""}),
    ],
)
def test_extractor_configuration_errors(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TokenExtractor(*args, **kwargs)


def test_subprotocols_without_token() -> None:
    request = make_request(subprotocols=("wsskit.v1", f"access_token.{TOKEN}", "chat"))
    assert subprotocols_without_token(request) == ("wsskit.v1", "chat")
    assert DEFAULT_TOKEN_EXTRACTOR.subprotocols_without_token(request) == ("wsskit.v1", "chat")
    custom = TokenExtractor(subprotocol_prefix="bearer.")
    assert custom.subprotocols_without_token(make_request(subprotocols=("a", f"bearer.{TOKEN}"))) == ("a",)
    assert subprotocols_without_token(make_request()) == ()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/chat?access_token=abc.def", "/chat?access_token=[redacted]"),
        ("/chat?room=1&access_token=abc&x=2", "/chat?room=1&access_token=[redacted]&x=2"),
        ("/chat?access_token=a&access_token=b", "/chat?access_token=[redacted]&access_token=[redacted]"),
        ("/chat?access%5Ftoken=abc", "/chat?access%5Ftoken=[redacted]"),
        ("/chat?room=access_token=1", "/chat?room=access_token=1"),
        ("/chat?my_access_token=abc", "/chat?my_access_token=abc"),
        ("/chat?access_token", "/chat?access_token"),
        ("/chat", "/chat"),
        ("/access_token=abc", "/access_token=abc"),
        ("/chat?access_token=abc#frag", "/chat?access_token=[redacted]#frag"),
    ],
)
def test_redact_target(target: str, expected: str) -> None:
    assert redact_target(target) == expected


def test_redact_target_with_another_parameter() -> None:
    assert (
        redact_target("/c?token=abc&access_token=x", parameter="token")
        == "/c?token=[redacted]&access_token=x"
    )
    extractor = TokenExtractor(query_parameter="token")
    assert extractor.redact_target("/c?token=abc") == "/c?token=[redacted]"


# -- JWT: happy paths --------------------------------------------------------


async def test_jwt_hs256() -> None:
    payload = claims(scope="chat:read")
    identity = await hs_authenticator().authenticate(bearer(hs256(payload)))
    assert identity == Identity("alice", "jwt", payload, NOW + 300)
    assert identity is not None and identity.expires_at == NOW + 300


async def test_jwt_es256_with_key_object_or_pem(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = jwt.encode(claims(), ec_key, algorithm="ES256")
    for key in (ec_key.public_key(), pem(ec_key.public_key()), pem(ec_key.public_key()).decode()):
        authenticator = JWTAuthenticator(key=key, algorithms=["ES256"], clock=fixed_clock())
        identity = await authenticator.authenticate(bearer(token))
        assert identity is not None and identity.subject == "alice"


async def test_jwt_from_every_source() -> None:
    token = hs256(claims())
    authenticator = hs_authenticator(extractor=TokenExtractor(("header", "cookie", "query", "subprotocol")))
    contexts = [
        bearer(token),
        make_ctx(headers=[("Cookie", f"access_token={token}")]),
        make_ctx(f"/chat?access_token={token}"),
        make_ctx(subprotocols=("wsskit.v1", f"access_token.{token}")),
    ]
    for ctx in contexts:
        identity = await authenticator.authenticate(ctx)
        assert identity is not None and identity.subject == "alice"


async def test_jwt_declines_requests_without_a_jws() -> None:
    authenticator = hs_authenticator()
    assert await authenticator.authenticate(make_ctx()) is None
    assert await authenticator.authenticate(bearer(TOKEN)) is None
    assert await authenticator.authenticate(bearer("not.a.jwt")) is None
    # The same string given to verify() directly is refused, not declined.
    assert str(refusal(authenticator, "not.a.jwt")) == "malformed token"


async def test_jwt_subject_claim_and_optional_exp() -> None:
    authenticator = hs_authenticator(subject_claim="email", required_claims=())
    identity = await authenticator.authenticate(bearer(hs256({"email": "a@example.org"})))
    assert identity is not None
    assert identity.subject == "a@example.org"
    assert identity.expires_at is None


# -- JWT: refusals -----------------------------------------------------------


def test_jwt_expired_not_yet_valid_and_leeway() -> None:
    strict = hs_authenticator()
    lenient = hs_authenticator(leeway=10)
    assert str(refusal(strict, hs256(claims(exp=NOW - 5)))) == "token expired"
    # RFC 7519 §4.1.4: "on or after" the expiry.
    assert str(refusal(strict, hs256(claims(exp=NOW)))) == "token expired"
    assert lenient.verify(hs256(claims(exp=NOW - 5))).expires_at == NOW - 5
    assert str(refusal(lenient, hs256(claims(exp=NOW - 10)))) == "token expired"

    assert str(refusal(strict, hs256(claims(nbf=NOW + 5)))) == "token not yet valid"
    assert lenient.verify(hs256(claims(nbf=NOW + 5))).subject == "alice"
    assert strict.verify(hs256(claims(nbf=NOW))).subject == "alice"

    assert str(refusal(strict, hs256(claims(iat=NOW + 60)))) == "token issued in the future"
    assert strict.verify(hs256(claims(iat=NOW - 60))).subject == "alice"


def test_jwt_times_follow_the_injected_clock() -> None:
    now = [NOW]
    authenticator = hs_authenticator(clock=lambda: now[0])
    token = hs256(claims(exp=NOW + 60))
    assert authenticator.verify(token).subject == "alice"
    now[0] = NOW + 61
    assert str(refusal(authenticator, token)) == "token expired"


@pytest.mark.parametrize("value", ["soon", True, float("nan"), float("inf")], ids=repr)
def test_jwt_time_claims_must_be_numbers(value: Any) -> None:
    assert str(refusal(hs_authenticator(), hs256(claims(exp=value)))) == "claim 'exp' is not a number"


def test_jwt_audience() -> None:
    authenticator = hs_authenticator(audience="chat")
    assert authenticator.verify(hs256(claims(aud="chat"))).subject == "alice"
    assert authenticator.verify(hs256(claims(aud=["other", "chat"]))).subject == "alice"
    assert str(refusal(authenticator, hs256(claims(aud="billing")))) == "invalid audience"
    assert str(refusal(authenticator, hs256(claims()))) == "missing claim 'aud'"
    several = hs_authenticator(audience=["chat", "feed"])
    assert several.verify(hs256(claims(aud="feed"))).subject == "alice"
    # A token meant for some audience is not for a server that names none.
    assert str(refusal(hs_authenticator(), hs256(claims(aud="chat")))) == "invalid audience"


def test_jwt_issuer() -> None:
    authenticator = hs_authenticator(issuer="https://id.example")
    assert authenticator.verify(hs256(claims(iss="https://id.example"))).subject == "alice"
    assert str(refusal(authenticator, hs256(claims(iss="https://evil.example")))) == "invalid issuer"
    several = hs_authenticator(issuer=["https://a.example", "https://b.example"])
    assert several.verify(hs256(claims(iss="https://b.example"))).subject == "alice"
    assert str(refusal(several, hs256(claims(iss="https://c.example")))) == "invalid issuer"


def test_jwt_required_claims_and_subject() -> None:
    authenticator = hs_authenticator(required_claims=("exp", "jti"))
    assert str(refusal(authenticator, hs256(claims()))) == "missing claim 'jti'"
    assert str(refusal(hs_authenticator(), hs256({"sub": "alice"}))) == "missing claim 'exp'"
    assert str(refusal(hs_authenticator(), hs256(claims(sub=None)))) == "token has no subject"
    assert (
        str(refusal(hs_authenticator(subject_claim="email"), hs256(claims(email=""))))
        == "token has no subject"
    )


def test_jwt_bad_signature() -> None:
    forged = hs256(claims(), key=secrets.token_bytes(32))
    assert str(refusal(hs_authenticator(), forged)) == "invalid signature"
    header, _, signature = hs256(claims()).split(".")
    other_payload = hs256(claims(sub="mallory")).split(".")[1]
    assert str(refusal(hs_authenticator(), f"{header}.{other_payload}.{signature}")) == "invalid signature"


def test_jwt_alg_none_token_is_refused() -> None:
    unsigned = jwt.encode(claims(), "", algorithm="none")
    assert str(refusal(hs_authenticator(), unsigned)) == "algorithm not allowed"


@pytest.mark.parametrize(
    "algorithms",
    [[], ["none"], ["HS256", "None"], ["NONE"], "HS256", ["XS256"]],
    ids=["empty", "none", "mixed-None", "NONE", "string", "unknown"],
)
def test_jwt_algorithm_allow_list_is_checked(algorithms: Any) -> None:
    with pytest.raises(ValueError):
        JWTAuthenticator(key=SECRET, algorithms=algorithms)


def test_jwt_configuration_errors(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JWTAuthenticator(algorithms=["HS256"])
    with pytest.raises(ValueError, match="exactly one"):
        JWTAuthenticator(key=SECRET, jwks_file=tmp_path / "keys.json", algorithms=["HS256"])
    # RFC 7518 §3.2: an HMAC key at least as long as the hash.
    with pytest.raises(ValueError, match="HMAC key"):
        JWTAuthenticator(key=b"short secret", algorithms=["HS256"])
    with pytest.raises(ValueError, match="HMAC key"):
        JWTAuthenticator(key=SECRET, algorithms=["HS512"])
    with pytest.raises(ValueError, match="does not suit ES256"):
        JWTAuthenticator(key=SECRET, algorithms=["ES256"])
    with pytest.raises(ValueError, match="leeway"):
        JWTAuthenticator(key=SECRET, algorithms=["HS256"], leeway=-1)
    with pytest.raises(ValueError, match="audience"):
        JWTAuthenticator(key=SECRET, algorithms=["HS256"], audience=[])
    with pytest.raises(FileNotFoundError):
        JWTAuthenticator(jwks_file=tmp_path / "missing.json", algorithms=["ES256"])


def test_jwt_public_key_cannot_be_an_hmac_secret(
    ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    # An allow-list mixing families with one key is the classic confusion
    # set-up: refused when the authenticator is built.
    for public in (ec_key.public_key(), rsa_key.public_key()):
        for key in (public, pem(public), pem(public).decode()):
            family = "ES256" if isinstance(public, ec.EllipticCurvePublicKey) else "RS256"
            with pytest.raises(ValueError, match="does not suit HS256"):
                JWTAuthenticator(key=key, algorithms=[family, "HS256"])


class _LaxHMAC(HMACAlgorithm):
    """HMAC that takes any bytes as its secret, as a confused verifier would."""

    def prepare_key(self, key: Any) -> bytes:
        return key if isinstance(key, bytes) else str(key).encode()


def hs256_signed_with(secret: bytes, payload: dict[str, Any], **headers: Any) -> str:
    """An HS256 token whose HMAC secret is ``secret`` (a public key, for the attack)."""
    signer = jwt.PyJWS(algorithms=[])
    signer.register_algorithm("HS256", _LaxHMAC(HMACAlgorithm.SHA256))
    return signer.encode(json.dumps(payload).encode(), secret, algorithm="HS256", headers=headers or None)


@pytest.mark.parametrize("family", ["ES256", "RS256"])
async def test_jwt_algorithm_confusion_is_refused(
    family: str, ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    private: Any = ec_key if family == "ES256" else rsa_key
    public_pem = pem(private.public_key())
    authenticator = JWTAuthenticator(key=public_pem, algorithms=[family], clock=fixed_clock())
    genuine = jwt.encode(claims(), private, algorithm=family)
    assert authenticator.verify(genuine).subject == "alice"
    forged = hs256_signed_with(public_pem, claims(sub="admin"))
    with pytest.raises(InvalidToken, match="algorithm not allowed"):
        await authenticator.authenticate(bearer(forged))


# -- JWT: key sets -----------------------------------------------------------


def jwk_of(key: ec.EllipticCurvePrivateKey, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    data.update(fields)
    return data


def write_jwks(path: Path, *keys: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(keys)}))
    return path


@pytest.fixture
def two_keys(tmp_path: Path) -> Iterator[tuple[Path, ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]]:
    key_a = ec.generate_private_key(ec.SECP256R1())
    key_b = ec.generate_private_key(ec.SECP256R1())
    path = write_jwks(
        tmp_path / "jwks.json",
        jwk_of(key_a, kid="a", alg="ES256", use="sig"),
        jwk_of(key_b, kid="b", alg="ES256"),
    )
    yield path, key_a, key_b


def test_jwks_picks_the_key_by_kid(two_keys: tuple[Path, Any, Any]) -> None:
    path, key_a, key_b = two_keys
    authenticator = JWTAuthenticator(jwks_file=path, algorithms=["ES256"], clock=fixed_clock())
    token_a = jwt.encode(claims(sub="a"), key_a, algorithm="ES256", headers={"kid": "a"})
    token_b = jwt.encode(claims(sub="b"), key_b, algorithm="ES256", headers={"kid": "b"})
    assert authenticator.verify(token_a).subject == "a"
    assert authenticator.verify(token_b).subject == "b"
    mislabelled = jwt.encode(claims(), key_b, algorithm="ES256", headers={"kid": "a"})
    assert str(refusal(authenticator, mislabelled)) == "invalid signature"
    unknown = jwt.encode(claims(), key_b, algorithm="ES256", headers={"kid": "zzz-attacker"})
    error = refusal(authenticator, unknown)
    assert str(error) == "unknown key id"
    assert "zzz-attacker" not in str(error)
    no_kid = jwt.encode(claims(), key_a, algorithm="ES256")
    assert str(refusal(authenticator, no_kid)) == "token has no key id"


def test_jwks_with_one_key_serves_tokens_without_kid(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write_jwks(tmp_path / "one.json", jwk_of(ec_key))
    authenticator = JWTAuthenticator(jwks_file=str(path), algorithms=["ES256"], clock=fixed_clock())
    assert authenticator.verify(jwt.encode(claims(), ec_key, algorithm="ES256")).subject == "alice"


def test_jwks_key_verifies_with_its_own_algorithm_only(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    secret = secrets.token_bytes(32)
    oct_key = {"kty": "oct", "kid": "h", "alg": "HS256", "k": jwt.utils.base64url_encode(secret).decode()}
    path = write_jwks(tmp_path / "mixed.json", jwk_of(ec_key, kid="e", alg="ES256"), oct_key)
    authenticator = JWTAuthenticator(jwks_file=path, algorithms=["ES256", "HS256"], clock=fixed_clock())
    assert authenticator.verify(hs256(claims(), key=secret, headers={"kid": "h"})).subject == "alice"
    assert authenticator.verify(jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "e"})).subject
    # An HS256 token naming the EC key: the HMAC "secret" would be the public key.
    public_pem = pem(ec_key.public_key())
    forged = hs256_signed_with(public_pem, claims(sub="admin"), kid="e")
    assert str(refusal(authenticator, forged)) == "algorithm does not match the key"


def test_jwks_reload(two_keys: tuple[Path, Any, Any]) -> None:
    path, key_a, _ = two_keys
    authenticator = JWTAuthenticator(jwks_file=path, algorithms=["ES256"], clock=fixed_clock())
    key_c = ec.generate_private_key(ec.SECP256R1())
    token_c = jwt.encode(claims(), key_c, algorithm="ES256", headers={"kid": "c"})
    token_a = jwt.encode(claims(), key_a, algorithm="ES256", headers={"kid": "a"})
    assert str(refusal(authenticator, token_c)) == "unknown key id"
    write_jwks(path, jwk_of(key_c, kid="c"))
    authenticator.reload()
    assert authenticator.verify(token_c).subject == "alice"
    assert str(refusal(authenticator, token_a)) == "unknown key id"
    # A broken file leaves the keys in use as they were.
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        authenticator.reload()
    assert authenticator.verify(token_c).subject == "alice"
    with pytest.raises(RuntimeError):
        hs_authenticator().reload()


def test_jwks_file_errors(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> None:
    def build(document: Any) -> JWTAuthenticator:
        path = tmp_path / "keys.json"
        path.write_text(json.dumps(document))
        return JWTAuthenticator(jwks_file=path, algorithms=["ES256", "HS256"])

    with pytest.raises(ValueError, match='no "keys"'):
        build({"kty": "EC"})
    with pytest.raises(ValueError, match="no signature key"):
        build({"keys": []})
    with pytest.raises(ValueError, match="no signature key"):
        build({"keys": [jwk_of(ec_key, use="enc")]})
    with pytest.raises(ValueError, match="no signature key"):
        build({"keys": [jwk_of(ec_key, alg="ES384"), {"kty": "nonsense"}]})
    with pytest.raises(ValueError, match="two keys"):
        build({"keys": [jwk_of(ec_key, kid="x"), jwk_of(ec_key, kid="x")]})
    with pytest.raises(ValueError, match="not all of them"):
        build({"keys": [jwk_of(ec_key, kid="x"), jwk_of(ec_key)]})
    short_secret = jwt.utils.base64url_encode(b"sixteen byte key").decode()
    with pytest.raises(ValueError, match="HMAC key") as info:
        build({"keys": [{"kty": "oct", "alg": "HS256", "k": short_secret}]})
    assert short_secret not in str(info.value)


# -- tokens never leak -------------------------------------------------------


def leaks(error: BaseException, token: str) -> bool:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    parts = [part for part in token.split(".") if len(part) > 8]
    return token in text or token in repr(error) or any(part in text for part in parts)


@pytest.mark.parametrize(
    "token",
    [
        hs256(claims(exp=NOW - 1)),
        hs256(claims(nbf=NOW + 100)),
        hs256(claims(aud="other")),
        hs256(claims(), key=secrets.token_bytes(32)),
        jwt.encode(claims(), "", algorithm="none"),
        hs256({"sub": "alice"}),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ.bad_signature_part",
        "eyJhbGciOiJIUzI1NiIsImtpZCI6MX0.e30.c2lnbmF0dXJlLXBhcnQ",
    ],
    ids=["expired", "immature", "audience", "signature", "none", "no-exp", "bad-payload", "bad-kid"],
)
async def test_jwt_errors_never_carry_the_token(token: str) -> None:
    authenticator = hs_authenticator()
    chain = AuthChain([authenticator])
    with pytest.raises(InvalidToken) as info:
        await chain.authenticate(bearer(token))
    error = info.value
    assert error.__cause__ is None
    assert error.__context__ is None
    assert not leaks(error, token)
    assert not any(token in value for _, value in chain.rejection_headers(error))


def test_reprs_do_not_show_secrets() -> None:
    assert SECRET.hex() not in repr(hs_authenticator())
    assert repr(SECRET) not in repr(hs_authenticator())
    assert "key" in repr(hs_authenticator())


# -- static tokens -----------------------------------------------------------

ALICE_TOKEN = secrets.token_urlsafe(32)
BOB_TOKEN = secrets.token_urlsafe(32)


async def test_static_tokens() -> None:
    authenticator = StaticTokenAuthenticator({ALICE_TOKEN: "alice", BOB_TOKEN: "bob"})
    assert await authenticator.authenticate(bearer(BOB_TOKEN)) == Identity("bob", "token")
    assert await authenticator.authenticate(bearer(ALICE_TOKEN)) == Identity("alice", "token")
    assert await authenticator.authenticate(make_ctx()) is None
    stranger = secrets.token_urlsafe(32)
    with pytest.raises(InvalidToken, match="unknown token") as info:
        await authenticator.authenticate(bearer(stranger))
    assert not leaks(info.value, stranger)


async def test_static_tokens_from_the_subprotocol() -> None:
    authenticator = StaticTokenAuthenticator(
        {ALICE_TOKEN: "alice"}, extractor=TokenExtractor(("subprotocol",), subprotocol_prefix="key.")
    )
    ctx = make_ctx(subprotocols=("app.v1", f"key.{ALICE_TOKEN}"))
    assert await authenticator.authenticate(ctx) == Identity("alice", "token")
    assert await authenticator.authenticate(bearer(ALICE_TOKEN)) is None


def test_static_tokens_are_kept_hashed() -> None:
    authenticator = StaticTokenAuthenticator({ALICE_TOKEN: "alice", BOB_TOKEN: "bob"})
    everything = repr(authenticator) + repr(vars(authenticator))
    for token in (ALICE_TOKEN, BOB_TOKEN):
        assert token not in everything
        assert token.encode() not in everything.encode()
    digests = [digest for digest, _ in authenticator._entries]
    assert hashlib.sha256(ALICE_TOKEN.encode()).digest() in digests


async def test_static_tokens_compare_with_every_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = {secrets.token_urlsafe(32): f"user{n}" for n in range(5)}
    first = next(iter(tokens))
    authenticator = StaticTokenAuthenticator(tokens)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert await authenticator.authenticate(bearer(first)) == Identity("user0", "token")
    assert len(calls) == len(tokens)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ({}, "at least one"),
        ({"short-token": "alice"}, "shorter than 16"),
        ({"has spaces in the token!": "alice"}, "characters"),
        ({ALICE_TOKEN: ""}, "empty subject"),
    ],
)
def test_static_token_configuration_errors(tokens: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        StaticTokenAuthenticator(tokens)
    for token in tokens:
        assert token not in str(info.value)


# -- client certificates -----------------------------------------------------


def tls_handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """Run a real TLS handshake in memory and return the server's side."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(client_in, client_out, server_hostname="localhost")
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    done = [False, False]
    for _ in range(20):
        for index, side in enumerate((client_side, server_side)):
            if not done[index]:
                try:
                    side.do_handshake()
                    done[index] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done):
            break
    assert all(done)
    return server_side


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    paths, _ = ensure_dev_certificates(directory, hosts=["localhost"])
    cert, key = issue_client_certificate("alice@example.test", directory)
    return {"ca": paths.ca_cert, "server_cert": paths.cert, "server_key": paths.key, "cert": cert, "key": key}


def test_peer_certificate_from_a_real_mutual_tls_handshake(pki: dict[str, Path]) -> None:
    server = server_context(pki["server_cert"], pki["server_key"], client_ca=pki["ca"])
    client = client_context(pki["ca"], pki["cert"], pki["key"])
    certificate = PeerCertificate.from_ssl_object(tls_handshake(server, client))
    expected = x509.load_pem_x509_certificate(pki["cert"].read_bytes())
    assert certificate is not None
    assert certificate.subject == expected.subject.rfc4514_string()
    assert "CN=alice@example.test" in certificate.subject
    assert "email:alice@example.test" in certificate.sans
    assert certificate.fingerprint_sha256 == expected.fingerprint(hashes.SHA256()).hex()
    assert certificate.not_valid_after == expected.not_valid_after_utc.timestamp()


def test_no_peer_certificate_without_mutual_tls(pki: dict[str, Path]) -> None:
    server = server_context(pki["server_cert"], pki["server_key"])
    client = client_context(pki["ca"], pki["cert"], pki["key"])
    assert PeerCertificate.from_ssl_object(tls_handshake(server, client)) is None


def test_unverified_certificate_does_not_count(pki: dict[str, Path]) -> None:
    der = x509.load_pem_x509_certificate(pki["cert"].read_bytes()).public_bytes(serialization.Encoding.DER)

    class Unverified:
        def getpeercert(self, binary_form: bool = False) -> Any:
            return der if binary_form else {}

    assert PeerCertificate.from_ssl_object(Unverified()) is None  # type: ignore[arg-type]


def self_signed(name: x509.Name, alt_names: list[x509.GeneralName]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_peer_certificate_from_der_lists_every_kind_of_name() -> None:
    der = self_signed(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                x509.NameAttribute(NameOID.COMMON_NAME, "svc"),
            ]
        ),
        [
            x509.DNSName("svc.example"),
            x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
            x509.UniformResourceIdentifier("spiffe://example.org/svc"),
            x509.RFC822Name("ops@example.org"),
        ],
    )
    certificate = PeerCertificate.from_der(der)
    assert certificate.subject == "CN=svc,O=Example"
    assert certificate.sans == (
        "DNS:svc.example",
        "IP:2001:db8::1",
        "URI:spiffe://example.org/svc",
        "email:ops@example.org",
    )
    assert certificate.fingerprint_sha256 == hashlib.sha256(der).hexdigest()
    assert (
        certificate.not_valid_after
        == datetime.datetime(2024, 1, 31, tzinfo=datetime.timezone.utc).timestamp()
    )
    with pytest.raises(ValueError):
        PeerCertificate.from_der(b"not a certificate")


ALICE_CERT = PeerCertificate(
    subject="CN=alice,O=Example",
    sans=("DNS:alice.example", "URI:spiffe://example.org/alice"),
    fingerprint_sha256="ab" * 32,
    not_valid_after=NOW + 3600,
)


async def test_certificate_identity() -> None:
    authenticator = ClientCertificateAuthenticator()
    identity = await authenticator.authenticate(make_ctx(peer_certificate=ALICE_CERT))
    assert identity == Identity("CN=alice,O=Example", "certificate", {}, NOW + 3600)
    assert await authenticator.authenticate(make_ctx()) is None


async def test_certificate_allow_lists() -> None:
    ctx = make_ctx(peer_certificate=ALICE_CERT)
    allowed = [
        ClientCertificateAuthenticator(allowed_subjects=["CN=alice,O=Example"]),
        ClientCertificateAuthenticator(allowed_subjects={"URI:spiffe://example.org/alice"}),
        ClientCertificateAuthenticator(allowed_fingerprints=[":".join(["AB"] * 32)]),
        ClientCertificateAuthenticator(allowed_subjects=["CN=bob"], allowed_fingerprints=["ab" * 32]),
    ]
    for authenticator in allowed:
        identity = await authenticator.authenticate(ctx)
        assert identity is not None and identity.method == "certificate"
    refused = [
        ClientCertificateAuthenticator(allowed_subjects=["CN=bob,O=Example", "alice.example"]),
        ClientCertificateAuthenticator(allowed_fingerprints=["cd" * 32]),
    ]
    for authenticator in refused:
        with pytest.raises(Forbidden) as info:
            await authenticator.authenticate(ctx)
        assert info.value.status == 403


async def test_certificate_without_subject_name_uses_its_first_alt_name() -> None:
    certificate = PeerCertificate(
        subject="", sans=("URI:spiffe://example.org/job",), fingerprint_sha256="ab" * 32
    )
    identity = await ClientCertificateAuthenticator().authenticate(make_ctx(peer_certificate=certificate))
    assert identity is not None and identity.subject == "URI:spiffe://example.org/job"
    assert identity.expires_at is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allowed_subjects": []},
        {"allowed_subjects": "CN=alice"},
        {"allowed_fingerprints": []},
        {"allowed_fingerprints": ["abc"]},
        {"allowed_fingerprints": ["zz" * 32]},
    ],
)
def test_certificate_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ClientCertificateAuthenticator(**kwargs)


# -- callables ---------------------------------------------------------------


async def test_callable_sync_and_async() -> None:
    def sync(ctx: AuthContext) -> str | None:
        return "alice" if ctx.request.path == "/chat" else None

    async def asynchronous(ctx: AuthContext) -> Identity:
        return Identity("bob", "ldap", {"group": "ops"}, NOW + 5)

    assert await CallableAuthenticator(sync).authenticate(make_ctx()) == Identity("alice", "callable")
    assert await CallableAuthenticator(sync).authenticate(make_ctx("/other")) is None
    assert await CallableAuthenticator(sync, method="header").authenticate(make_ctx()) == Identity(
        "alice", "header"
    )
    assert await CallableAuthenticator(asynchronous).authenticate(make_ctx()) == Identity(
        "bob", "ldap", {"group": "ops"}, NOW + 5
    )


async def test_callable_errors() -> None:
    def refuse(ctx: AuthContext) -> None:
        raise Forbidden("not today")

    with pytest.raises(Forbidden, match="not today"):
        await CallableAuthenticator(refuse).authenticate(make_ctx())
    with pytest.raises(TypeError, match="int"):
        await CallableAuthenticator(lambda ctx: 42).authenticate(make_ctx())  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError):
        await CallableAuthenticator(lambda ctx: "").authenticate(make_ctx())


# -- the chain ---------------------------------------------------------------


class Spy:
    def __init__(self, result: Identity | None = None, error: Rejected | None = None) -> None:
        self.result = result
        self.error = error
        self.calls = 0

    async def authenticate(self, ctx: AuthContext) -> Identity | None:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result


async def test_chain_first_identity_wins() -> None:
    first, second, third = Spy(), Spy(Identity("bob", "spy")), Spy(Identity("carol", "spy"))
    chain = AuthChain([first, second, third])
    assert await chain.authenticate(make_ctx()) == Identity("bob", "spy")
    assert (first.calls, second.calls, third.calls) == (1, 1, 0)


async def test_chain_refusal_stops_it() -> None:
    later = Spy(Identity("bob", "spy"))
    chain = AuthChain([Spy(error=Forbidden("banned")), later])
    with pytest.raises(Forbidden):
        await chain.authenticate(make_ctx())
    assert later.calls == 0


async def test_chain_without_credentials_is_401() -> None:
    chain = AuthChain([Spy(), Spy()])
    with pytest.raises(Unauthorized) as info:
        await chain.authenticate(make_ctx())
    error = info.value
    assert not isinstance(error, InvalidToken)
    assert error.status == 401
    # RFC 6750 §3.1: no error code when the request had no credentials.
    assert chain.www_authenticate(error) == 'Bearer realm="wsskit"'
    assert chain.rejection_headers(error) == [("WWW-Authenticate", 'Bearer realm="wsskit"')]


async def test_chain_with_an_unrecognised_token_says_invalid_token() -> None:
    chain = AuthChain([hs_authenticator()], realm="chat")
    with pytest.raises(InvalidToken) as info:
        await chain.authenticate(bearer(TOKEN))
    assert chain.www_authenticate(info.value) == (
        'Bearer realm="chat", error="invalid_token", error_description="token not recognised"'
    )


async def test_chain_not_required_lets_anonymous_in() -> None:
    assert await AuthChain([Spy()], required=False).authenticate(make_ctx()) is None


async def test_chain_of_jwt_static_and_certificate() -> None:
    static = StaticTokenAuthenticator({ALICE_TOKEN: "service-a"})
    chain = AuthChain(
        [ClientCertificateAuthenticator(allowed_subjects=["CN=alice,O=Example"]), hs_authenticator(), static]
    )

    identity = await chain.authenticate(bearer(hs256(claims(sub="bob"))))
    assert identity is not None and (identity.subject, identity.method) == ("bob", "jwt")
    identity = await chain.authenticate(bearer(ALICE_TOKEN))
    assert identity is not None and (identity.subject, identity.method) == ("service-a", "token")
    identity = await chain.authenticate(make_ctx(peer_certificate=ALICE_CERT))
    assert identity is not None and identity.method == "certificate"

    with pytest.raises(InvalidToken) as expired:
        await chain.authenticate(bearer(hs256(claims(exp=NOW - 1))))
    assert chain.rejection_headers(expired.value) == [
        (
            "WWW-Authenticate",
            'Bearer realm="wsskit", error="invalid_token", error_description="token expired"',
        )
    ]
    with pytest.raises(InvalidToken, match="unknown token"):
        await chain.authenticate(bearer(secrets.token_urlsafe(32)))

    stranger = PeerCertificate("CN=eve", (), "cd" * 32)
    with pytest.raises(Forbidden) as forbidden:
        await chain.authenticate(make_ctx(peer_certificate=stranger))
    assert forbidden.value.status == 403
    assert chain.rejection_headers(forbidden.value) == []


def test_challenge_description_is_sanitised() -> None:
    chain = AuthChain([Spy()])
    header = chain.www_authenticate(InvalidToken('bad "quote" \\ and\r\nSet-Cookie: x=1'))
    assert header == (
        'Bearer realm="wsskit", error="invalid_token", error_description="bad quote  andSet-Cookie: x=1"'
    )
    assert "\r" not in chain.www_authenticate(InvalidToken("x" * 1000))


def test_chain_configuration_errors() -> None:
    with pytest.raises(ValueError):
        AuthChain([])
    with pytest.raises(ValueError):
        AuthChain([Spy()], realm='a"b')
    with pytest.raises(ValueError):
        AuthChain([Spy()], realm="a\r\nb")
