"""Clear errors for optional heavy dependencies (installed through pip extras)."""

from __future__ import annotations

import importlib
from types import ModuleType

from semzip.errors import MissingDependencyError


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise a one-line error telling which pip extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"{module} is needed{what} but is not installed ({exc}); install it with "
            f"pip install 'semzip[{extra}]' (for torch on CPU: pip install torch==2.13.0)"
        ) from None
