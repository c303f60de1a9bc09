"""Fixtures for the browser-style WebSocket: the same throwaway CA as tests/sync."""

from __future__ import annotations

from tests.sync.conftest import certificates, client_ssl, server_ssl

__all__ = ["certificates", "client_ssl", "server_ssl"]
