"""`events list | deliver | secret`: the outbox of what changed, its delivery on demand,
and a new webhook signing secret."""

from __future__ import annotations

from typing import Annotated

import typer

from tokenrefresh.base import defaults
from tokenrefresh.base.durations import Seconds
from tokenrefresh.base.events.records import EventType
from tokenrefresh.base.settings import Settings
from tokenrefresh.cli.options import AsJson, EventRetention, Quiet, seconds_option
from tokenrefresh.cli.root import events_app, handles_errors, setup

__all__ = ["events_deliver", "events_list", "events_secret"]

_BUDGET = Seconds(60.0)  # seconds that `events deliver` spends delivering, at most


@events_app.command("list")
@handles_errors
def events_list(
    pending: Annotated[bool, typer.Option("--pending", help="Only events not delivered yet.")] = (
        False
    ),
    event_type: Annotated[
        EventType | None,
        typer.Option(
            "--type", metavar="TYPE", help="Only events of this type (e.g. account.expired)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, metavar="N", help="At most this many, newest first.")
    ] = 50,
    as_json: AsJson = False,
) -> None:
    """Show recorded events, newest first, with their delivery state."""
    setup()
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.base.clock import utcnow
    from tokenrefresh.render import renderer

    with Context(Settings.from_env()) as context:
        events = context.repository().list_events(
            pending_only=pending,
            event_type=event_type.value if event_type else None,
            limit=limit,
        )
    renderer(as_json=as_json).events(events, utcnow())


@events_app.command("deliver")
@handles_errors
def events_deliver(
    event_retention: EventRetention = defaults.EVENT_RETENTION,
    budget: Annotated[
        float,
        seconds_option(
            "How long to spend delivering, at most: 10s, 2m, or seconds (10, 0.5).",
            minimum=0.1,
        ),
    ] = _BUDGET,
    now: Annotated[
        bool,
        typer.Option("--now", help="Retry every pending event at once, whatever its back-off."),
    ] = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Deliver pending events that are due (refresh and cleanup runs do so at their end).

    From cron: `-q` prints nothing unless a delivery failed or events were dropped.
    """
    setup(quiet=quiet)
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.base.clock import utcnow
    from tokenrefresh.render import renderer
    from tokenrefresh.services.events.announce import deliver_pending, delivery_configured

    settings = Settings.from_env()
    with Context(settings) as context:
        repository = context.repository()
        if now and delivery_configured(settings):
            repository.make_pending_due(utcnow())
        report = deliver_pending(
            settings,
            repository,
            retention=event_retention,
            budget=budget,
            max_events=1000,
        )
        outbox = repository.outbox_stats()
    something_wrong = report is not None and bool(report.failed or report.dropped)
    if as_json or not quiet or something_wrong:
        renderer(as_json=as_json).delivered(report, outbox, utcnow())


@events_app.command("secret")
@handles_errors
def events_secret() -> None:
    """Print a new webhook signing secret (whsec_..., for TOKENREFRESH_WEBHOOK_SECRET)."""
    from tokenrefresh.base.events.checks import new_webhook_secret

    typer.echo(new_webhook_secret())
