"""Fixtures for the browser-style WebSocket: the shared throwaway CA (tests/conftest.py)."""
