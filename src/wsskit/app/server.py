"""``wsskit serve``: an echo endpoint over wss://, with one log line per connection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import tls
from ..asyncio.connection import Connection
from ..asyncio.server import Server, serve
from ..certs import ensure_dev_certificates
from ..channels.backplanes.base import backplane_from_url
from ..channels.hub import Hub
from ..channels.namespaces import Namespace
from ..guards.auth import AuthGuard
from ..guards.origin import OriginPolicy
from ..guards.ratelimit import ConnectionRateLimiter, MessageRateLimiter, PingFloodGuard
from ..protocol.events import Reject, Request
from ..protocol.handshake import error_reject
from ..protocol.headers import Headers
from ..reload import CertificateReloader
from .api import PUBLISH_PATH, PublishAPI
from .config import ServeConfig
from .dashboard import DASHBOARD_WS_PATH, Dashboard
from .drain import Drain, DrainPolicy
from .health import Health
from .metrics import METRICS_PATH, Metrics
from .pages import page

__all__ = ["App", "run", "start", "ROUTES", "default_namespaces"]

log = logging.getLogger("wsskit.app")

Handler = Callable[[Connection], Awaitable[None]]

#: The listen queue of ``wsskit serve``'s socket (each worker's, with SO_REUSEPORT).
LISTEN_BACKLOG = 1024

# A rate no client reaches: the connection caps still apply.
_UNLIMITED = 1e9


async def echo(ws: Connection) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


#: The WebSocket endpoints every server has; ``/channels`` joins them per server (its hub).
ROUTES: dict[str, Handler] = {"/echo": echo}

# Tasks that live as long as the server (the certificate watcher).
_background: set[asyncio.Task[None]] = set()


def _text(status: int, body: str) -> Reject:
    headers = Headers([("Content-Type", "text/plain; charset=utf-8")])
    return Reject(status, headers, body.encode("utf-8"))


def default_namespaces() -> list[Namespace]:
    """The channel namespaces of ``wsskit serve``: ``chat:*`` open to all, the rest read-only.

    ``chat:`` channels keep 100 messages for 5 minutes, with presence and
    join/leave events; any client may subscribe and publish (the demo has no
    accounts). Other channels may be read by anyone and published to only
    from the server side.
    """
    return [
        Namespace(
            "chat",
            history_size=100,
            history_ttl=300,
            presence=True,
            join_leave=True,
            subscribe="any",
            publish="any",
        ),
        Namespace("", subscribe="any", publish="nobody"),
    ]


class App:
    """One ``wsskit serve``: its routes, its channel hub and, once started, its server."""

    def __init__(self, config: ServeConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.routes: dict[str, Handler] = {**ROUTES, "/channels": hub.handler}
        self.server: Server | None = None
        self.origins = OriginPolicy.for_server(
            config.scheme, config.host, config.port, allowed=config.origins, allow_missing=True
        )
        #: ``POST /api/publish``, when API tokens are configured.
        self.api = None if config.api is None else PublishAPI(hub, config.api, self.origins)
        #: ``/metrics``, and the dashboard (its WebSocket only with API tokens).
        self.metrics = Metrics()
        # Before the publish timing: the dashboard's snapshots stay out of it.
        self.dashboard = Dashboard(hub, self.metrics, config.api)
        self.metrics.time_publishes(hub.backplane)
        if config.api is not None:
            self.routes[DASHBOARD_WS_PATH] = self.dashboard.handler
        self._metrics_task: asyncio.Task[None] | None = None
        #: ``/healthz`` and ``/readyz`` (readiness: accepting and the backplane usable).
        self.health = Health(hub)

    async def route(self, connection: Connection, request: Request) -> Reject | None:
        """``process_request``: plain HTTP answers before any upgrade."""
        answer = await self._route(connection, request)
        if answer is not None and request.is_upgrade:
            self.metrics.handshake_rejected(answer.status)
        return answer

    async def _route(self, connection: Connection, request: Request) -> Reject | None:
        answer = self.health.answer(request)
        if answer is not None:
            return answer
        answer = page(request, tls=self.config.tls)
        if answer is not None:
            return answer
        if request.path == METRICS_PATH and not request.is_upgrade:
            return self.metrics.answer()
        if request.path == PUBLISH_PATH and self.api is not None:
            return await self.api(request)
        # 404 for unknown paths first, so a browser or a probe learns the
        # path is wrong before it learns to upgrade.
        if request.path not in self.routes:
            return _text(404, f"404 Not Found: no endpoint at {request.path}\n")
        if request.error is not None:
            return error_reject(request.error)
        return None

    def select_subprotocol(self, connection: Connection, offered: Sequence[str]) -> str | None:
        """Only ``/channels`` speaks a subprotocol (``wsskit.channels.v1``)."""
        request = connection.request
        if request is not None and request.path == "/channels":
            return self.hub.select_subprotocol(connection, offered)
        return None

    async def dispatch(self, ws: Connection) -> None:
        """The connection handler: run the path's endpoint, log open and close."""
        request = ws.request
        assert request is not None
        peer = _peer(ws)
        log.info("%s opened %s", peer, request.path)
        self.metrics.opened(ws)
        try:
            await self.routes[request.path](ws)
        finally:
            # The server closes with 1000 once the handler returns; wait for
            # it so the log line carries the code that was exchanged.
            await ws.close()
            self.metrics.closed(ws)
            log.info("%s closed %s (%s)", peer, ws.close_code, ws.close_reason or "no reason")

    async def close(self) -> None:
        """Close channel sessions (4001, reconnect), then every other connection (1001)."""
        await self.dashboard.close()
        if self._metrics_task is not None:
            self._metrics_task.cancel()
        await self.hub.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def _peer(ws: Connection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)


