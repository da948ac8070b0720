"""Showing results: stable JSON (`json.py`) or human text (`text.py`), chosen once.

Nothing here decides anything: services return plain data and a renderer shows it. No
renderer is ever given a token. Both write through `Terminal`, which makes whatever text
came from outside safe to show.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TextIO

from tokenrefresh.render.json import JsonRenderer
from tokenrefresh.render.text import TextRenderer

if TYPE_CHECKING:
    from tokenrefresh.base.events.records import DeliveryReport
    from tokenrefresh.services.accounts import AccountDetails, ImportReport
    from tokenrefresh.services.cleanup import CleanupReport
    from tokenrefresh.services.keys import KeyCheckReport, RotateReport
    from tokenrefresh.services.refresh.report import RunReport
    from tokenrefresh.services.status import HealthCheck, StatusReport
    from tokenrefresh.storage.outbox import EventView, OutboxStats
    from tokenrefresh.storage.records import AccountView

__all__ = ["Renderer", "renderer"]


class Renderer(Protocol):
    """One method per command's result."""

    def refresh(self, report: RunReport, *, quiet: bool) -> None: ...

    def health(self, check: HealthCheck) -> None: ...

    def accounts(self, accounts: list[AccountView], now: datetime) -> None: ...

    def account_details(self, details: AccountDetails, now: datetime) -> None: ...

    def imported(self, report: ImportReport) -> None: ...

    def status(self, report: StatusReport) -> None: ...

    def cleanup(self, report: CleanupReport, *, quiet: bool) -> None: ...

    def key_check(self, report: KeyCheckReport) -> None: ...

    def rotated(self, report: RotateReport) -> None: ...

    def events(self, events: list[EventView], now: datetime) -> None: ...

    def delivered(
        self, report: DeliveryReport | None, outbox: OutboxStats, now: datetime
    ) -> None: ...

    def line(self, text: str = "") -> None: ...


def renderer(*, as_json: bool, stream: TextIO | None = None) -> Renderer:
    """JSON or human text, on stdout unless told otherwise."""
    return JsonRenderer(stream) if as_json else TextRenderer(stream)
