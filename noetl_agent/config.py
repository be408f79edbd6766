"""Configuration from the environment: where local state lives."""

from __future__ import annotations

import os
from pathlib import Path


def noetl_home() -> Path:
    """``$NOETL_HOME``, default ``~/.noetl-agent``."""
    return Path(os.environ.get("NOETL_HOME") or Path.home() / ".noetl-agent").expanduser()
