"""The libpq options every PostgreSQL connection of tokenrefresh gets, unless the URL says
otherwise: read from what the driver would be called with (the `do_connect` event), so the
test opens no connection."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tokenrefresh.storage.engine import create_database_engine


class Captured(Exception):
    pass


def connect_parameters(url: str) -> dict[str, Any]:
    engine = create_database_engine(make_url(url))
    captured: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _args: Any, parameters: dict[str, Any]) -> None:
        captured.update(parameters)
        raise Captured

    with pytest.raises(Captured):
        engine.connect()
    engine.dispose()
    return captured


def test_gssapi_encryption_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGGSSENCMODE", raising=False)
    parameters = connect_parameters("postgresql://app@db.invalid/tokens")
    assert parameters["gssencmode"] == "disable"
    assert parameters["application_name"] == "tokenrefresh"
    assert parameters["keepalives_idle"] == 30


def test_the_url_or_pggssencmode_turns_gssapi_encryption_back_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGGSSENCMODE", raising=False)
    asked = connect_parameters("postgresql://app@db.invalid/tokens?gssencmode=require")
    assert asked["gssencmode"] == "require"
    monkeypatch.setenv("PGGSSENCMODE", "prefer")
    assert "gssencmode" not in connect_parameters("postgresql://app@db.invalid/tokens")
