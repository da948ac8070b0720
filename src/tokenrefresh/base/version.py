"""The version, written once: `tokenrefresh.__version__`, `--version` and the User-Agent."""

from __future__ import annotations

__version__ = "0.2.0"
