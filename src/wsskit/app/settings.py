"""``wsskit serve --config FILE.toml``: the configuration file, read and checked.

:func:`load_file` turns a TOML file into the keyword arguments of
:class:`~wsskit.app.config.ServeConfig`; the command line then overrides them
(:func:`merge`). Every key is known: an unknown one, or a value of the wrong
type, raises :class:`ConfigError` naming the key (``namespaces[0].history_ttl``)
and what was expected. The format is documented in ``docs/server.md``.

Relative paths in the file are read relative to the file's folder. Secrets
may come from the environment instead of the file (``token_env``,
``key_env``, ``token_key_env``).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .._sizes import parse_size
from ..asyncio.proxy_header import PROXY_PROTOCOLS, trusted_networks
from ..channels.namespaces import Namespace
from ..guards.auth import AuthChain, JWTAuthenticator, StaticTokenAuthenticator, TokenExtractor

__all__ = ["ConfigError", "ApiAccess", "load_file", "merge", "api_access", "API_TOKEN_ENV"]

#: The environment variable that may hold the publish API's tokens (comma-separated).
API_TOKEN_ENV = "WSSKIT_API_TOKEN"  # noqa: S105 - a variable name, not a secret

#: The subject of API tokens given without one (``--api-token``, the environment).
_DEFAULT_API_SUBJECT = "api"


class ConfigError(ValueError):
    """The configuration file is unreadable, or a key in it is unknown or wrong."""


class ApiAccess:
    """Who may use ``POST /api/publish``: bearer tokens, each with its subject and namespaces.

    ``tokens`` holds ``(token, subject, namespaces)``; ``namespaces`` None
    allows every namespace. Only the tokens' digests are kept (by a
    :class:`~wsskit.guards.auth.StaticTokenAuthenticator`, which compares in
    constant time). Raises :class:`ValueError` for no token, a weak token, or
    one subject given two different namespace lists.
    """

    def __init__(self, tokens: Iterable[tuple[str, str, Iterable[str] | None]]) -> None:
        by_token: dict[str, str] = {}
        self.namespaces: dict[str, frozenset[str] | None] = {}
        for token, subject, namespaces in tokens:
            allowed = None if namespaces is None else frozenset(namespaces)
            if subject in self.namespaces and self.namespaces[subject] != allowed:
                raise ValueError(f"API subject {subject!r} is given two different namespace lists")
            self.namespaces[subject] = allowed
            by_token[token] = subject
        # Only the header: a token in a query string ends up in logs.
        self.authenticator = StaticTokenAuthenticator(by_token, extractor=TokenExtractor(("header",)))
        self.chain = AuthChain(
            [self.authenticator], realm="wsskit api", extractor=TokenExtractor(("header",))
        )

    def __repr__(self) -> str:
        return f"ApiAccess(subjects={sorted(self.namespaces)!r})"

    def may_publish(self, subject: str, namespace: str) -> bool:
        """Whether the token of ``subject`` may publish into ``namespace``."""
        allowed = self.namespaces.get(subject)
        return allowed is None or namespace in allowed


def api_access(tokens: Iterable[str]) -> ApiAccess | None:
    """API access for plain tokens (the command line, the environment): subject ``api``, every namespace."""
    listed = [token for token in tokens if token]
    if not listed:
        return None
    return ApiAccess((token, _DEFAULT_API_SUBJECT, None) for token in listed)


def merge(file_values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The ServeConfig arguments: the file's, then the command line's on top."""
    return {**file_values, **overrides}


# -- reading ------------------------------------------------------------------------------


def _toml_loads() -> Callable[[str], dict[str, Any]]:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads
    try:  # pragma: no cover - Python 3.10 only
        import tomli  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover
        raise ConfigError(
            "reading a TOML file on Python 3.10 needs the tomli package: pip install tomli"
        ) from None
    loads: Callable[[str], dict[str, Any]] = tomli.loads  # pragma: no cover
    return loads  # pragma: no cover


