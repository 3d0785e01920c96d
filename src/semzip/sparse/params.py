"""scikit-learn's estimator parameter API, read from ``__init__``'s signature (``get_params``, ``set_params``, a
repr that shows the changed parameters), so that ``sklearn.base.clone`` and grid searches work unchanged."""

from __future__ import annotations

import inspect
from typing import Any

from semzip.errors import InvalidInputError

__all__ = ["ParamsMixin"]


class ParamsMixin:
    """Hyperparameters are ``__init__``'s keyword arguments, stored as attributes of the same names."""

    @classmethod
    def _get_param_names(cls) -> list[str]:  # the name scikit-learn's BaseEstimator uses
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as a dict (scikit-learn API)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> Any:
        """Set hyperparameters (scikit-learn API)."""
        valid = set(self._get_param_names())
        for key, value in params.items():
            if key not in valid:
                raise InvalidInputError(
                    f"unknown parameter {key!r} for {type(self).__name__}; valid: {sorted(valid)}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k) != v]
        return f"{type(self).__name__}({', '.join(changed)})"
