"""``GET /healthz`` and ``GET /readyz``: the answers load balancers and orchestrators poll.

- ``/healthz`` (liveness): 200 ``ok`` whenever the process answers at all.
  A failing liveness probe means "restart me", so it asks nothing of the
  broker: a broker outage must not make every node restart at once.
- ``/readyz`` (readiness): 200 ``ready`` while the server accepts
  connections and its channel backplane is reachable; otherwise 503 with a
  one-line reason (``draining``, ``backplane unavailable``), so that a load
  balancer stops sending new clients here while old ones are served.

Both are plain HTTP on the WebSocket port, need no authentication, carry
``Cache-Control: no-store`` (a cached "ready" would be a lie a minute later)
and answer ``GET`` and ``HEAD``. Under ``wsskit serve --workers N`` they
also name the worker that answered (``X-Wsskit-Worker``).

They are answered before the connection limiter's verdict is applied (see
:meth:`wsskit.asyncio.server.Server`, ``process_request`` runs first), so a
health checker polling once a second never gets a 429 or 503 from the rate
limits, even while a reconnect storm from the same address exhausts them.
"""

from __future__ import annotations

import os
from typing import Protocol

from ..protocol.events import Reject, Request
from ..protocol.headers import Headers

__all__ = ["HEALTH_PATH", "READY_PATH", "WORKER_ENV", "Backplane", "Health"]

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
#: Set by the ``--workers`` supervisor in each worker: the worker's index (0, 1, ...).
WORKER_ENV = "WSSKIT_WORKER"


class Backplane(Protocol):
    """What readiness asks of the channel hub: is the broker usable now?"""

    @property
    def ready(self) -> bool:
        """True while the backplane is connected and usable."""


class Health:
    """The state the probes report, and their HTTP answers.

    ``hub`` is the channel hub (anything with a ``ready`` property).
    :meth:`start_draining` turns readiness off for good.
    """

    def __init__(self, hub: Backplane, worker: str | None = None) -> None:
        self.hub = hub
        #: The worker index named in the answers; by default ``$WSSKIT_WORKER``.
        self.worker = os.environ.get(WORKER_ENV) if worker is None else worker
        self.draining = False

    def start_draining(self) -> None:
        """From now on, ``/readyz`` answers 503 ``draining``."""
        self.draining = True

    def unready_reason(self) -> str | None:
        """Why the server is not ready, or None when it is."""
        if self.draining:
            return "draining"
        if not getattr(self.hub, "ready", True):
            return "backplane unavailable"
        return None

    def answer(self, request: Request) -> Reject | None:
        """The answer to a health probe, or None when ``request`` is not one.

        Methods other than GET and HEAD get 405 with ``Allow: GET, HEAD``.
        A HEAD answer has the status and headers of the GET answer and no
        body (so its ``Content-Length`` is 0: the one field that differs).
        """
        path = request.path
        if path == HEALTH_PATH:
            status, body = 200, "ok"
        elif path == READY_PATH:
            reason = self.unready_reason()
            status, body = (200, "ready") if reason is None else (503, reason)
        else:
            return None
        headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")])
        if self.worker:
            headers["X-Wsskit-Worker"] = self.worker
        if request.method not in ("GET", "HEAD"):
            headers["Allow"] = "GET, HEAD"
            return Reject(405, headers, f"method {request.method} not allowed\n".encode("ascii"))
        if request.method == "HEAD":
            return Reject(status, headers, b"")
        return Reject(status, headers, f"{body}\n".encode("ascii"))
