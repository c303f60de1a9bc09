"""The Node.js ``ws`` client (``node/client.js``) against a wsskit server, over ws:// and wss://."""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest

from tests.interop.peers import NODE_DIR
from wsskit.asyncio import ServerConnection, serve
from wsskit.certs import DevCertificates
from wsskit.exceptions import ConnectionClosed

pytestmark = pytest.mark.interop

TIMEOUT = 60


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("compression", ["deflate", None], ids=["deflate", "plain"])
async def test_node_client_against_our_server(
    node: str,
    scheme: str,
    compression: str | None,
    server_ssl: ssl.SSLContext,
    certificates: DevCertificates,
) -> None:
    seen: list[tuple[type, int]] = []  # what the server received: type and length of each message
    small: list[str | bytes] = []
    closes: list[tuple[int | None, str | None]] = []
    extensions: list[tuple[str, ...]] = []

    async def echo(ws: ServerConnection) -> None:
        extensions.append(ws.extensions)
        try:
            async for message in ws:
                seen.append((type(message), len(message)))
                if len(message) < 100:
                    small.append(message)
                await ws.send(message)
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        closes.append((ws.close_code, ws.close_reason))

    async with serve(
        echo,
        "127.0.0.1",
        0,
        ssl=server_ssl if scheme == "wss" else None,
        compression=compression,
        max_size=8 * 2**20,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        args = [node, "client.js", f"{scheme}://127.0.0.1:{port}/"]
        if scheme == "wss":
            args += ["--ca", str(certificates.ca_cert)]
        if compression is None:
            args.append("--no-deflate")
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["checks"] == ["text", "binary", "large", "fragmented text", "fragmented binary", "ping"]
    assert summary["extensions"] == ("permessage-deflate" if compression else "")
    assert summary["close"]["code"] == 1000  # our server's answer to the client's 1000 "done"
    # The server saw each fragmented message as one message.
    assert seen == [(str, 15), (bytes, 4), (bytes, 4 * 2**20), (str, 10), (bytes, 2000)]
    assert small == ["hello ünïcødé ✓", b"\x00\x01\x02\xff", "fragmented"]
    assert [[value.split(";")[0] for value in values] for values in extensions] == [
        ["permessage-deflate"] if compression else []
    ]
    assert closes == [(1000, "done")]
