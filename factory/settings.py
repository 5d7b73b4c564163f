"""Where the factory keeps its working state on this host."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """Work folders, locks and phase logs. FACTORY_STATE_DIR overrides."""
    if os.environ.get("FACTORY_STATE_DIR"):
        return Path(os.environ["FACTORY_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/factory")
    return Path.home() / ".cache" / "factory"
