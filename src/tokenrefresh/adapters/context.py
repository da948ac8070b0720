"""The factories: one place that turns Settings into an engine, a cipher, a client, a lock.

Commands ask for what they need, so `accounts list` never needs TikTok credentials and
`keys generate` needs nothing at all.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tokenrefresh.adapters.locks import AdvisoryLock, FileRunLock, RunLock
from tokenrefresh.base.apps import ENVIRONMENT
from tokenrefresh.base.closing import Closing
from tokenrefresh.base.settings import Settings
from tokenrefresh.errors import ConfigError
from tokenrefresh.storage.engine import (
    create_database_engine,
    describe_db_error,
    describe_url,
    is_postgresql,
    resolve_database_url,
    sqlite_path,
)
from tokenrefresh.storage.records import Shard
from tokenrefresh.storage.repository import Repository

if TYPE_CHECKING:  # imported where used: `status` needs neither cryptography nor requests
    from tokenrefresh.adapters.crypto import TokenCipher
    from tokenrefresh.adapters.oauth.client import ProviderClient
    from tokenrefresh.adapters.tiktok import TikTokClient
    from tokenrefresh.base.apps import App

__all__ = ["Context", "lock_name"]

log = logging.getLogger("tokenrefresh.context")  # the name logs have always shown


def lock_name(command: str, shard: Shard | None = None) -> str:
    """`tokenrefresh:refresh`, or `tokenrefresh:refresh:shard=1/4` for one shard."""
    return f"tokenrefresh:{command}" + (f":shard={shard}" if shard else "")


class Context(Closing):
    """What one command invocation builds from its Settings (each at most once).

    `pool_size`: the database connections it may hold at once (a refresh run: see
    `jobs.run_pool_size`; workers wait for a free one, held only for short transactions).
    """

    def __init__(self, settings: Settings, *, pool_size: int = 5) -> None:
        self.settings = settings
        self.pool_size = pool_size
        self._engine: Engine | None = None
        self._client: TikTokClient | None = None
        self._app_clients: dict[str, ProviderClient | TikTokClient] = {}

    @cached_property
    def database_url(self) -> URL:
        return resolve_database_url(self.settings)

    @property
    def holds_row_locks(self) -> bool:
        """PostgreSQL: claims lock their rows, so runs over the same accounts can overlap."""
        return is_postgresql(self.database_url)

    def engine(
        self, *, check_schema: bool = True, create: bool = False, allow_default: bool = True
    ) -> Engine:
        """The engine; unless told otherwise, checks the schema is current first.

        SQLite is migrated automatically; PostgreSQL is migrated only by `tokenrefresh db
        upgrade`, where the operator decides when. A SQLite file is only ever created for
        the embedded default (unless not `allow_default`) or when asked (`create`, for
        `db upgrade --create`): a mistyped path must not become a new empty database.
        """
        if self._engine is None:
            from tokenrefresh.storage import schema

            engine = create_database_engine(
                self.database_url,
                pool_size=self.pool_size,
                create=create or (allow_default and self.settings.database_url is None),
            )
            try:
                if check_schema:
                    schema.ensure_current(engine, auto_upgrade=not is_postgresql(self.database_url))
                else:
                    schema.current_revision(engine)  # connects: fail here, not halfway
            except DBAPIError as error:
                engine.dispose()
                raise ConfigError(
                    f"cannot use the database {describe_url(self.database_url)}: "
                    f"{describe_db_error(error)}"
                ) from None
            except Exception:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    def repository(self) -> Repository:
        return Repository(self.engine())

    def cipher(self, *, verify_with: Repository | None = None) -> TokenCipher:
        """The configured keys; with `verify_with`, proven able to read what it stores first
        (exit 3 before any change if they cannot)."""
        from tokenrefresh.adapters.crypto import TokenCipher

        cipher = TokenCipher(
            self.settings.require_encryption_keys(), source=self.settings.encryption_keys_source
        )
        if verify_with is not None:
            from tokenrefresh.adapters.keycheck import verify_keys

            verify_keys(verify_with, cipher)
        return cipher

    def client(self, *, read_timeout: float) -> TikTokClient:
        from tokenrefresh.adapters.tiktok import TikTokClient

        if self._client is None:
            self._client = TikTokClient(
                self.settings.require_client_credentials(),
                base_url=self.settings.api_base_url,
                timeout=read_timeout,  # the whole call's deadline (--http-timeout)
            )
        return self._client

    def client_for(
        self, app: App, *, read_timeout: float, consent: bool = False
    ) -> ProviderClient | TikTokClient:
        """The client of one configured app: the environment's TikTok app is `client`;
        every other app gets its profile's client, with its own credentials and base URL.
        `consent`: the client that exchanges codes, which for a provider that refreshes
        without credentials but exchanges a code with them (Instagram) has them."""
        if app.source == ENVIRONMENT:
            return self.client(read_timeout=read_timeout)
        key = app.name
        if consent and app.profile.exchange_auth != app.profile.client.auth:
            key = f"{app.name} (consent)"
        if key not in self._app_clients:
            self._app_clients[key] = _app_client(app, read_timeout, consent=key != app.name)
        return self._app_clients[key]

    def record_refusal(self, command: str, shard: Shard | None, error: ConfigError) -> None:
        """Record a run that a configuration error stopped (exit 3), so `status` shows it.

        Best effort: only where the database is reachable and its schema current.
        """
        import os
        import socket

        from tokenrefresh.errors import SchemaNotCurrent

        if isinstance(error, SchemaNotCurrent):
            return
        try:
            # Never creates a database (not even the default) just to say it was refused.
            repository = Repository(self.engine(create=False, allow_default=False))
            run_id = repository.start_run(
                command,
                host=socket.gethostname(),
                pid=os.getpid(),
                shard=str(shard) if shard else None,
            )
            repository.finish_run(
                run_id,
                outcome="config_error",
                exit_code=error.exit_code,
                counts={},
                message=error.message,
            )
        except Exception as failure:  # the database is part of what is wrong
            log.debug("could not record the refused run: %s", type(failure).__name__)

    def run_lock(self, command: str, shard: Shard | None = None) -> RunLock:
        """One run per name. SQLite has no row locks, so there every shard shares one lock."""
        if is_postgresql(self.database_url):
            return AdvisoryLock(self.engine(), lock_name(command, shard))
        path = sqlite_path(self.database_url)
        return FileRunLock(path.with_name(f"{path.name}.{command}.lock"), lock_name(command))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        for client in self._app_clients.values():
            client.close()
        if self._engine is not None:
            self._engine.dispose()


def _app_client(
    app: App, read_timeout: float, *, consent: bool = False
) -> ProviderClient | TikTokClient:
    """A file-configured app's client: TikTok's own (its code exchange and revoke answers)
    for the `tiktok` profile, else the profile's ProviderClient."""
    credentials = app.credentials(consent=consent)
    if app.profile.name == "tiktok" and credentials is not None:
        from tokenrefresh.adapters.tiktok import TikTokClient
        from tokenrefresh.base.settings import DEFAULT_API_BASE_URL

        return TikTokClient(
            credentials, base_url=app.base_url or DEFAULT_API_BASE_URL, timeout=read_timeout
        )
    from tokenrefresh.adapters.oauth.client import ProviderClient

    return ProviderClient(
        app.profile, credentials=credentials, base_url=app.base_url, timeout=read_timeout
    )