def _ssl_context(config: ServeConfig) -> tuple[ssl.SSLContext | None, list[str]]:
    """The server's TLS context, and the lines that tell the user how to trust it."""
    if not config.tls:
        if not _is_loopback(config.host):
            log.warning(
                "serving plain ws:// on %s: traffic is readable and forgeable on the network; use TLS",
                config.host,
            )
        return None, []
    client = {"client_ca": config.client_ca, "client_cert": config.client_cert} if config.client_ca else {}
    if config.certfile is not None:
        context = tls.server_context(
            config.certfile,
            config.keyfile,
            profile=config.profile,  # type: ignore[arg-type]
            **client,  # type: ignore[arg-type]
        )
        return context, [f"certificate {config.certfile} (reloaded when the files change, or on SIGHUP)"]
    paths, created = ensure_dev_certificates(config.cert_dir)
    lines = [
        f"dev certificate for localhost, 127.0.0.1, ::1 signed by the local CA at {paths.ca_cert}",
        f"trust it with:  --cacert {paths.ca_cert}   (or: wsskit cert trust)",
    ]
    if created:
        lines.insert(0, f"created a local development CA in {paths.directory}")
    context = tls.server_context(
        paths.cert,
        paths.key,
        profile=config.profile,  # type: ignore[arg-type]
        **client,  # type: ignore[arg-type]
    )
    return context, lines


