"""Test helpers shared across the suite."""

from __future__ import annotations

from wsskit.protocol.connection import ClientConnection, Connection, ServerConnection
from wsskit.protocol.deflate import DeflateOptions
from wsskit.protocol.events import Accept, Event, Request
from wsskit.protocol.limits import Limits


def flush(conn: Connection) -> bytes:
    """Everything the core has queued, as one bytes object."""
    return b"".join(bytes(chunk) for chunk in conn.data_to_send())


class ConnectionPair:
    """A client core wired to a server core in memory, with the handshake done.

    :meth:`to_server` / :meth:`to_client` carry what one side queued to the
    other and return the events the receiving side produced.
    """

    def __init__(
        self,
        *,
        client_compression: DeflateOptions | None = None,
        server_compression: DeflateOptions | None = None,
        client_limits: Limits | None = None,
        server_limits: Limits | None = None,
        subprotocols: tuple[str, ...] = (),
        accept: Accept | None = None,
    ) -> None:
        self.client = ClientConnection(
            "example.com",
            "/chat",
            subprotocols=subprotocols,
            compression=client_compression,
            limits=client_limits,
        )
        self.server = ServerConnection(compression=server_compression, limits=server_limits)
        events = self.to_server()
        assert len(events) == 1 and isinstance(events[0], Request), events
        self.request = events[0]
        self.server.send(accept if accept is not None else Accept())
        events = self.to_client()
        assert len(events) == 1 and isinstance(events[0], Accept), events
        self.response = events[0]

    def to_server(self) -> list[Event]:
        self.server.receive_data(flush(self.client))
        return self.server.events_received()

    def to_client(self) -> list[Event]:
        self.client.receive_data(flush(self.server))
        return self.client.events_received()
