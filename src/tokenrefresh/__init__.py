"""tokenrefresh: keeps TikTok OAuth tokens fresh, encrypted at rest, from cron or an app.

The library face (`TokenStore` and its errors) is imported lazily, so `import tokenrefresh`
stays cheap and never pulls in Typer or rich (those are the CLI's alone).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tokenrefresh.base.version import __version__

__all__ = [
    "AccessToken",
    "AccountNotFound",
    "ConfigurationError",
    "InvalidArgument",
    "MinValidUnreachable",
    "ReconnectNeeded",
    "RefreshesSuspended",
    "TemporarilyUnavailable",
    "TokenRefreshError",
    "TokenStore",
    "__version__",
]

if TYPE_CHECKING:
    from tokenrefresh.api import AccessToken, TokenStore
    from tokenrefresh.errors import (
        AccountNotFound,
        ConfigurationError,
        InvalidArgument,
        MinValidUnreachable,
        ReconnectNeeded,
        RefreshesSuspended,
        TemporarilyUnavailable,
        TokenRefreshError,
    )

# A library logs to "tokenrefresh" and leaves the handlers to the app: without this, its
# warnings would reach an app that configured no logging through Python's last resort.
logging.getLogger("tokenrefresh").addHandler(logging.NullHandler())

_WHERE = {
    "AccessToken": "tokenrefresh.api",
    "TokenStore": "tokenrefresh.api",
    "AccountNotFound": "tokenrefresh.errors",
    "ConfigurationError": "tokenrefresh.errors",
    "InvalidArgument": "tokenrefresh.errors",
    "MinValidUnreachable": "tokenrefresh.errors",
    "RefreshesSuspended": "tokenrefresh.errors",
    "ReconnectNeeded": "tokenrefresh.errors",
    "TemporarilyUnavailable": "tokenrefresh.errors",
    "TokenRefreshError": "tokenrefresh.errors",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'tokenrefresh' has no attribute {name!r}")
