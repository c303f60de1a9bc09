"""Authentication: who opens this WebSocket, and until when.

An :class:`AuthChain` asks its authenticators in order. Each one looks at an
:class:`AuthContext` (the upgrade request, the peer's address, its verified
TLS client certificate) and either returns an :class:`Identity`, returns
None to decline (the credential it understands is not there, or is not
its kind), or raises :class:`~wsskit.exceptions.Unauthorized` (401) or
:class:`~wsskit.exceptions.Forbidden` (403) to end the chain. The first
Identity wins; when every authenticator declines, a chain that requires
authentication answers 401 with a ``WWW-Authenticate`` challenge
(:meth:`AuthChain.rejection_headers`).

Bearer tokens (RFC 6750) reach the server in one of four places, tried in the
order a :class:`TokenExtractor` is given:

``"header"``
    ``Authorization: Bearer <token>`` (RFC 6750 §2.1), for clients that can
    set headers.
``"cookie"``
    a cookie, ``access_token`` by default. A browser sends cookies with
    requests that other sites' pages start, so cookie authentication needs
    an Origin allow-list (:class:`~wsskit.guards.origin.OriginPolicy`) to
    stop cross-site WebSocket hijacking.
``"query"``
    the ``access_token`` query parameter (RFC 6750 §2.3). Request targets
    end up in logs: log :func:`redact_target` of them.
``"subprotocol"``
    an entry of ``Sec-WebSocket-Protocol`` made of a prefix and the token,
    ``access_token.<token>`` by default. The browser ``WebSocket`` API can set
    no header but can offer subprotocols:
    ``new WebSocket(url, ["app.v1", "access_token." + token])``. The server
    must never echo that entry back, so it selects among
    :func:`subprotocols_without_token`; and the client must offer a real
    subprotocol besides the token, because browsers fail a handshake whose
    response selects none of several offered subprotocols.

Tokens never appear in exception messages, in tracebacks or in reprs.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, Union, cast
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidSubjectError

from ..exceptions import Forbidden, Rejected, Unauthorized
from ..protocol.events import Request
from ..protocol.headers import is_token
from ..tls import PeerCertificate
from .origin import OriginPolicy

__all__ = [
    "AuthGuard",
    "Identity",
    "PeerCertificate",
    "AuthContext",
    "InvalidToken",
    "Authenticator",
    "TokenSource",
    "TokenExtractor",
    "DEFAULT_TOKEN_EXTRACTOR",
    "subprotocols_without_token",
    "redact_target",
    "JWTAuthenticator",
    "StaticTokenAuthenticator",
    "ClientCertificateAuthenticator",
    "AuthFunction",
    "CallableAuthenticator",
    "AuthChain",
]

TokenSource = Literal["header", "cookie", "query", "subprotocol"]
"""A place in the upgrade request where a bearer token may travel."""

_SOURCES: Final[tuple[TokenSource, ...]] = ("header", "cookie", "query", "subprotocol")

# Cookies are left out unless asked for: a browser attaches them to WebSocket
# requests that any site's page opens, so they need an Origin check (AuthGuard
# refuses to run cookie sources without one).
_DEFAULT_SOURCES: Final[tuple[TokenSource, ...]] = ("header", "query", "subprotocol")

_DEFAULT_NAME: Final = "access_token"
_DEFAULT_PREFIX: Final = "access_token."
_REDACTED: Final = "[redacted]"

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

# RFC 6750 §3: the characters allowed in the values of the challenge's
# attributes; they also keep a quote, a backslash or a CR LF out of the header.
_CHALLENGE_CHARS: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_MAX_DESCRIPTION: Final = 200

# Static tokens shorter than this fall to a guess, or their SHA-256 to a
# search, too easily.
_MIN_STATIC_TOKEN_LENGTH: Final = 16

_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")


# -- identities and contexts -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """Who an authenticator says the peer is.

    ``method`` names the authenticator (``"jwt"``, ``"token"``,
    ``"certificate"``, ``"callable"``...); ``claims`` holds a JWT's verified
    claims, or nothing. ``expires_at`` (seconds since the epoch) is when the
    credential stops being valid: the connection is closed with 1008 then
    unless the identity is refreshed; None means it does not expire.

    Raises :class:`ValueError` if ``subject`` is empty.
    """

    subject: str
    method: str
    claims: Mapping[str, Any] = field(default_factory=dict, hash=False)
    expires_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject:
            raise ValueError("an identity needs a non-empty subject")
        # A copy, so that the caller's dict changing later does not change
        # who was authenticated.
        object.__setattr__(self, "claims", dict(self.claims))


@dataclass(frozen=True, slots=True, repr=False)
class AuthContext:
    """What authenticators see: the upgrade request and the connection's facts.

    ``remote_address`` is the peer's address as the transport reports it;
    ``peer_certificate`` the client certificate the TLS handshake verified,
    if any. The repr leaves out headers and redacts the target, so a context
    can be logged without its token.
    """

    request: Request
    remote_address: Any = None
    peer_certificate: PeerCertificate | None = None

    def __repr__(self) -> str:
        return (
            f"AuthContext(target={redact_target(self.request.target)!r}, "
            f"remote_address={self.remote_address!r}, peer_certificate={self.peer_certificate!r})"
        )


class InvalidToken(Unauthorized):
    """A bearer token was presented but is not valid (401).

    The message is a fixed reason (``"token expired"``, ``"invalid
    signature"``...), never the token. The challenge carries
    ``error="invalid_token"`` (RFC 6750 §3.1).
    """

    error = "invalid_token"


class Authenticator(Protocol):
    """One link of an :class:`AuthChain`."""

    async def authenticate(self, ctx: AuthContext) -> Identity | None:
        """Return the peer's identity, or None to let the next authenticator try.

        Raises :class:`~wsskit.exceptions.Unauthorized` or
        :class:`~wsskit.exceptions.Forbidden` to refuse the request outright.
        """
        ...


# -- where tokens travel -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenExtractor:
    """Finds the bearer token of a request in the configured ``sources``, in order.

    By default ``("header", "query", "subprotocol")``; ``"cookie"`` must be
    asked for, and :class:`AuthGuard` then requires an Origin policy. The
    first source holding a token wins. ``cookie_name``,
    ``query_parameter`` and ``subprotocol_prefix`` name the cookie, the query
    parameter and the prefix of the ``Sec-WebSocket-Protocol`` entry.

    Raises :class:`ValueError` for no source, an unknown or repeated one, or a
    name that is not an HTTP token.
    """

    sources: Sequence[TokenSource] = _DEFAULT_SOURCES
    cookie_name: str = field(default=_DEFAULT_NAME, kw_only=True)
    query_parameter: str = field(default=_DEFAULT_NAME, kw_only=True)
    subprotocol_prefix: str = field(default=_DEFAULT_PREFIX, kw_only=True)

    def __post_init__(self) -> None:
        if isinstance(self.sources, str):
            raise ValueError("sources is a sequence of source names, not one string")
        sources = tuple(self.sources)
        if not sources:
            raise ValueError("a token extractor needs at least one source")
        for source in sources:
            if source not in _SOURCES:
                raise ValueError(f"unknown token source {source!r}; expected one of {_SOURCES}")
        if len(set(sources)) != len(sources):
            raise ValueError("a token source is listed twice")
        object.__setattr__(self, "sources", sources)
        for name in ("cookie_name", "query_parameter", "subprotocol_prefix"):
            if not is_token(getattr(self, name)):
                raise ValueError(f"{name} must be a non-empty HTTP token")

    def extract(self, request: Request) -> str | None:
        """Return the request's bearer token, or None when it carries none.

        An empty cookie or query value counts as none. Raises
        :class:`InvalidToken` when a source holds something that is not a
        token (RFC 6750 §2.1 ``b64token``) or several tokens at once.
        """
        for source in self.sources:
            if source == "header":
                token = _from_authorization(request)
            elif source == "cookie":
                token = _from_cookie(request, self.cookie_name)
            elif source == "query":
                token = _from_query(request, self.query_parameter)
            else:
                token = _from_subprotocols(request, self.subprotocol_prefix)
            if token is not None:
                if not _B64TOKEN.fullmatch(token):
                    raise InvalidToken("malformed token")
                return token
        return None

    def subprotocols_without_token(self, request: Request) -> tuple[str, ...]:
        """Return the offered subprotocols without the ones carrying a token."""
        return subprotocols_without_token(request, prefix=self.subprotocol_prefix)

    def redact_target(self, target: str) -> str:
        """Return ``target`` with the token query parameter's value redacted."""
        return redact_target(target, parameter=self.query_parameter)


DEFAULT_TOKEN_EXTRACTOR: Final = TokenExtractor()
"""Header, then cookie, then query, then subprotocol, with the default names."""


def subprotocols_without_token(request: Request, *, prefix: str = _DEFAULT_PREFIX) -> tuple[str, ...]:
    """Return the subprotocols ``request`` offers, less those starting with ``prefix``.

    A server selects its subprotocol among these: echoing the token entry in
    the response would hand the token to every proxy and log on the way.
    """
    return tuple(offer for offer in request.subprotocols if not offer.startswith(prefix))


def redact_target(target: str, *, parameter: str = _DEFAULT_NAME) -> str:
    """Return the request target with the value of query ``parameter`` replaced.

    ``/chat?room=1&access_token=abc`` becomes
    ``/chat?room=1&access_token=[redacted]``; the rest is kept byte for byte.
    A percent-encoded spelling of the name is redacted too, since the server
    decodes names before it looks for the token.
    """
    before_fragment, hash_mark, fragment = target.partition("#")
    path, question_mark, query = before_fragment.partition("?")
    if not question_mark:
        return target
    fields = query.split("&")
    for index, item in enumerate(fields):
        name, equals, _ = item.partition("=")
        if equals and unquote_plus(name) == parameter:
            fields[index] = f"{name}={_REDACTED}"
    return f"{path}?{'&'.join(fields)}{hash_mark}{fragment}"


def _from_authorization(request: Request) -> str | None:
    tokens: list[str] = []
    for value in request.headers.get_all("Authorization"):
        # RFC 7235 §2.1: the scheme is case-insensitive; RFC 6750 §2.1:
        # "Bearer" 1*SP b64token. Other schemes (Basic...) are not ours.
        scheme, _, credentials = value.strip(" \t").partition(" ")
        if scheme.lower() != "bearer":
            continue
        credentials = credentials.strip(" \t")
        if not credentials:
            raise InvalidToken("malformed token")
        tokens.append(credentials)
    if len(tokens) > 1:
        raise InvalidToken("several bearer tokens")
    return tokens[0] if tokens else None


def _from_cookie(request: Request, name: str) -> str | None:
    # RFC 6265 §5.4: cookie-pair *( ";" SP cookie-pair ). HTTP/2 may split the
    # header into several fields, which join with "; " (RFC 9113 §8.2.3).
    # When a name repeats, the first pair is the one with the longest path,
    # the most specific cookie.
    for pair in "; ".join(request.headers.get_all("Cookie")).split(";"):
        key, _, value = pair.partition("=")
        if key.strip(" \t") != name:
            continue
        value = value.strip(" \t")
        # RFC 6265 §4.1.1: cookie-value may be wrapped in DQUOTEs.
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        return value or None
    return None


def _from_query(request: Request, name: str) -> str | None:
    values = [
        value
        for key, value in parse_qsl(urlsplit(request.target).query, keep_blank_values=True)
        if key == name
    ]
    if len(values) > 1:
        raise InvalidToken("several tokens in the query")
    return values[0] if values and values[0] else None


def _from_subprotocols(request: Request, prefix: str) -> str | None:
    tokens = [offer[len(prefix) :] for offer in request.subprotocols if offer.startswith(prefix)]
    if len(tokens) > 1:
        raise InvalidToken("several tokens in Sec-WebSocket-Protocol")
    if tokens and not tokens[0]:
        raise InvalidToken("malformed token")
    return tokens[0] if tokens else None


# -- authenticators ----------------------------------------------------------


class _Refused(Exception):
    """Internal: a token failed verification for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# PyJWT's errors mapped to fixed reasons: subclasses before their bases
# (InvalidSignatureError is a DecodeError).
_REASONS: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "invalid audience"),
    (jwt.InvalidIssuerError, "invalid issuer"),
    (jwt.InvalidSignatureError, "invalid signature"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.InvalidKeyError, "unusable key"),
    (InvalidSubjectError, "invalid subject"),
    (jwt.DecodeError, "malformed token"),
)


def _reason(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.MissingRequiredClaimError):
        # The claim's name comes from our configuration, not from the token.
        return f"missing claim {error.claim!r}"
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "invalid token"


def _is_numeric_date(value: object) -> bool:
    # RFC 7519 §2: a NumericDate is a JSON number. Python's json module also
    # reads NaN and Infinity, which would make "exp" never pass.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _names(value: str | Iterable[str] | None, what: str) -> str | tuple[str, ...] | None:
    if value is None or isinstance(value, str):
        if value == "":
            raise ValueError(f"{what} must not be empty")
        return value
    names = tuple(value)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"{what} must be a non-empty string or a non-empty list of them")
    return names


class JWTAuthenticator:
    """Accepts JSON Web Tokens (RFC 7519) signed with a configured key.

    ``algorithms`` is the allow-list of signature algorithms (``["ES256"]``);
    a token whose header names another is refused, which is what stops
    algorithm confusion (an HS256 token "signed" with a public key). The key
    is either ``key`` (an HMAC secret, a PEM public key or a ``cryptography``
    public key, checked against every allowed algorithm here) or
    ``jwks_file``, a JSON Web Key Set (RFC 7517 §5) from which a token's
    ``kid`` header picks the key; a key set with one key also serves tokens
    without ``kid``. :meth:`reload` reads the file again after a key rotation.

    The signature, ``aud`` (against ``audience``) and ``iss`` (against
    ``issuer``) are checked by PyJWT; ``exp``, ``nbf`` and ``iat`` against
    ``clock()`` with ``leeway`` seconds of tolerance. A token that carries an
    ``aud`` while no ``audience`` is configured is refused: it was meant for
    someone else. Every claim in ``required_claims`` must be present, and
    ``subject_claim`` must be a non-empty string; it becomes the identity's
    subject, ``exp`` its ``expires_at``.

    A token that is not a JWS (not three dot-separated parts with a JSON
    header) is declined, so that a static-token authenticator later in the
    chain gets it. A JWS that fails verification raises
    :class:`InvalidToken`.

    Raises :class:`ValueError` when the configuration is unsafe or wrong: no
    algorithm, ``"none"``, an unknown algorithm, neither or both of ``key``
    and ``jwks_file``, a key that does not suit an allowed algorithm or is too
    short (RFC 7518 §3.2: an HMAC key at least as long as the hash), a key set
    without a usable key, a negative leeway. Raises :class:`OSError` when
    ``jwks_file`` cannot be read.
    """

    method = "jwt"

    def __init__(
        self,
        *,
        key: str | bytes | PublicKeyTypes | None = None,
        jwks_file: str | os.PathLike[str] | None = None,
        algorithms: Sequence[str],
        audience: str | Iterable[str] | None = None,
        issuer: str | Iterable[str] | None = None,
        leeway: float = 0,
        required_claims: Iterable[str] = ("exp",),
        subject_claim: str = "sub",
        extractor: TokenExtractor = DEFAULT_TOKEN_EXTRACTOR,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._algorithms = _allowed_algorithms(algorithms)
        if (key is None) == (jwks_file is None):
            raise ValueError("give exactly one of key and jwks_file")
        if not (isinstance(leeway, (int, float)) and math.isfinite(leeway) and leeway >= 0):
            raise ValueError("leeway must be a finite number of seconds, zero or more")
        if not subject_claim:
            raise ValueError("subject_claim must not be empty")
        self._audience = _names(audience, "audience")
        self._issuer = _names(issuer, "issuer")
        self._leeway = float(leeway)
        self._required = tuple(required_claims)
        self._subject_claim = subject_claim
        self._extractor = extractor
        self._clock = clock
        self._jwks_file = None if jwks_file is None else os.fspath(jwks_file)
        # The key prepared once per allowed algorithm (key=), or the key set
        # by kid (jwks_file=): either way a configuration error shows at start.
        self._prepared: dict[str, Any] = {}
        self._jwks: dict[str | None, jwt.PyJWK] = {}
        if key is not None:
            self._prepared = _prepare_key(key, self._algorithms)
        else:
            self.reload()

    def __repr__(self) -> str:
        # Never the key: an HMAC secret is as good as a token factory.
        source = "key" if self._jwks_file is None else f"jwks_file={self._jwks_file!r}"
        return (
            f"JWTAuthenticator(algorithms={list(self._algorithms)!r}, {source}, "
            f"audience={self._audience!r}, issuer={self._issuer!r})"
        )

    def reload(self) -> None:
        """Read ``jwks_file`` again, replacing the key set only if the new one is valid.

        Raises :class:`ValueError` when the file holds no usable key set (the
        old keys stay in use), :class:`OSError` when it cannot be read, and
        :class:`RuntimeError` when the authenticator was given ``key``.
        """
        if self._jwks_file is None:
            raise RuntimeError("this authenticator has a fixed key, not a key set file")
        self._jwks = _load_jwks(self._jwks_file, self._algorithms)

    async def authenticate(self, ctx: AuthContext) -> Identity | None:
        """Verify the request's token; see the class documentation.

        Returns None when the request has no token or one that is not a JWS.
        Raises :class:`InvalidToken` when the token fails verification.
        """
        token = self._extractor.extract(ctx.request)
        if token is None or not _looks_like_jws(token):
            return None
        return self.verify(token)

    def verify(self, token: str) -> Identity:
        """Verify ``token`` and return the identity it carries.

        Also serves to refresh a connection's identity with a new token.
        Raises :class:`InvalidToken` with the reason it failed.
        """
        try:
            return self._verify(token)
        except _Refused as refusal:
            reason = refusal.reason
        # Raised outside the except block, so that no PyJWT error (which may
        # quote parts of the token) rides along as __context__.
        raise InvalidToken(reason)

    def _verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise _Refused(_reason(error)) from None
        alg = header.get("alg")
        # The header is not trusted yet: it only says which allowed algorithm
        # and which configured key to try.
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _Refused("algorithm not allowed")
        key = self._key_for(header, alg)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": list(self._required),
                    # Time claims are checked below against the injected clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": True,
                    "verify_iss": True,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as error:
            raise _Refused(_reason(error)) from None
        expires_at = self._check_times(claims)
        subject = claims.get(self._subject_claim)
        if not isinstance(subject, str) or not subject:
            raise _Refused("token has no subject")
        return Identity(subject=subject, method=self.method, claims=claims, expires_at=expires_at)

    def _key_for(self, header: Mapping[str, Any], alg: str) -> Any:
        if self._jwks_file is None:
            return self._prepared[alg]
        keys = self._jwks
        kid = header.get("kid")
        if kid is None:
            if len(keys) != 1:
                raise _Refused("token has no key id")
            (jwk,) = keys.values()
        else:
            # The kid is attacker-chosen: never part of the reason.
            found = keys.get(kid) if isinstance(kid, str) else None
            if found is None:
                raise _Refused("unknown key id")
            jwk = found
        # A key verifies with its own algorithm only; a token that names
        # another one, even an allowed one, is refused.
        if jwk.algorithm_name != alg:
            raise _Refused("algorithm does not match the key")
        return jwk.key

    def _check_times(self, claims: Mapping[str, Any]) -> float | None:
        for name in ("exp", "nbf", "iat"):
            if claims.get(name) is not None and not _is_numeric_date(claims[name]):
                raise _Refused(f"claim {name!r} is not a number")
        now = self._clock()
        exp = claims.get("exp")
        nbf = claims.get("nbf")
        iat = claims.get("iat")
        # RFC 7519 §4.1.4: the token must not be accepted on or after "exp".
        if exp is not None and exp <= now - self._leeway:
            raise _Refused("token expired")
        # RFC 7519 §4.1.5: nor before "nbf".
        if nbf is not None and nbf > now + self._leeway:
            raise _Refused("token not yet valid")
        # An "iat" in the future means a wrong clock at the issuer, or a forgery.
        if iat is not None and iat > now + self._leeway:
            raise _Refused("token issued in the future")
        return None if exp is None else float(exp)


def _allowed_algorithms(algorithms: Sequence[str]) -> tuple[str, ...]:
    if isinstance(algorithms, str):
        raise ValueError("algorithms is a list of names, such as ['ES256'], not one string")
    allowed = tuple(dict.fromkeys(algorithms))
    if not allowed:
        raise ValueError("the algorithm allow-list must not be empty")
    known = get_default_algorithms()
    for name in allowed:
        # "none" means no signature at all (RFC 7518 §3.6): anyone could mint
        # any token. Refused in any spelling.
        if name.lower() == "none":
            raise ValueError('the "none" algorithm accepts unsigned tokens; it cannot be allowed')
        if name not in known:
            raise ValueError(f"unknown JWT algorithm {name!r}")
    return allowed


def _prepare_key(key: str | bytes | PublicKeyTypes, algorithms: Sequence[str]) -> dict[str, Any]:
    known = get_default_algorithms()
    prepared: dict[str, Any] = {}
    for name in algorithms:
        algorithm = known[name]
        try:
            # PyJWT refuses a PEM or SSH public key as an HMAC secret and a
            # secret as a public key: an allow-list that mixes families with
            # one key fails here, not at the first token.
            prepared[name] = algorithm.prepare_key(key)
        except (jwt.PyJWTError, TypeError, ValueError) as error:
            raise ValueError(f"the key does not suit {name}: {error}") from error
        weakness = algorithm.check_key_length(prepared[name])
        if weakness:
            raise ValueError(weakness)
    return prepared


def _load_jwks(path: str, algorithms: Sequence[str]) -> dict[str | None, jwt.PyJWK]:
    with open(path, "rb") as file:
        try:
            document = json.load(file)
        except ValueError:
            raise ValueError(f"{path} is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{path} is not a JSON Web Key Set: no "keys" array (RFC 7517 §5)')
    keys: dict[str | None, jwt.PyJWK] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"key #{index} in {path} is not a JSON object")
        # RFC 7517 §4.2: an "enc" key is for encryption, never for signatures.
        if entry.get("use", "sig") != "sig":
            continue
        # A key for an algorithm outside the allow-list can verify nothing we
        # accept; identity providers publish such keys alongside.
        if "alg" in entry and entry["alg"] not in algorithms:
            continue
        try:
            jwk = jwt.PyJWK(entry)
        except (jwt.PyJWTError, KeyError, TypeError, ValueError, NotImplementedError):
            # PyJWT's message quotes the whole JWK, an "oct" key's secret
            # included; skip keys we cannot use, as PyJWKSet does.
            continue
        if jwk.algorithm_name not in algorithms:
            continue
        weakness = jwk.Algorithm.check_key_length(jwk.key)
        if weakness:
            raise ValueError(f"key #{index} in {path}: {weakness}")
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ValueError(f'key #{index} in {path} has a "kid" that is not a string')
        if kid in keys:
            raise ValueError(f"{path} holds two keys with kid {kid!r}")
        keys[kid] = jwk
    if not keys:
        raise ValueError(f"{path} holds no signature key for {', '.join(algorithms)}")
    if None in keys and len(keys) > 1:
        # With several keys a token's "kid" must name one: a key without a
        # kid could never be picked.
        raise ValueError(f'{path} holds several keys, and not all of them have a "kid"')
    return keys


def _looks_like_jws(token: str) -> bool:
    # RFC 7515 §7.1: compact serialisation is three base64url parts.
    if token.count(".") != 2:
        return False
    try:
        jwt.get_unverified_header(token)
    except jwt.DecodeError:
        return False
    except jwt.PyJWTError:
        # A JWS whose header breaks a rule (a "crit" PyJWT does not know, a
        # "kid" that is not a string): it is ours to refuse.
        return True
    return True


def _sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class StaticTokenAuthenticator:
    """Accepts fixed bearer tokens, each mapped to a subject: ``{token: subject}``.

    Only the tokens' SHA-256 digests are kept, so a memory dump or a repr does
    not reveal them. A presented token is compared with every digest in
    constant time, without stopping at a match, so timing tells neither
    whether nor where it matched. Make tokens with
    ``secrets.token_urlsafe(32)``.

    Returns None when the request carries no token; raises
    :class:`InvalidToken` for a token that is not configured. Put a
    :class:`JWTAuthenticator` before it in a chain: JWTs pass it by, other
    tokens are refused here.

    Raises :class:`ValueError` for no token, a token shorter than
    ``min_length`` or outside the RFC 6750 ``b64token`` characters, or an
    empty subject.
    """

    method = "token"

    def __init__(
        self,
        tokens: Mapping[str, str],
        *,
        extractor: TokenExtractor = DEFAULT_TOKEN_EXTRACTOR,
        min_length: int = _MIN_STATIC_TOKEN_LENGTH,
    ) -> None:
        if not tokens:
            raise ValueError("configure at least one token")
        entries: list[tuple[bytes, str]] = []
        for number, (token, subject) in enumerate(tokens.items(), start=1):
            # Messages point at the token by position: they end up in logs.
            if not isinstance(token, str) or len(token) < min_length:
                raise ValueError(f"token #{number} is shorter than {min_length} characters")
            if not _B64TOKEN.fullmatch(token):
                raise ValueError(
                    f"token #{number} has characters a bearer token cannot carry (RFC 6750 §2.1)"
                )
            if not isinstance(subject, str) or not subject:
                raise ValueError(f"token #{number} has an empty subject")
            entries.append((_sha256(token), subject))
        self._entries = tuple(entries)
        self._extractor = extractor

    def __repr__(self) -> str:
        return f"StaticTokenAuthenticator(<{len(self._entries)} tokens>)"

    async def authenticate(self, ctx: AuthContext) -> Identity | None:
        """Return the identity of the request's token; see the class documentation."""
        token = self._extractor.extract(ctx.request)
        if token is None:
            return None
        return self.verify(token)

    def verify(self, token: str) -> Identity:
        """Return the identity of ``token``, or raise :class:`InvalidToken`.

        Also serves to refresh a connection's identity with a new token.
        """
        presented = _sha256(token)
        subject: str | None = None
        for digest, candidate in self._entries:
            if hmac.compare_digest(presented, digest):
                subject = candidate
        if subject is None:
            raise InvalidToken("unknown token")
        return Identity(subject=subject, method=self.method)


def _normalize_fingerprint(value: str) -> str:
    # Accept the forms tools print: "AB:CD:..." (openssl x509 -fingerprint) or bare hex.
    fingerprint = value.replace(":", "").replace(" ", "").lower()
    if not _SHA256_HEX.fullmatch(fingerprint):
        raise ValueError(f"not a SHA-256 fingerprint: {value!r}")
    return fingerprint


def _name_set(values: Iterable[str] | None, what: str) -> frozenset[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise ValueError(f"{what} is a collection of strings, not one string")
    result = frozenset(values)
    if not result:
        raise ValueError(f"{what} is empty, which would refuse every certificate; pass None to allow any")
    return result


class ClientCertificateAuthenticator:
    """Identifies the peer by the TLS client certificate the handshake verified.

    The TLS context decides which CAs are trusted; this authenticator narrows
    down which of their certificates may connect. With neither option, any
    verified certificate is accepted. ``allowed_subjects`` holds names, each
    compared with the certificate's RFC 4514 subject (``CN=alice,O=Example``)
    and with each of its subjectAltName entries (``DNS:alice.example``,
    ``URI:spiffe://example.org/alice``); ``allowed_fingerprints`` holds SHA-256
    fingerprints, hex with or without colons. A certificate passes when it
    matches either list.

    The identity's subject is the subject name, or the first subjectAltName
    entry when the subject is empty; its ``expires_at`` is the end of the
    certificate's validity.

    Returns None when there is no verified certificate; raises
    :class:`~wsskit.exceptions.Forbidden` for a certificate that is not
    allowed. Raises :class:`ValueError` for an empty list or a malformed
    fingerprint.
    """

    method = "certificate"

    def __init__(
        self,
        *,
        allowed_subjects: Iterable[str] | None = None,
        allowed_fingerprints: Iterable[str] | None = None,
    ) -> None:
        self._subjects = _name_set(allowed_subjects, "allowed_subjects")
        fingerprints = _name_set(allowed_fingerprints, "allowed_fingerprints")
        self._fingerprints = (
            None if fingerprints is None else frozenset(map(_normalize_fingerprint, fingerprints))
        )

    def __repr__(self) -> str:
        return (
            f"ClientCertificateAuthenticator(allowed_subjects={self._subjects!r}, "
            f"allowed_fingerprints={self._fingerprints!r})"
        )

    def allows(self, certificate: PeerCertificate) -> bool:
        """Tell whether ``certificate`` matches the configured lists."""
        if self._subjects is None and self._fingerprints is None:
            return True
        if self._subjects is not None and (
            certificate.subject in self._subjects or not self._subjects.isdisjoint(certificate.sans)
        ):
            return True
        return self._fingerprints is not None and certificate.fingerprint_sha256.lower() in self._fingerprints

    async def authenticate(self, ctx: AuthContext) -> Identity | None:
        """Return the certificate's identity; see the class documentation."""
        certificate = ctx.peer_certificate
        if certificate is None:
            return None
        if not self.allows(certificate):
            raise Forbidden(f"client certificate {certificate.subject!r} is not allowed")
        subject = certificate.subject or next(iter(certificate.sans), certificate.fingerprint_sha256)
        return Identity(subject=subject, method=self.method, expires_at=certificate.not_valid_after)


AuthResult = Union[Identity, str, None]
AuthFunction = Callable[[AuthContext], Union[AuthResult, Awaitable[AuthResult]]]
"""A function or coroutine function that authenticates a context.

It returns an :class:`Identity`, a subject (a string), or None to decline.
"""


class CallableAuthenticator:
    """Adapts ``func(ctx)``, sync or async, to the :class:`Authenticator` interface.

    A string result becomes ``Identity(subject, method)``. Exceptions from
    ``func`` propagate: raise Unauthorized or Forbidden to refuse.
    """

    def __init__(self, func: AuthFunction, *, method: str = "callable") -> None:
        self._func = func
        self.method = method

    def __repr__(self) -> str:
        return f"CallableAuthenticator({self._func!r})"

    async def authenticate(self, ctx: AuthContext) -> Identity | None:
        """Call the function and interpret its result.

        Raises :class:`TypeError` when it returns something other than an
        Identity, a string or None, and :class:`ValueError` for an empty
        string.
        """
        result = self._func(ctx)
        if inspect.isawaitable(result):
            result = await result
        if result is None or isinstance(result, Identity):
            return result
        if isinstance(result, str):
            return Identity(subject=result, method=self.method)
        raise TypeError(
            f"{self._func!r} returned {type(result).__name__}; expected an Identity, a str or None"
        )


class AuthChain:
    """Asks ``authenticators`` in order; the first identity wins.

    When all decline, a ``required`` chain raises
    :class:`~wsskit.exceptions.Unauthorized` (or :class:`InvalidToken` when
    the request carried a token nobody recognised, found with ``extractor``);
    otherwise the request goes on anonymously. ``realm`` names the protected
    space in the ``WWW-Authenticate`` challenge.

    Raises :class:`ValueError` for no authenticator or a realm with
    characters a challenge cannot carry.
    """

    def __init__(
        self,
        authenticators: Iterable[Authenticator],
        *,
        realm: str = "wsskit",
        required: bool = True,
        extractor: TokenExtractor = DEFAULT_TOKEN_EXTRACTOR,
    ) -> None:
        self.authenticators = tuple(authenticators)
        if not self.authenticators:
            raise ValueError("an authentication chain needs at least one authenticator")
        if not _CHALLENGE_CHARS.fullmatch(realm):
            raise ValueError("the realm must be printable ASCII without quotes or backslashes")
        self.realm = realm
        self.required = required
        self._extractor = extractor

    def __repr__(self) -> str:
        return f"AuthChain({list(self.authenticators)!r}, realm={self.realm!r}, required={self.required!r})"

    async def authenticate(self, ctx: AuthContext) -> Identity | None:
        """Return the first identity an authenticator gives.

        Returns None when all decline and the chain is not required. Raises
        :class:`~wsskit.exceptions.Unauthorized` when all decline and it is,
        and lets through the Unauthorized or Forbidden an authenticator raises.
        """
        for authenticator in self.authenticators:
            identity = await authenticator.authenticate(ctx)
            if identity is not None:
                return identity
        if not self.required:
            return None
        # RFC 6750 §3.1: a request without credentials gets a bare challenge;
        # one with a token that nothing accepted gets "invalid_token".
        if self._extractor.extract(ctx.request) is not None:
            raise InvalidToken("token not recognised")
        raise Unauthorized("no credentials")

    def www_authenticate(self, exc: Rejected | None = None) -> str:
        """Return the ``WWW-Authenticate`` value answering ``exc`` (RFC 6750 §3).

        ``Bearer realm="wsskit"``, plus ``error="invalid_token"`` and an
        ``error_description`` when ``exc`` is an :class:`InvalidToken`.
        """
        challenge = f'Bearer realm="{self.realm}"'
        if isinstance(exc, InvalidToken):
            challenge += f', error="{exc.error}"'
            description = "".join(_CHALLENGE_CHARS.findall(str(exc)))[:_MAX_DESCRIPTION]
            if description:
                challenge += f', error_description="{description}"'
        return challenge

    def rejection_headers(self, exc: Rejected) -> list[tuple[str, str]]:
        """Return the headers for the HTTP response refusing a request with ``exc``.

        A 401 must carry a challenge (RFC 7235 §3.1); other refusals get none.
        """
        if isinstance(exc, Unauthorized):
            return [("WWW-Authenticate", self.www_authenticate(exc))]
        return []


class AuthGuard:
    """Runs an :class:`AuthChain` as a guard of :func:`wsskit.serve`.

    ``serve(handler, ..., guards=[AuthGuard(chain)])``: every WebSocket
    request is authenticated before the upgrade; the identity lands on
    ``connection.identity``. A refusal answers 401 with ``WWW-Authenticate``
    (or 403). When the identity expires (a JWT's ``exp``, a client
    certificate's end of validity), the connection is closed with 1008
    unless :meth:`refresh` gave it a new credential first.

    ``Sec-WebSocket-Protocol`` entries that carry a token are hidden from
    the server's subprotocol choice, so the token is never echoed back.

    ``origin_policy`` (an :class:`~wsskit.guards.origin.OriginPolicy`) is
    checked before authenticating. It is required when any extractor of the
    chain reads cookies: a browser sends its cookies with a WebSocket request
    that another site's page starts (Cross-Site WebSocket Hijacking), and
    only the Origin check tells those apart. Raises :class:`ValueError`
    when cookies are read without one.
    """

    def __init__(
        self,
        chain: AuthChain,
        *,
        origin_policy: OriginPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chain = chain
        self.origin_policy = origin_policy
        self._clock = clock
        self._extractors = _extractors_of(chain)
        if origin_policy is None and any("cookie" in extractor.sources for extractor in self._extractors):
            raise ValueError(
                "tokens read from cookies need origin_policy=OriginPolicy([...]): browsers send "
                "cookies with WebSocket requests from any site (Cross-Site WebSocket Hijacking)"
            )

    async def __call__(self, connection: Any, request: Request) -> None:
        if self.origin_policy is not None:
            self.origin_policy.check(request)
        hidden = getattr(connection, "hidden_subprotocols", None)
        if hidden is not None and request.subprotocols:
            for extractor in self._extractors:
                kept = extractor.subprotocols_without_token(request)
                hidden.update(name for name in request.subprotocols if name not in kept)
        ctx = AuthContext(
            request,
            remote_address=getattr(connection, "remote_address", None),
            peer_certificate=_peer_certificate(connection),
        )
        try:
            identity = await self.chain.authenticate(ctx)
        except Rejected as exc:
            exc.headers = (*exc.headers, *self.chain.rejection_headers(exc))
            raise
        self._adopt(connection, identity)

    async def refresh(self, connection: Any, token: str) -> Identity:
        """Give an open connection a new credential: ``token`` replaces the old one.

        The authenticators of the chain that verify bare tokens (JWT, static
        tokens) are tried in order. The new identity must have the same
        subject as the connection's; it replaces ``connection.identity`` and
        its expiry replaces the old deadline. Call it when the client sends
        a fresh token in a message of the application's protocol.

        Raises :class:`InvalidToken` when no authenticator accepts the token
        and :class:`~wsskit.exceptions.Forbidden` when it names someone else;
        the connection then keeps its old identity and deadline.
        """
        failure: Rejected = InvalidToken("token not recognised")
        for authenticator in self.chain.authenticators:
            verify = getattr(authenticator, "verify", None)
            if verify is None:
                continue
            try:
                identity = verify(token)
            except InvalidToken as exc:
                failure = exc
                continue
            current = getattr(connection, "identity", None)
            if current is not None and identity.subject != current.subject:
                raise Forbidden("the new token is for another subject")
            self._adopt(connection, identity)
            return cast(Identity, identity)
        raise failure

    def _adopt(self, connection: Any, identity: Identity | None) -> None:
        connection.identity = identity
        expire = getattr(connection, "expire_at", None)
        if expire is not None:
            expires_at = None if identity is None else identity.expires_at
            expire(None if expires_at is None else expires_at - self._clock(), "credentials expired")


def _extractors_of(chain: AuthChain) -> list[TokenExtractor]:
    # The chain's own extractor and those of its authenticators, once each.
    found: list[TokenExtractor] = []
    for candidate in (chain, *chain.authenticators):
        extractor = getattr(candidate, "_extractor", None)
        if isinstance(extractor, TokenExtractor) and extractor not in found:
            found.append(extractor)
    return found


def _peer_certificate(connection: Any) -> PeerCertificate | None:
    # wsskit connections parse it once (peer_certificate); anything else
    # that exposes an ssl_object works too.
    if hasattr(connection, "peer_certificate"):
        return cast("PeerCertificate | None", connection.peer_certificate)
    ssl_object = getattr(connection, "ssl_object", None)
    return None if ssl_object is None else PeerCertificate.from_ssl_object(ssl_object)
