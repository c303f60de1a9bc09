"""Run the frame and masking tests through both twins: the C accelerator and pure Python.

``implementation`` patches the names the protocol modules call, so every test
that uses it (directly or through ``pytestmark``) runs once per twin. The C
twin is skipped when ``wsskit._speedups`` was not built, unless ``CI=true``,
where a missing accelerator is a failure (the CI machine has a compiler).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest

import wsskit.protocol.connection
import wsskit.protocol.frames
import wsskit.protocol.mask


def c_twin() -> ModuleType | None:
    """The built C accelerator, whether or not wsskit uses it (WSSKIT_NO_SPEEDUPS)."""
    try:
        from wsskit import _speedups
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        return None
    return _speedups


@pytest.fixture(scope="module", params=["c", "python"])
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Make the protocol modules use one twin ("c" or "python") for the tests of a module.

    Module-scoped, so that Hypothesis tests may use it too (they refuse
    function-scoped fixtures, which would not be reset between examples).
    """
    if request.param == "c":
        module = c_twin()
        if module is None:
            pytest.skip("wsskit._speedups is not built")
        apply_mask, parse_frames = module.apply_mask, module.parse_frames
    else:
        apply_mask = wsskit.protocol.mask.apply_mask_py
        parse_frames = wsskit.protocol.frames.parse_frames_py
    with pytest.MonkeyPatch.context() as patch:
        for target in (wsskit.protocol.mask, wsskit.protocol.frames, wsskit.protocol.connection):
            if hasattr(target, "apply_mask"):
                patch.setattr(target, "apply_mask", apply_mask)
            if hasattr(target, "parse_frames"):
                patch.setattr(target, "parse_frames", parse_frames)
        yield request.param
