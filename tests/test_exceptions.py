"""The exception tree: one root, the codes and statuses each class carries."""

from __future__ import annotations

import pytest

from wsskit import exceptions as exc
from wsskit.protocol.events import Reject


def test_every_exception_has_the_one_root() -> None:
    for name in exc.__all__:
        assert issubclass(getattr(exc, name), exc.WebSocketError), name


def test_builtin_bases_for_state_and_uri() -> None:
    assert issubclass(exc.InvalidState, RuntimeError)
    assert issubclass(exc.InvalidURI, ValueError)


def test_protocol_errors_carry_close_codes() -> None:
    assert exc.RemoteProtocolError("bad").close_code == 1002
    assert exc.RemoteProtocolError("utf8", 1007).close_code == 1007
    too_big = exc.PayloadTooBig("big")
    assert too_big.close_code == 1009 and isinstance(too_big, exc.RemoteProtocolError)


@pytest.mark.parametrize(
    ("code", "kind"), [(1000, "OK"), (1001, "OK"), (1005, "OK"), (1006, "Error"), (1011, "Error")]
)
def test_closed_exception_picks_the_class(code: int, kind: str) -> None:
    error = exc.closed_exception(code, "why")
    assert type(error).__name__ == f"ConnectionClosed{kind}"
    assert (error.code, error.reason) == (code, "why")
    assert str(error) == f"connection closed: {code} (why)"
    assert str(exc.closed_exception(code, "")) == f"connection closed: {code}"


def test_handshake_errors() -> None:
    assert exc.InvalidHandshake("x").status == 400
    assert exc.InvalidHandshake("x", 426).status == 426
    reject = Reject(404)
    error = exc.InvalidStatus(reject)
    assert error.response is reject and "404" in str(error)


def test_rejections_carry_statuses() -> None:
    assert exc.Unauthorized().status == 401
    assert exc.Forbidden("no").status == 403 and str(exc.Forbidden("no")) == "no"
    assert exc.Rejected("x", status=451).status == 451
    limited = exc.RateLimited(retry_after=2.5)
    assert limited.status == 429 and limited.retry_after == 2.5 and str(limited) == "RateLimited"
