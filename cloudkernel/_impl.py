"""Which implementation a module with a compiled and a pure-Python twin uses."""

from __future__ import annotations

import os

__all__ = ["pure_python_forced"]


def pure_python_forced() -> bool:
    """True when ``CLOUDKERNEL_PUREPYTHON`` is set to anything but empty or ``0``."""
    return os.environ.get("CLOUDKERNEL_PUREPYTHON", "") not in ("", "0")
