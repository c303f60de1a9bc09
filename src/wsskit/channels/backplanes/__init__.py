"""Backplanes: what carries publications between nodes and keeps their history.

:mod:`.base` defines the interface every backplane implements; ``memory://``
(:mod:`.memory`) serves one process. Redis and NATS follow the same interface.
"""
