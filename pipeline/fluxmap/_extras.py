"""Optional dependencies: imported on use, and when missing, an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """``import module``, or a ModuleNotFoundError saying ``pip install 'fluxmap[extra]'``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"{module} is not installed; it comes with the {extra!r} extra: pip install 'fluxmap[{extra}]'"
        ) from e