def load_file(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read ``path`` and return the :class:`~wsskit.app.config.ServeConfig` arguments it sets.

    ``environ`` (default ``os.environ``) is where ``*_env`` keys are looked up.
    Raises :class:`ConfigError` when the file cannot be read, is not TOML, or
    holds an unknown key or a wrong value; the message names the file and the key.
    """
    path = Path(path)
    loads = _toml_loads()
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        document = loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    reader = _Reader(path.parent, os.environ if environ is None else environ)
    try:
        return reader.top(document)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class _Reader:
    def __init__(self, base: Path, environ: Mapping[str, str]) -> None:
        self.base = base
        self.environ = environ

    # -- checks on one value ------------------------------------------------------------

    @staticmethod
    def _keys(table: Mapping[str, Any], where: str, known: Iterable[str]) -> None:
        allowed = set(known)
        for key in table:
            if key not in allowed:
                name = f"{where}.{key}" if where else key
                raise ConfigError(f"unknown key {name!r} (known here: {', '.join(sorted(allowed))})")

    @staticmethod
    def _wrong(key: str, expected: str, value: object) -> ConfigError:
        return ConfigError(f"{key!r} must be {expected}, not {_describe(value)} ({value!r})")

    def _str(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            raise self._wrong(key, "a string", value)
        return value

    def _bool(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self._wrong(key, "a boolean (true or false)", value)
        return value

    def _int(self, key: str, value: object, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, "an integer", value)
        if minimum is not None and value < minimum:
            raise ConfigError(f"{key!r} must be at least {minimum}, not {value}")
        return value

    def _number(self, key: str, value: object, minimum: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._wrong(key, "a number", value)
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(f"{key!r} must be a finite number of at least {minimum:g}, not {value}")
        return float(value)

    def _strings(self, key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._wrong(key, "an array of strings", value)
        return tuple(value)

    def _table(self, key: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self._wrong(key, "a table", value)
        return value

    def _tables(self, key: str, value: object) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self._wrong(key, "an array of tables ([[...]])", value)
        return value

    def _choice(self, key: str, value: object, choices: tuple[str, ...]) -> str:
        text = self._str(key, value)
        if text not in choices:
            raise ConfigError(f"{key!r} must be one of {', '.join(map(repr, choices))}, not {text!r}")
        return text

    def _path(self, key: str, value: object) -> Path:
        path = Path(self._str(key, value)).expanduser()
        return path if path.is_absolute() else self.base / path

    def _size(self, key: str, value: object) -> int | None:
        # A size is a number of bytes, a string with a unit ("64KiB", "1MiB") or "none".
        if isinstance(value, int) and not isinstance(value, bool):
            if value <= 0:
                raise ConfigError(f"{key!r} must be a positive number of bytes, not {value}")
            return value
        if not isinstance(value, str):
            raise self._wrong(key, 'a size (bytes, "64KiB", "1MiB" or "none")', value)
        if value.strip().lower() in ("none", "unlimited"):
            return None
        try:
            size = parse_size(value)
        except ValueError:
            size = 0
        if size > 0:
            return size
        raise ConfigError(f'{key!r} must be a size (bytes, "64KiB", "1MiB" or "none"), not {value!r}')

    def _secret(self, table: Mapping[str, Any], where: str, name: str) -> str | None:
        # ``name`` in the file, or ``name_env``: the variable that holds it.
        direct = table.get(name)
        env = table.get(f"{name}_env")
        if direct is not None and env is not None:
            raise ConfigError(f"give one of {where}{name!r} and {where}{name}_env, not both")
        if direct is not None:
            return self._str(f"{where}{name}", direct)
        if env is not None:
            variable = self._str(f"{where}{name}_env", env)
            if variable not in self.environ:
                raise ConfigError(
                    f"{where}{name}_env names {variable!r}, which is not set in the environment"
                )
            return self.environ[variable]
        return None

    # -- sections -----------------------------------------------------------------------

    def top(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        self._keys(
            doc,
            "",
            (
                "host", "port", "max_size", "backplane", "origins", "token_key", "token_key_env",
                "tls", "limits", "api", "namespaces", "auth", "proxy_protocol", "trusted_proxies",
                "workers", "drain",
            ),
        )  # fmt: skip
        out: dict[str, Any] = {}
        if "host" in doc:
            out["host"] = self._str("host", doc["host"])
        if "port" in doc:
            port = self._int("port", doc["port"], 0)
            if port > 65535:
                raise ConfigError(f"'port' must be at most 65535, not {port}")
            out["port"] = port
        if "max_size" in doc:
            out["max_size"] = self._size("max_size", doc["max_size"])
        if "backplane" in doc:
            out["backplane"] = self._str("backplane", doc["backplane"])
        if "origins" in doc:
            out["origins"] = self._strings("origins", doc["origins"])
        key = self._secret(doc, "", "token_key")
        if key is not None:
            if len(key.encode("utf-8")) < 32:
                raise ConfigError("'token_key' must be at least 32 bytes")
            out["token_key"] = key.encode("utf-8")
        if "tls" in doc:
            out.update(self.tls(self._table("tls", doc["tls"])))
        if "limits" in doc:
            out.update(self.limits(self._table("limits", doc["limits"])))
        if "api" in doc:
            access = self.api(self._table("api", doc["api"]))
            if access is not None:
                out["api"] = access
        if "namespaces" in doc:
            out["namespaces"] = tuple(
                self.namespace(f"namespaces[{index}]", table)
                for index, table in enumerate(self._tables("namespaces", doc["namespaces"]))
            )
            names = [namespace.name for namespace in out["namespaces"]]
            for name in names:
                if names.count(name) > 1:
                    raise ConfigError(f"two namespaces named {name!r}")
        if "auth" in doc:
            out["auth"] = self.auth(self._table("auth", doc["auth"]))
        out.update(self.proxy_protocol(doc))
        if "workers" in doc:
            out["workers"] = self._int("workers", doc["workers"], 1)
        if "drain" in doc:
            out.update(self.drain(self._table("drain", doc["drain"])))
        return out

    def drain(self, table: Mapping[str, Any]) -> dict[str, Any]:
        # [drain] delay = 0, window = 10, timeout = 30 (seconds; see wsskit.app.drain).
        self._keys(table, "drain", ("delay", "window", "timeout"))
        keys = ("delay", "window", "timeout")
        out = {f"drain_{key}": self._number(f"drain.{key}", table[key]) for key in keys if key in table}
        if out.get("drain_timeout") == 0:
            raise ConfigError("'drain.timeout' must be more than 0")
        return out

    def proxy_protocol(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        # proxy_protocol = "v2" (or true for "v1v2"), trusted_proxies = ["10.0.0.0/8"].
        out: dict[str, Any] = {}
        if "proxy_protocol" in doc:
            value = doc["proxy_protocol"]
            if isinstance(value, bool):
                out["proxy_protocol"] = "v1v2" if value else None
            else:
                out["proxy_protocol"] = self._choice("proxy_protocol", value, PROXY_PROTOCOLS)
        if "trusted_proxies" in doc:
            networks = self._strings("trusted_proxies", doc["trusted_proxies"])
            try:
                trusted_networks(networks)
            except ValueError as exc:
                raise ConfigError(f"'trusted_proxies': {exc}") from None
            out["trusted_proxies"] = networks
        return out

    def tls(self, table: Mapping[str, Any]) -> dict[str, Any]:
        self._keys(
            table, "tls", ("enabled", "cert", "key", "profile", "cert_dir", "client_ca", "client_cert")
        )
        out: dict[str, Any] = {}
        if "enabled" in table:
            out["tls"] = self._bool("tls.enabled", table["enabled"])
        for key, field in (
            ("cert", "certfile"),
            ("key", "keyfile"),
            ("cert_dir", "cert_dir"),
            ("client_ca", "client_ca"),
        ):
            if key in table:
                out[field] = self._path(f"tls.{key}", table[key])
        if "profile" in table:
            out["profile"] = self._choice("tls.profile", table["profile"], ("intermediate", "modern"))
        if "client_cert" in table:
            out["client_cert"] = self._choice(
                "tls.client_cert", table["client_cert"], ("required", "optional")
            )
        return out

    def limits(self, table: Mapping[str, Any]) -> dict[str, Any]:
        rates = ("connection_rate", "message_rate", "ping_rate")
        caps = ("max_connections_per_ip", "max_connections")
        self._keys(table, "limits", (*rates, *caps, "byte_rate"))
        out: dict[str, Any] = {}
        # A rate of 0 (or "none") turns that limit off; caps stay at least 1.
        for key in rates:
            if key in table:
                out[key] = 0.0 if self._off(table[key]) else self._number(f"limits.{key}", table[key])
        for key in caps:
            if key in table:
                out[key] = self._int(f"limits.{key}", table[key], 1)
        if "byte_rate" in table:
            value = table["byte_rate"]
            out["byte_rate"] = 0 if self._off(value) else self._size("limits.byte_rate", value)
        return out

    @staticmethod
    def _off(value: object) -> bool:
        # How a rate is turned off: 0 (not false: a boolean is refused as a number) or "none".
        if isinstance(value, str):
            return value.strip().lower() in ("none", "unlimited", "0")
        return not isinstance(value, bool) and isinstance(value, (int, float)) and value == 0

    def api(self, table: Mapping[str, Any]) -> ApiAccess | None:
        self._keys(table, "api", ("tokens",))
        entries: list[tuple[str, str, tuple[str, ...] | None]] = []
        for index, entry in enumerate(self._tables("api.tokens", table.get("tokens", []))):
            where = f"api.tokens[{index}]"
            self._keys(entry, where, ("token", "token_env", "subject", "namespaces"))
            token = self._secret(entry, f"{where}.", "token")
            if token is None:
                raise ConfigError(f"{where} needs 'token' or 'token_env'")
            subject = self._str(f"{where}.subject", entry.get("subject", _DEFAULT_API_SUBJECT))
            namespaces = (
                self._strings(f"{where}.namespaces", entry["namespaces"]) if "namespaces" in entry else None
            )
            entries.append((token, subject, namespaces))
        if not entries:
            return None
        try:
            return ApiAccess(entries)
        except ValueError as exc:
            raise ConfigError(f"api.tokens: {exc}") from None

    def _permission(self, key: str, value: object) -> str | tuple[str, ...]:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise self._wrong(key, '"any", "authenticated", "nobody", "token" or an array of subjects', value)

    def namespace(self, where: str, table: Mapping[str, Any]) -> Namespace:
        permissions = ("subscribe", "publish", "history", "presence_access")
        self._keys(
            table,
            where,
            (
                "name",
                "history_size",
                "history_ttl",
                "idempotency_window",
                "presence",
                "join_leave",
                *permissions,
            ),
        )
        if "name" not in table:
            raise ConfigError(f"{where} needs a 'name' (\"\" for channels without a prefix)")
        options: dict[str, Any] = {"name": self._str(f"{where}.name", table["name"])}
        if "history_size" in table:
            options["history_size"] = self._int(f"{where}.history_size", table["history_size"], 0)
        for key in ("history_ttl", "idempotency_window"):
            if key in table:
                options[key] = self._number(f"{where}.{key}", table[key])
        for key in ("presence", "join_leave"):
            if key in table:
                options[key] = self._bool(f"{where}.{key}", table[key])
        for key in permissions:
            if key in table:
                options[key] = self._permission(f"{where}.{key}", table[key])
        try:
            return Namespace(**options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def auth(self, table: Mapping[str, Any]) -> AuthChain:
        self._keys(table, "auth", ("required", "realm", "tokens", "jwt"))
        required = self._bool("auth.required", table.get("required", True))
        realm = self._str("auth.realm", table.get("realm", "wsskit"))
        authenticators: list[Any] = []
        try:
            if "jwt" in table:
                authenticators.append(self.jwt(self._table("auth.jwt", table["jwt"])))
            tokens: dict[str, str] = {}
            for index, entry in enumerate(self._tables("auth.tokens", table.get("tokens", []))):
                where = f"auth.tokens[{index}]"
                self._keys(entry, where, ("token", "token_env", "subject"))
                token = self._secret(entry, f"{where}.", "token")
                if token is None:
                    raise ConfigError(f"{where} needs 'token' or 'token_env'")
                if "subject" not in entry:
                    raise ConfigError(f"{where} needs a 'subject'")
                tokens[token] = self._str(f"{where}.subject", entry["subject"])
            if tokens:
                authenticators.append(StaticTokenAuthenticator(tokens))
            if not authenticators:
                raise ConfigError("auth needs 'tokens' or 'jwt'")
            return AuthChain(authenticators, realm=realm, required=required)
        except ConfigError:
            raise
        except (OSError, ValueError) as exc:
            raise ConfigError(f"auth: {exc}") from None

    def jwt(self, table: Mapping[str, Any]) -> JWTAuthenticator:
        self._keys(
            table,
            "auth.jwt",
            (
                "key_file", "key", "key_env", "jwks_file", "algorithms", "audience", "issuer",
                "leeway", "subject_claim", "required_claims",
            ),
        )  # fmt: skip
        if "algorithms" not in table:
            raise ConfigError("auth.jwt needs 'algorithms' (for example [\"ES256\"])")
        algorithms = self._strings("auth.jwt.algorithms", table["algorithms"])
        key: str | bytes | None = self._secret(table, "auth.jwt.", "key")
        if "key_file" in table:
            if key is not None:
                raise ConfigError("give one of auth.jwt.key_file, auth.jwt.key and auth.jwt.key_env")
            key = self._path("auth.jwt.key_file", table["key_file"]).read_bytes()
        jwks = self._path("auth.jwt.jwks_file", table["jwks_file"]) if "jwks_file" in table else None
        options: dict[str, Any] = {}
        for name in ("audience", "issuer"):
            if name in table:
                value = table[name]
                options[name] = value if isinstance(value, str) else self._strings(f"auth.jwt.{name}", value)
        if "leeway" in table:
            options["leeway"] = self._number("auth.jwt.leeway", table["leeway"])
        if "subject_claim" in table:
            options["subject_claim"] = self._str("auth.jwt.subject_claim", table["subject_claim"])
        if "required_claims" in table:
            options["required_claims"] = self._strings("auth.jwt.required_claims", table["required_claims"])
        return JWTAuthenticator(key=key, jwks_file=jwks, algorithms=algorithms, **options)
