"""wsskit.browser.WebSocket in a plain script: no event loop runs in the test's thread.

The socket runs on wsskit's shared loop thread and calls its listeners there;
the test's thread blocks in run_forever() / wait_open() / wait_closed(). The
servers are a wsskit server on a loop thread of its own and `wsskit serve`
in a child process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.serve_process import ServeProcess
from tests.sync.server_thread import ServerThread
from wsskit import tls
from wsskit.asyncio import ServerConnection
from wsskit.browser import CLOSED, OPEN, CloseEvent, Event, MessageEvent, WebSocket
from wsskit.exceptions import InvalidState, InvalidStatus
from wsskit.protocol.events import Reject, Request

TIMEOUT = 10
QUIET: dict[str, Any] = {"ping_interval": None, "close_timeout": 2}


def snippet(url: str, context: ssl.SSLContext) -> CloseEvent:
    """The browser snippet, line for line; prints open, the echo and closed."""
    # const socket = new WebSocket(url);
    socket = WebSocket(url, ssl=context, **QUIET)
    # socket.onopen = () => { console.log("open"); socket.send("Hello Server!"); };
    socket.onopen = lambda event: (print("open"), socket.send("Hello Server!"))
    # socket.onmessage = (event) => { console.log(event.data); socket.close(); };
    socket.onmessage = lambda event: (print(event.data), socket.close())
    # socket.onclose = () => console.log("closed");
    socket.onclose = lambda event: print("closed")
    return socket.run_forever()


def test_the_snippet_in_a_script(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # a plain script indeed
    with ServerThread(ssl=server_ssl) as server:
        event = snippet(server.url("/echo"), client_ssl)
    assert capsys.readouterr().out.splitlines() == ["open", "Hello Server!", "closed"]
    assert (event.code, event.was_clean) == (1005, True)


def test_the_snippet_against_wsskit_serve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    served = ServeProcess(tmp_path, "--cert-dir", str(tmp_path / "certs"))
    try:
        ca = served.ca_path()
        assert Path(ca).parent == tmp_path / "certs"
        event = snippet(f"wss://localhost:{served.port}/echo", tls.client_context(cafile=ca))
    finally:
        assert served.stop() == 0
    assert capsys.readouterr().out.splitlines() == ["open", "Hello Server!", "closed"]
    assert event.was_clean


def test_listeners_run_on_the_loop_thread_and_the_script_blocks(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    threads: set[str] = set()
    messages: list[str | bytes | bytearray | memoryview] = []
    refused: concurrent.futures.Future[BaseException | None] = concurrent.futures.Future()

    def on_message(event: MessageEvent) -> None:
        threads.add(threading.current_thread().name)
        messages.append(event.data)
        if len(messages) == 2:
            # Blocking here would block the loop that must do the work.
            try:
                socket.wait_closed()
            except InvalidState as exc:
                refused.set_result(exc)
            else:
                refused.set_result(None)
            socket.close(4000, "enough")

    with ServerThread(ssl=server_ssl) as server:
        socket = WebSocket(server.url(), ssl=client_ssl, onmessage=on_message, **QUIET)
        assert socket.wait_open(TIMEOUT) is True
        assert socket.ready_state == OPEN
        # The script's thread sends; the loop thread writes.
        socket.send("from the script")
        socket.send(b"\x00binary")
        event = socket.wait_closed(TIMEOUT)
    assert isinstance(event, CloseEvent) and (event.code, event.was_clean) == (4000, True)
    assert socket.ready_state == CLOSED
    assert messages == ["from the script", b"\x00binary"]
    assert threads == {"wsskit-loop"}
    assert threading.current_thread().name not in threads
    assert isinstance(refused.result(TIMEOUT), InvalidState)
    assert socket.run_forever() is event  # closed already: at once


def test_wait_closed_times_out_while_open(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    with ServerThread(ssl=server_ssl) as server:
        socket = WebSocket(server.url(), ssl=client_ssl, **QUIET)
        assert socket.wait_open(TIMEOUT)
        assert socket.wait_closed(0.01) is None
        socket.close()
        event = socket.wait_closed(TIMEOUT)
        assert event is not None and event.code == 1005


def test_a_refused_handshake_in_a_script(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Reject:
        return Reject(403)

    seen: list[tuple[str, int]] = []

    def record(event: Event) -> None:
        seen.append((event.type, socket.ready_state))

    with ServerThread(ssl=server_ssl, process_request=refuse) as server:
        socket = WebSocket(
            server.url(), ssl=client_ssl, onopen=record, onerror=record, onclose=record, **QUIET
        )
        with pytest.raises(InvalidStatus):
            socket.wait_open(TIMEOUT)
        event = socket.run_forever()
    assert seen == [("error", CLOSED), ("close", CLOSED)]
    assert (event.code, event.reason, event.was_clean) == (1006, "", False)


def test_a_socket_outlived_by_its_asyncio_program_is_dropped(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    dispatched: list[str] = []

    async def program(url: str) -> WebSocket:
        socket = WebSocket(url, ssl=client_ssl, onclose=lambda event: dispatched.append(event.type), **QUIET)
        await asyncio.wait_for(socket.opened(), TIMEOUT)
        return socket  # asyncio.run() then cancels what still runs

    with ServerThread(ssl=server_ssl) as server:
        socket = asyncio.run(program(server.url()))
    assert socket.ready_state == CLOSED
    event = socket.wait_closed(TIMEOUT)  # closed: fine from the thread that ran the loop
    assert event is not None and (event.code, event.was_clean) == (1006, False)
    assert dispatched == []  # no loop left to run listeners on


def test_the_issue_snippet_line_for_line_with_send_right_after_the_listeners(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, capsys: pytest.CaptureFixture[str]
) -> None:
    # The issue's snippet sends right after adding its listeners: in a
    # browser the open event cannot have fired yet; in a script send() waits
    # for it instead of failing.
    with ServerThread(ssl=server_ssl) as server:
        socket = WebSocket(server.url("/echo"), ssl=client_ssl, **QUIET)
        socket.add_event_listener("open", lambda event: print("open"))
        socket.add_event_listener(
            "message", lambda event: (print("Message received from server:", event.data), socket.close())
        )
        socket.add_event_listener("error", lambda event: print("error:", event))
        socket.add_event_listener("close", lambda event: print("closed"))
        socket.send("Hello World!")
        event = socket.run_forever()
    assert capsys.readouterr().out.splitlines() == [
        "open",
        "Message received from server: Hello World!",
        "closed",
    ]
    assert event.was_clean


async def test_send_while_connecting_still_fails_in_asyncio_code(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    with ServerThread(ssl=server_ssl) as server:
        socket = WebSocket(server.url("/echo"), ssl=client_ssl, **QUIET)
        with pytest.raises(InvalidState):
            socket.send("too early")
        await socket.opened()
        socket.close()
        await socket.closed()
