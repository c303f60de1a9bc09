"""Connection states use the WHATWG readyState numbers."""

from wsskit.protocol.state import State


def test_ready_state_numbers() -> None:
    assert [int(s) for s in (State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED)] == [0, 1, 2, 3]
