"""The backplane conformance suite, for memory:// (two nodes sharing one in-process store)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wsskit.testing.backplane import BackplaneConformance, BackplaneHarness, memory_harness


class TestMemoryBackplane(BackplaneConformance):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[BackplaneHarness]:
        harness = memory_harness()
        harness.skip = pytest.skip
        yield harness
        await harness.aclose()
