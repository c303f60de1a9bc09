"""A wsskit server on an event loop thread of its own, for tests of blocking clients.

The blocking client and the browser-style WebSocket in a script run their
connections on wsskit's shared loop thread; the server here runs on another
one, so that neither side can hide a deadlock of the other.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from wsskit.asyncio import Server, ServerConnection, serve
from wsskit.sync.loop import LoopThread

__all__ = ["ServerThread", "echo"]


async def echo(ws: ServerConnection) -> None:
    """A handler that sends back every message it receives."""
    async for message in ws:
        await ws.send(message)


class ServerThread:
    """``serve(handler, "127.0.0.1", 0, ssl=..., **options)`` on its own loop thread.

    Keepalive is off and the close timeout short unless the options say
    otherwise. Use it as a context manager: on exit the server closes (its
    connections get 1001) and the thread is joined.
    """

    def __init__(
        self,
        handler: Callable[[ServerConnection], Awaitable[None]] = echo,
        *,
        ssl: ssl.SSLContext | None = None,
        **options: Any,
    ) -> None:
        self.runner = LoopThread("test-server")
        self._handler = handler
        self._options: dict[str, Any] = {"ping_interval": None, "close_timeout": 2, "ssl": ssl, **options}
        self.server = self.runner.run(self._start(0))
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _start(self, port: int) -> Server:
        return await serve(self._handler, "127.0.0.1", port, **self._options)

    def url(self, path: str = "/", host: str = "localhost") -> str:
        """The server's ``wss://`` (or ``ws://``) URL."""
        scheme = "ws" if self._options["ssl"] is None else "wss"
        return f"{scheme}://{host}:{self.port}{path}"

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function()`` on the server's loop thread and return its result."""

        async def call() -> Any:
            return function()

        return self.runner.run(call())

    def close(self) -> None:
        """Close the server (and its connections), then stop and join its thread."""

        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        if self.runner.is_running():
            self.runner.run(close())
        self.runner.stop()
        assert not self.runner.thread.is_alive()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
