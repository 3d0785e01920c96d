"""semzip: semantic image compression toolkit.

The core (this package, the container format and the entropy layer) needs only numpy and constriction;
torch, diffusers, open_clip and friends are imported lazily by the backends that need them.
"""

from __future__ import annotations

from semzip._version import __version__
from semzip.errors import SemzipError

__all__ = ["SemzipError", "__version__"]