def _resolve(future: asyncio.Future[int], value: int) -> None:
    if not future.done():
        future.set_result(value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _rate_limits(config: ServeConfig) -> dict[str, Any]:
    # The options of serve() that carry the configured limits; a rate of 0
    # turns that limit off (the caps on connections always hold).
    rate = config.connection_rate
    limits: dict[str, Any] = {
        "connection_limiter": ConnectionRateLimiter(
            rate or _UNLIMITED,
            max(1.0, 2 * rate) if rate else _UNLIMITED,
            max_per_ip=config.max_connections_per_ip,
            max_total=config.max_connections,
            max_tracked=max(100_000, config.max_connections),
        )
    }
    if config.message_rate or config.byte_rate:
        byte_rate = config.byte_rate or None
        # A burst below the largest message would refuse every such message.
        byte_burst = None if byte_rate is None else max(byte_rate, config.max_size or 0)
        limits["message_limiter"] = functools.partial(
            MessageRateLimiter, config.message_rate or None, byte_rate, byte_burst=byte_burst
        )
    if config.ping_rate:
        limits["ping_limiter"] = functools.partial(PingFloodGuard, config.ping_rate)
    return limits


async def start(config: ServeConfig, *, listen: dict[str, Any] | None = None) -> App:
    """Start serving ``config`` and return the running app.

    With a certificate of the user's own (``--cert``), a replaced pair is
    picked up without a restart: when the files change and on SIGHUP.
    Raises :class:`ValueError` for an unknown backplane URL. A broker that is
    unreachable does not stop the server: the hub keeps retrying in the
    background and channels answer "unavailable" until it connects.
    ``listen`` goes to :func:`~wsskit.asyncio.server.serve`: ``reuse_port`` or
    an inherited ``sock`` (a worker of :mod:`wsskit.app.workers`).
    """
    namespaces = default_namespaces() if config.namespaces is None else list(config.namespaces)
    hub = Hub(backplane_from_url(config.backplane), namespaces, token_key=config.token_key)
    await hub.start(retry=True)
    app = App(config, hub)
    context, trust_lines = _ssl_context(config)
    if context is not None and config.certfile is not None:
        reloader = CertificateReloader(context, config.certfile, config.keyfile)
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):  # no SIGHUP on Windows
            reloader.install_sighup()
        _background.add(asyncio.get_running_loop().create_task(reloader.watch()))
    # RFC 6455 §10.2: browsers send Origin; a page elsewhere must not open
    # sockets with the user's cookies (Cross-Site WebSocket Hijacking). The
    # server's own origin is allowed; clients without Origin are not browsers.
    origins = app.origins
    # The auth guard checks the Origin first, then asks the chain.
    guard: Any = origins if config.auth is None else AuthGuard(config.auth, origin_policy=origins)
    guard = app.metrics.counting_guard(guard)
    limits = _rate_limits(config)
    limits["connection_limiter"] = app.metrics.counting_limiter(limits["connection_limiter"])
    if config.api is not None and not config.tls and not _is_loopback(config.host):
        log.warning("POST %s over plain HTTP: API tokens cross the network unencrypted", PUBLISH_PATH)
    listen = listen or {}
    sock = listen.get("sock")
    app.server = await serve(
        app.dispatch,
        # An inherited socket is already bound: no address then.
        None if sock is not None else config.host,
        None if sock is not None else config.port,
        sock=sock,
        reuse_port=bool(listen.get("reuse_port")),
        # asyncio's default of 100 overflows when thousands of clients
        # reconnect at once (a reconnect storm): SYNs dropped, 1 s retries.
        # (With an inherited socket asyncio calls listen() again with it.)
        backlog=LISTEN_BACKLOG,
        ssl=context,
        max_size=config.max_size,
        process_request=app.route,
        select_subprotocol=app.select_subprotocol,
        guards=[guard],
        proxy_protocol=config.proxy_protocol,
        trusted_proxies=config.trusted_proxies,
        **limits,
    )
    if config.proxy_protocol is not None:
        proxies = ", ".join(config.trusted_proxies)
        log.info("PROXY protocol (%s) required, from %s only", config.proxy_protocol, proxies)
    app._metrics_task = asyncio.get_running_loop().create_task(app.metrics.run())
    if config.api is not None:
        # Without API tokens the dashboard is off: no snapshots on the broker.
        app.dashboard.start()
    log.info("serving %s (echo at /echo, channels at /channels over %s)", config.url(), config.backplane)
    if config.auth is not None:
        log.info("WebSocket clients authenticate (%s)", "required" if config.auth.required else "optional")
    if config.api is not None:
        log.info("publish API at POST %s (%d token subjects)", PUBLISH_PATH, len(config.api.namespaces))
    for line in trust_lines:
        log.info("%s", line)
    return app


async def run(
    config: ServeConfig,
    *,
    listen: dict[str, Any] | None = None,
    started: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then drain (see :mod:`wsskit.app.drain`) and return.

    A second signal during the drain closes everything at once. ``listen``
    goes to :func:`start`; ``started`` is called once the server serves.
    """
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()
    # Handlers go in before the socket opens: a signal that arrives as soon
    # as "serving" is printed must drain, not kill the process.
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows has no such handlers
            loop.add_signal_handler(sig, _resolve, stop, sig)
    app = await start(config, listen=listen)
    if started is not None:
        started()
    received = await stop
    assert app.server is not None
    policy = DrainPolicy(config.drain_delay, config.drain_window, config.drain_timeout)
    drain = Drain(app.server, app.hub, app.health, policy)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, drain.hurry)
    log.info(
        "%s received: draining (delay %gs, window %gs, timeout %gs)",
        signal.Signals(received).name,
        policy.delay,
        policy.window,
        policy.timeout,
    )
    await drain.run()
    await app.close()
    for task in _background:
        task.cancel()
    log.info("stopped")
