"""deploy/haproxy: both recipes, exercised with a real HAProxy in front of two real nodes."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deploy.lab.processes import HAProxy, RedisProcess, ServeNode, free_port, haproxy_bundle
from deploy.lab.recipes import render_file, without_http_checks, without_proxy_protocol

from wsskit.certs import DevCertificates

from .conftest import PROXY_OPTIONS, Balancer, has_readiness, proxy_protocol, recipe_nodes, require
from .scenarios import (
    WAIT,
    channels_across_nodes,
    echo_spread,
    new_connections_avoid,
    refused_with,
    serve_supports,
)

RECIPES = ["haproxy/tls-terminate.cfg", "haproxy/tls-passthrough.cfg"]

Trust = Callable[[str], tuple[ssl.SSLContext, ssl.SSLContext]]


async def wait_states(balancer: Balancer, wanted: dict[str, str]) -> None:
    """Wait until HAProxy reports ``wanted`` (server -> status prefix); fails after a generous wait."""
    assert isinstance(balancer.process, HAProxy)
    await asyncio.to_thread(balancer.process.wait_states, wanted, WAIT)


@pytest.fixture(params=RECIPES)
def recipe(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def node_options(recipe: str) -> list[str]:
    return list(PROXY_OPTIONS) if proxy_protocol(recipe) else []


def start_haproxy(
    recipe: str,
    tmp_path: Path,
    certs: DevCertificates,
    public: DevCertificates,
    nodes: list[ServeNode],
    trust: Trust,
) -> Balancer:
    """Render ``recipe`` for ``nodes`` and start HAProxy on it."""
    require("haproxy")
    port = free_port()
    stats_socket = tmp_path / "haproxy.sock"
    values = {
        "LISTEN_ADDR": f"127.0.0.1:{port}",
        "CERT_BUNDLE": str(haproxy_bundle(public, tmp_path / "bundle.pem")),
        "NODE_CA": str(certs.ca_cert),
        "NODE_TLS_NAME": "localhost",
        "STATS_SOCKET": str(stats_socket),
        "MAXCONN": "2000",
    }
    config = render_file(recipe, values, recipe_nodes(nodes), tmp_path / Path(recipe).name)
    node_ssl = trust("passthrough")[0]  # the nodes present their own certificate
    readiness = has_readiness(nodes[0], node_ssl, proxy_header=proxy_protocol(recipe))
    if not readiness:
        # Temporary: until `wsskit serve` has /readyz, check by connecting only.
        without_http_checks(config)
    if not proxy_protocol(recipe):
        without_proxy_protocol(config)
    proxy = HAProxy(config, port, stats_socket)
    proxy.start()
    client_ssl, wrong_ssl = trust(recipe)
    return Balancer(proxy, port, client_ssl, wrong_ssl, readiness)


@pytest.fixture
def balancer(
    recipe: str,
    tmp_path: Path,
    lab_certs: DevCertificates,
    public_certs: DevCertificates,
    nodes: list[ServeNode],
    trust: Trust,
) -> Iterator[Balancer]:
    started = start_haproxy(recipe, tmp_path, lab_certs, public_certs, nodes, trust)
    try:
        yield started
    finally:
        started.process.stop(signal.SIGKILL)


async def test_echo_through_haproxy_spreads_over_both_nodes(
    recipe: str, balancer: Balancer, nodes: list[ServeNode]
) -> None:
    await wait_states(balancer, {"node1": "UP", "node2": "UP"})
    await echo_spread(balancer.port, balancer.client_ssl, nodes, client_addresses=proxy_protocol(recipe))


async def test_the_client_sees_the_right_certificate(balancer: Balancer) -> None:
    # Terminated: HAProxy's public certificate; passed through: the node's own.
    await refused_with(balancer.port, balancer.wrong_ssl)


async def test_channels_through_haproxy_cross_nodes(balancer: Balancer, nodes: list[ServeNode]) -> None:
    await wait_states(balancer, {"node1": "UP", "node2": "UP"})
    await channels_across_nodes(balancer.port, balancer.client_ssl, nodes)


async def test_a_draining_node_gets_no_new_connections(
    recipe: str,
    node_options: list[str],
    tmp_path: Path,
    lab_certs: DevCertificates,
    public_certs: DevCertificates,
    redis: RedisProcess,
    trust: Trust,
) -> None:
    # With --drain-delay the drained node keeps listening for a while but
    # answers 503 on /readyz: only the health check can keep clients away.
    drain = ["--drain-delay", "60", "--drain-timeout", "90"] if serve_supports("--drain-delay") else []
    nodes = [
        ServeNode(f"node{i}", tmp_path / f"home{i}", lab_certs, *drain, *node_options, backplane=redis.url)
        for i in (1, 2)
    ]
    try:
        for node in nodes:
            node.start()
        balancer = start_haproxy(recipe, tmp_path, lab_certs, public_certs, nodes, trust)
        try:
            await wait_states(balancer, {"node1": "UP", "node2": "UP"})
            nodes[0].send_signal(signal.SIGTERM)
            await wait_states(balancer, {"node1": "DOWN", "node2": "UP"})
            if drain and balancer.readiness:
                # The drained node still accepts TCP: HAProxy left it for its 503 alone.
                socket.create_connection(("127.0.0.1", nodes[0].port), timeout=5).close()
            await new_connections_avoid(balancer.port, balancer.client_ssl, gone=nodes[0], alive=nodes[1])
        finally:
            balancer.process.stop(signal.SIGKILL)
    finally:
        for node in nodes:
            node.stop(signal.SIGKILL)
