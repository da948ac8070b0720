"""Who watches a run: a progress bar on a terminal, the health-check start ping.

They sit beside the run, not in rendering: the run calls them as it goes. The progress
bar imports rich only when it is used, so the library face never pulls it in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from tokenrefresh.services.refresh.report import AccountResult

__all__ = ["NoObserver", "ProgressBar", "RunObserver", "StartHook"]


class RunObserver(Protocol):
    """Hooks for progress bars and health-check pings.

    run_started: the lock is held and the run recorded; account_done: from worker threads;
    run_finished: always, last.
    """

    def run_started(self, total: int | None) -> None: ...

    def account_done(self, result: AccountResult) -> None: ...

    def run_finished(self) -> None: ...


class NoObserver:
    """A RunObserver that does nothing; the others override what they need."""

    def run_started(self, total: int | None) -> None:
        pass

    def account_done(self, result: AccountResult) -> None:
        pass

    def run_finished(self) -> None:
        pass


class StartHook(NoObserver):
    """Calls `on_started` once the run holds its lock (the health-check start ping)."""

    def __init__(self, on_started: Callable[[], None]) -> None:
        self._on_started = on_started

    def run_started(self, total: int | None) -> None:
        self._on_started()


class ProgressBar(NoObserver):
    """A refresh run's progress on an interactive terminal (stderr), with rich."""

    def __init__(self, on_started: Callable[[], None] | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._on_started = on_started
        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: Any = None

    def run_started(self, total: int | None) -> None:
        if self._on_started is not None:
            self._on_started()
        self._task = self._progress.add_task("refreshing", total=total)
        self._progress.start()

    def account_done(self, result: AccountResult) -> None:
        if self._task is not None:
            self._progress.advance(self._task)

    def run_finished(self) -> None:
        self._progress.stop()
