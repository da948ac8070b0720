"""Notifier: one human digest per call, through Apprise (e-mail, Slack, Telegram, ...).

Apprise is optional (`pip install 'tokenrefresh[notify]'`) and imported only when a
Notifier is made. Its URLs carry credentials: they are never shown. The digest is built
from the events' payloads, which hold labels and reasons that came from outside: every
text is scrubbed, escaped and bounded, and a payload that cannot be read is counted,
not quoted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tokenrefresh.base.events.checks import notify_url_list, notify_urls_problem
from tokenrefresh.base.events.records import EventType, PendingEvent
from tokenrefresh.base.scrub import safe_text, scrub
from tokenrefresh.errors import ConfigError

__all__ = ["INSTALL_HINT", "MAX_LISTED", "Notifier", "digest"]

INSTALL_HINT = "pip install 'tokenrefresh[notify]'"
MAX_LISTED = 20  # accounts named per kind of event; then "and N more"
_TEXT_LIMIT = 80  # characters of a label, open_id or reason
_MESSAGE_LIMIT = 300  # characters of a failed run's message

# (event type, singular, plural): in the digest's order, most urgent first.
_KINDS: tuple[tuple[str, str, str], ...] = (
    (
        EventType.ACCOUNT_EXPIRED,
        "account needs its user to reconnect",
        "accounts need their users to reconnect",
    ),
    (
        EventType.REFRESH_TOKEN_EXPIRING,
        "refresh token expires soon",
        "refresh tokens expire soon",
    ),
    (EventType.ACCOUNT_FAILING, "account keeps failing", "accounts keep failing"),
    (EventType.ACCOUNT_RECOVERED, "account recovered", "accounts recovered"),
)


class Notifier:
    """Sends digests to every Apprise URL given (commas or white space between them)."""

    def __init__(self, urls: str) -> None:
        problem = notify_urls_problem(urls)
        if problem:
            raise ConfigError(f"the notification URLs: {problem}")
        try:
            import apprise
        except ImportError:
            raise ConfigError(
                f"notifications need Apprise, which is not installed: {INSTALL_HINT}"
            ) from None
        self._secrets = tuple(notify_url_list(urls))
        self._apprise = apprise.Apprise()
        for position, url in enumerate(self._secrets, start=1):
            if not self._apprise.add(url):
                raise ConfigError(
                    f"notification URL #{position} is not one Apprise understands "
                    "(see https://github.com/caronc/apprise/wiki)"
                )

    def notify(self, events: Sequence[PendingEvent]) -> bool:
        """One message for all `events`; True if every service took it."""
        if not events:
            return True
        title, body = digest(events, self._secrets)
        return bool(self._apprise.notify(body=body, title=title, body_format="text"))


def digest(events: Sequence[PendingEvent], secrets: Sequence[str] = ()) -> tuple[str, str]:
    """The title and body summarising `events`."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    runs: list[dict[str, Any]] = []
    unreadable = 0
    for event in events:
        data = _data(event.payload)
        if data is None:
            unreadable += 1
        elif event.type == EventType.RUN_FAILED:
            runs.append(data)
        else:
            grouped.setdefault(event.type, []).append(data)
    lines: list[str] = []
    headline = ""
    for kind, singular, plural in _KINDS:
        accounts = grouped.pop(kind, [])
        if accounts:
            summary = f"{len(accounts)} {singular if len(accounts) == 1 else plural}"
            headline = headline or summary
            lines.append(f"{summary}: {_listed([_account(data) for data in accounts])}")
    for kind, others in sorted(grouped.items()):  # a type this version does not know
        summary = f"{len(others)} event(s) of type {safe_text(kind, _TEXT_LIMIT)}"
        headline = headline or summary
        lines.append(f"{summary}: {_listed([_account(data) for data in others])}")
    for run in runs[:MAX_LISTED]:
        headline = headline or "a run failed"
        lines.append(f"run failed: {_run(run)}")
    if len(runs) > MAX_LISTED:
        lines.append(f"and {len(runs) - MAX_LISTED} more failed runs")
    if unreadable:
        lines.append(f"{unreadable} event(s) whose payload could not be read")
        headline = headline or f"{unreadable} event(s)"
    title = f"tokenrefresh: {headline}"
    body = "\n".join(lines)
    return _clean(title, secrets, 200), _clean(body, secrets, None)


def _data(payload: str) -> dict[str, Any] | None:
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else None


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return f"{shown}, and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else shown


def _account(data: dict[str, Any]) -> str:
    account_id = _text(data.get("account_id")) or "?"
    details = [_text(data.get("open_id")), _text(data.get("label"))]
    text = f"{account_id} ({', '.join(part for part in details if part)})"
    text = text.replace(" ()", "")
    when = _text(data.get("refresh_expires_at"))
    if when:
        text += f" on {when}"
    reason = _text(data.get("reason"))
    return f"{text}: {reason}" if reason else text


def _run(data: dict[str, Any]) -> str:
    command = _text(data.get("command")) or "a command"
    exit_code = _text(data.get("exit_code"))
    message = _text(data.get("message"), _MESSAGE_LIMIT)
    text = f"{command} (exit {exit_code})" if exit_code else command
    return f"{text}: {message}" if message else text


def _text(value: object, limit: int = _TEXT_LIMIT) -> str:
    """A payload value as one short line of plain text ('' for none or a nested value)."""
    if value is None or isinstance(value, dict | list):
        return ""
    return safe_text(" ".join(str(value).split()), limit)


def _clean(text: str, secrets: Sequence[str], limit: int | None) -> str:
    return safe_text(scrub(text, *secrets), limit, keep_newlines=True)
