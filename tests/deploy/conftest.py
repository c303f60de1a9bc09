"""Fixtures of the recipe tests: certificates, a private Redis, two real ``wsskit serve`` nodes.

HAProxy, nginx and redis-server are needed; without them the tests skip, or
fail under ``CI=true`` (install: ``apt-get install haproxy nginx libnginx-mod-stream redis-server``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from deploy.lab.processes import Child, RedisProcess, ServeNode, make_certificates
from deploy.lab.recipes import Node

from wsskit import tls
from wsskit.certs import DevCertificates

from .scenarios import serve_supports


def missing(message: str) -> NoReturn:
    """Skip the test for a missing tool; fail it instead under ``CI=true``."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require(binary: str) -> str:
    """The path of ``binary``: skips the test when it is missing, fails instead under ``CI=true``."""
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(p)), None
    )
    if path is None:
        missing(f"{binary} is not installed")
    return path


@pytest.fixture(scope="module")
def lab_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    """The nodes' certificate (for 127.0.0.1 / localhost) and its CA, the internal one."""
    return make_certificates(tmp_path_factory.mktemp("lab-certs"))


@pytest.fixture(scope="module")
def lab_client_ssl(lab_certs: DevCertificates) -> ssl.SSLContext:
    """A verifying client context trusting only the nodes' CA."""
    return tls.client_context(cafile=lab_certs.ca_cert)


@pytest.fixture(scope="module")
def public_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    """The balancer's certificate when it terminates TLS, from another CA (the "public" one)."""
    return make_certificates(tmp_path_factory.mktemp("public-certs"))


@pytest.fixture(scope="module")
def public_client_ssl(public_certs: DevCertificates) -> ssl.SSLContext:
    """A verifying client context trusting only the public CA."""
    return tls.client_context(cafile=public_certs.ca_cert)


@dataclass
class Balancer:
    """A running recipe: its process, its port, and the TLS contexts a client needs.

    ``client_ssl`` trusts whoever presents the certificate to clients (the
    balancer when it terminates TLS, the nodes when it passes TLS through);
    ``wrong_ssl`` trusts the other CA only, and must fail.
    """

    process: Child
    port: int
    client_ssl: ssl.SSLContext
    wrong_ssl: ssl.SSLContext
    #: False while the nodes lack /readyz: HAProxy then checks by connecting only.
    readiness: bool = True


@pytest.fixture
def trust(
    lab_client_ssl: ssl.SSLContext, public_client_ssl: ssl.SSLContext
) -> Callable[[str], tuple[ssl.SSLContext, ssl.SSLContext]]:
    """For a recipe: (the context that must work, the one that must fail)."""

    def contexts(recipe: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        if "terminate" in recipe:
            return public_client_ssl, lab_client_ssl
        return lab_client_ssl, public_client_ssl

    return contexts


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A private redis-server on a free port."""
    require("redis-server")
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop(signal.SIGKILL)


#: How the nodes learn the client's address from a balancer on loopback.
PROXY_OPTIONS = ("--proxy-protocol", "--trusted-proxy", "127.0.0.1/32")


def proxy_protocol(recipe: str) -> bool:
    """Whether ``recipe`` sends PROXY headers here: all but nginx's http proxy, once serve reads them."""
    return recipe != "nginx/tls-terminate.conf" and serve_supports("--proxy-protocol")


@pytest.fixture
def node_options() -> list[str]:
    """More ``wsskit serve`` options for the nodes (a test module overrides it per recipe)."""
    return []


@pytest.fixture
def nodes(
    tmp_path: Path, lab_certs: DevCertificates, redis: RedisProcess, node_options: list[str]
) -> Iterator[list[ServeNode]]:
    """Two ``wsskit serve`` nodes (wss://, their own certificate) sharing the private Redis."""
    started = [
        ServeNode(f"node{i}", tmp_path / f"home{i}", lab_certs, *node_options, backplane=redis.url)
        for i in (1, 2)
    ]
    try:
        for node in started:
            node.start()
        yield started
    finally:
        for node in started:
            node.stop(signal.SIGKILL)


def recipe_nodes(nodes: list[ServeNode]) -> list[Node]:
    """The nodes as a recipe lists them."""
    return [Node(node.name, node.addr) for node in nodes]


def http_get(port: int, path: str, context: ssl.SSLContext, *, proxy_header: bool = False) -> int:
    """The status of ``GET path`` over TLS on 127.0.0.1:``port``; raises :class:`OSError`.

    ``proxy_header``: send a PROXY protocol v1 line first, as a balancer would.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        if proxy_header:
            source = raw.getsockname()[1]
            raw.sendall(f"PROXY TCP4 127.0.0.1 127.0.0.1 {source} {port}\r\n".encode())
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1])


def has_readiness(node: ServeNode, context: ssl.SSLContext, *, proxy_header: bool = False) -> bool:
    """Whether the node answers ``GET /readyz`` (the health endpoints have landed)."""
    return http_get(node.port, "/readyz", context, proxy_header=proxy_header) == 200
