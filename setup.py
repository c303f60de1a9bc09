"""Build the optional C accelerator, wsskit._speedups; everything else is in pyproject.toml.

The extension is optional: when it cannot be built (no compiler, no Python
headers, a compiler error), the build warns and goes on, and wsskit runs on
its pure-Python twins. ``WSSKIT_NO_SPEEDUPS_BUILD=1`` skips it on purpose.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_SKIP = os.environ.get("WSSKIT_NO_SPEEDUPS_BUILD", "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """A ``build_ext`` that turns any failure to build into a warning."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all fails here, before any extension
            self._skip("the C compiler could not be set up", exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skip(f"{ext.name} failed to build", exc)

    @staticmethod
    def _skip(what: str, exc: BaseException) -> None:
        sys.stderr.write(
            f"WARNING: wsskit: {what} ({type(exc).__name__}: {exc}); "
            "installing without the C accelerator: wsskit works the same, only slower.\n"
        )


def _extensions() -> list[Extension]:
    if _SKIP:
        return []
    return [Extension("wsskit._speedups", ["src/wsskit/_speedups.c"])]


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
