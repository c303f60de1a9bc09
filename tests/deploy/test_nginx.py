"""deploy/nginx: both recipes, exercised with a real nginx in front of two real nodes.

nginx OSS has no active health checks: what is tested is the passive
failover, a dead node skipped for the next node on the same request.
"""

from __future__ import annotations

import signal
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deploy.lab.processes import Nginx, ServeNode, free_port, nginx_stream_module
from deploy.lab.recipes import render_file, without_proxy_protocol

from wsskit.certs import DevCertificates

from .conftest import PROXY_OPTIONS, Balancer, missing, proxy_protocol, recipe_nodes, require
from .scenarios import channels_across_nodes, echo_spread, new_connections_avoid, refused_with

RECIPES = ["nginx/tls-terminate.conf", "nginx/tls-passthrough.conf"]


@pytest.fixture(params=RECIPES)
def recipe(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def node_options(recipe: str) -> list[str]:
    return list(PROXY_OPTIONS) if proxy_protocol(recipe) else []


@pytest.fixture
def balancer(
    recipe: str,
    tmp_path: Path,
    lab_certs: DevCertificates,
    public_certs: DevCertificates,
    nodes: list[ServeNode],
    trust: Callable[[str], tuple[ssl.SSLContext, ssl.SSLContext]],
) -> Iterator[Balancer]:
    require("nginx")
    port = free_port()
    prefix = tmp_path / "nginx"
    (prefix / "temp").mkdir(parents=True)
    values: dict[str, str | None] = {
        "LISTEN_ADDR": f"127.0.0.1:{port}",
        "CERT": str(public_certs.cert),
        "KEY": str(public_certs.key),
        "NODE_CA": str(lab_certs.ca_cert),
        "NODE_TLS_NAME": "localhost",
        "PID_FILE": str(prefix / "nginx.pid"),
        "TEMP_DIR": str(prefix / "temp"),
    }
    if "passthrough" in recipe:
        try:
            values["STREAM_MODULE"] = nginx_stream_module()
        except FileNotFoundError as exc:
            missing(str(exc))
    config = render_file(recipe, values, recipe_nodes(nodes), prefix / Path(recipe).name)
    if not proxy_protocol(recipe):
        without_proxy_protocol(config)
    server = Nginx(config, port, prefix)
    server.start()
    try:
        yield Balancer(server, port, *trust(recipe))
    finally:
        server.stop(signal.SIGKILL)


async def test_echo_through_nginx_spreads_over_both_nodes(
    recipe: str, balancer: Balancer, nodes: list[ServeNode]
) -> None:
    await echo_spread(balancer.port, balancer.client_ssl, nodes, client_addresses=proxy_protocol(recipe))


async def test_the_client_sees_the_right_certificate(balancer: Balancer) -> None:
    await refused_with(balancer.port, balancer.wrong_ssl)


async def test_channels_through_nginx_cross_nodes(balancer: Balancer, nodes: list[ServeNode]) -> None:
    await channels_across_nodes(balancer.port, balancer.client_ssl, nodes)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "drained"])
async def test_a_stopped_node_is_skipped(
    how: signal.Signals, balancer: Balancer, nodes: list[ServeNode]
) -> None:
    nodes[0].stop(how)
    await new_connections_avoid(balancer.port, balancer.client_ssl, gone=nodes[0], alive=nodes[1])
