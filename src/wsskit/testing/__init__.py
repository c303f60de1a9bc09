"""Test helpers shipped with wsskit: the backplane conformance suite and a manual clock.

:mod:`wsskit.testing.backplane` holds :class:`BackplaneConformance`, the tests
every channels backplane must pass; a project subclasses it under pytest with a
``harness`` fixture for its backplane.
"""

from __future__ import annotations

from .backplane import BackplaneConformance, BackplaneHarness, ManualClock, memory_harness

__all__ = ["BackplaneConformance", "BackplaneHarness", "ManualClock", "memory_harness"]
