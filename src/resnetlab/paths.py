"""Where resnetlab keeps caches: $XDG_CACHE_HOME/resnetlab or ~/.cache/resnetlab."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "resnetlab"
