"""Settings of ``wsskit serve``, gathered from the command line and the config file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..channels.namespaces import Namespace
    from ..guards.auth import AuthChain
    from .settings import ApiAccess

__all__ = ["ServeConfig", "DEFAULT_PORT"]

DEFAULT_PORT = 8443


@dataclass(frozen=True)
class ServeConfig:
    """What ``wsskit serve`` runs.

    With ``tls`` on and no ``certfile``, the development certificate from
    :func:`wsskit.certs.ensure_dev_certificates` is used.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls: bool = True
    certfile: Path | None = None
    keyfile: Path | None = None
    max_size: int | None = 2**20
    cert_dir: Path | None = None
    profile: str = "intermediate"
    #: Origins allowed besides the server's own (``https://app.example.com``).
    origins: tuple[str, ...] = ()
    #: Mutual TLS: the CA client certificates must chain to, and whether one is required.
    client_ca: Path | None = None
    client_cert: str = "required"
    #: New connections per second from one IP (with a burst of twice that); 0: no limit.
    connection_rate: float = 50.0
    #: Connections open at once from one IP, and in total.
    max_connections_per_ip: int = 1_000
    max_connections: int = 10_000
    #: Messages and bytes per second one connection may send (bursts of one
    #: second's worth, and at least one largest message); 0: no limit.
    message_rate: float = 1_000.0
    byte_rate: int = 16 * 2**20
    #: Pings answered per second per connection; a flood beyond gets no Pongs.
    ping_rate: float = 10.0
    #: Where channels live: ``memory://`` (one process), ``redis://...``, ``nats://...``.
    backplane: str = "memory://"
    #: Channel namespaces; None: :func:`~wsskit.app.server.default_namespaces`.
    namespaces: tuple[Namespace, ...] | None = None
    #: The key (32 bytes or more) that verifies channel tokens ("token" permissions).
    token_key: bytes | None = field(default=None, repr=False)
    #: Who authenticates WebSocket clients (every endpoint); None: nobody is asked.
    auth: AuthChain | None = None
    #: Who may use ``POST /api/publish``; None: the endpoint is off (404).
    api: ApiAccess | None = None
    #: PROXY protocol header versions read from the load balancer ("v1",
    #: "v2", "v1v2"); None: off. Needs ``trusted_proxies``.
    proxy_protocol: str | None = None
    #: The networks (CIDR) the load balancers connect from; only they may connect.
    trusted_proxies: tuple[str, ...] = ()
    #: Graceful drain on SIGTERM/SIGINT (see :mod:`wsskit.app.drain`): seconds
    #: of "not ready" before the listening socket closes, the window the
    #: closes are spread over, and the time after which the rest is aborted.
    drain_delay: float = 0.0
    drain_window: float = 10.0
    drain_timeout: float = 30.0
    #: Worker processes sharing the port (see :mod:`wsskit.app.workers`); 1: this process serves.
    workers: int = 1

    @property
    def scheme(self) -> str:
        """``wss`` or ``ws``."""
        return "wss" if self.tls else "ws"

    def url(self, path: str = "") -> str:
        """The URL clients use to reach ``path`` on this server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"
