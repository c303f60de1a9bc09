"""The ready-made server behind ``wsskit serve``."""

from .config import ServeConfig
from .server import run

__all__ = ["ServeConfig", "run"]
