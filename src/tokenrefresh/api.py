"""The library face: `TokenStore`, for apps that need their accounts' tokens in Python.

    from datetime import timedelta
    from tokenrefresh import TokenStore, ReconnectNeeded

    with TokenStore.from_env() as store:
        token = store.access_token(open_id="abc123", min_valid=timedelta(minutes=10))

The same code as the CLI, without Typer or rich: one store per process is enough (it is
thread-safe and shares a small connection pool); see the README, "Using tokens from your
app".
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from tokenrefresh.adapters.context import Context
from tokenrefresh.base import defaults
from tokenrefresh.base.apps import App, Configuration, environment_configuration, load_configuration
from tokenrefresh.base.closing import Closing
from tokenrefresh.base.settings import (
    API_BASE_URL,
    CLIENT_KEY,
    CLIENT_SECRET,
    DATABASE_URL,
    ENCRYPTION_KEYS,
    Settings,
)
from tokenrefresh.errors import AccountNotFound, ConfigurationError, InvalidArgument
from tokenrefresh.services.refresh.apps import app_endpoints, key_app
from tokenrefresh.services.refresh.on_demand import DEFAULT_WAIT, AccessToken, OnDemand
from tokenrefresh.storage.engine import default_database_path, describe_url
from tokenrefresh.storage.records import AccountView
from tokenrefresh.storage.repository import Repository

if TYPE_CHECKING:
    from tokenrefresh.adapters.oauth.client import ProviderClient
    from tokenrefresh.adapters.tiktok import TikTokClient
    from tokenrefresh.services.connections import Connected, Connections, Revoked

__all__ = ["DEFAULT_MIN_VALID", "AccessToken", "TokenStore"]

DEFAULT_MIN_VALID = defaults.MIN_VALID
DEFAULT_HTTP_TIMEOUT = 30.0  # seconds: a whole call to TikTok, connect to last byte
DEFAULT_POOL_SIZE = 4


class TokenStore(Closing):
    """Fresh access tokens, connect and revoke, for one database of accounts.

    Configuration is explicit (keyword arguments) or `TokenStore.from_env()` (the CLI's
    environment variables and their `_FILE` variants). A store never creates a database:
    without a configured one it opens the CLI's embedded default if there is one, and
    raises ConfigurationError naming where it looked if not. Opening checks the database
    schema (SQLite is migrated, as by the CLI) and that the keys read what is stored;
    TikTok is only contacted when a token must be refreshed.
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        encryption_keys: str | Sequence[str] | None = None,
        client_key: str | None = None,
        client_secret: str | None = None,
        api_base_url: str | None = None,
        http_timeout: float = DEFAULT_HTTP_TIMEOUT,
        wait: timedelta = DEFAULT_WAIT,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        keys = (
            encryption_keys
            if encryption_keys is None or isinstance(encryption_keys, str)
            else ",".join(encryption_keys)
        )
        given = {
            DATABASE_URL: database_url,
            ENCRYPTION_KEYS: keys,
            CLIENT_KEY: client_key,
            CLIENT_SECRET: client_secret,
            API_BASE_URL: api_base_url,
        }
        environ = {name: value for name, value in given.items() if value is not None}
        # Explicit arguments configure one TikTok app, as the environment does without a
        # file; `from_env` reads TOKENREFRESH_CONFIG (or the default file) as the CLI does.
        configuration = environment_configuration(environ)
        self._open(Settings.from_env(environ), configuration, http_timeout, wait, pool_size)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        http_timeout: float = DEFAULT_HTTP_TIMEOUT,
        wait: timedelta = DEFAULT_WAIT,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> TokenStore:
        """A store configured as the CLI is, from `environ` (default: os.environ)."""
        store = cls.__new__(cls)
        configuration = load_configuration(environ)
        store._open(Settings.from_env(environ), configuration, http_timeout, wait, pool_size)
        return store

    def _open(
        self,
        settings: Settings,
        configuration: Configuration,
        http_timeout: float,
        wait: timedelta,
        pool_size: int,
    ) -> None:
        if not 0 < http_timeout <= defaults.MAX_HTTP_TIMEOUT:
            raise InvalidArgument(
                f"http_timeout must be more than 0 and at most {defaults.MAX_HTTP_TIMEOUT:.0f}s"
            )
        self._settings = settings
        self._configuration = configuration
        self._http_timeout = http_timeout
        self._lock = threading.Lock()
        self._context = Context(settings, pool_size=pool_size)
        try:
            # A store is for an existing database, never a new empty one (whose accounts
            # would all be AccountNotFound): not even the CLI's embedded default.
            _check_default_database(settings)
            self._repository = Repository(self._context.engine(allow_default=False))
            cipher = self._context.cipher(verify_with=self._repository)
        except BaseException:
            self._context.close()
            raise
        self._cipher = cipher
        endpoints = app_endpoints(configuration, self._client_for)
        self._tokens = OnDemand(self._repository, cipher, endpoints, wait=wait)
        self._connections: Connections | None = None
        self._closed = False

    def access_token(
        self,
        *,
        account_id: int | None = None,
        open_id: str | None = None,
        min_valid: timedelta = DEFAULT_MIN_VALID,
        scopes: Iterable[str] = (),
        app: str | None = None,
        user_id: str | None = None,
    ) -> AccessToken:
        """The account's access token, valid for at least `min_valid` from now: the stored
        one, or the account refreshed now. Exactly one of `account_id`, `user_id` (the
        user's id at the provider, within `app`) and `open_id` (TikTok's name for it).
        Without `app`, a user id is of the only configured app, else of `tiktok`.

        `scopes` (e.g. {"video.publish"}): the scopes the caller needs. If the account's
        consent lacks one, ReconnectNeeded (`reason` "missing_scope", `missing_scopes`)
        before any refresh: its user must connect it again, granting them.

        Raises AccountNotFound, ReconnectNeeded, MinValidUnreachable, RefreshesSuspended,
        TemporarilyUnavailable, ConfigurationError or InvalidArgument (all under
        TokenRefreshError).
        """
        if open_id is not None and user_id is not None:
            raise TypeError("give user_id or open_id (the same thing for TikTok), not both")
        user = user_id if user_id is not None else open_id
        if app is not None and account_id is not None:
            raise TypeError("app names where a user id belongs: give it with user_id")
        return self._tokens.access_token(
            account_id=account_id,
            open_id=user,
            min_valid=min_valid,
            scopes=scopes,
            app=key_app(self._configuration, app),
        )

    def account(self, *, account_id: int | None = None, open_id: str | None = None) -> AccountView:
        """The account's record (status, expiries, last error; never a token)."""
        if (account_id is None) == (open_id is None):
            raise TypeError("give exactly one of account_id and open_id")
        found = (
            self._repository.get_account(account_id)
            if account_id is not None
            else self._repository.find_account(str(open_id), key_app(self._configuration, None))
        )
        if found is None:
            raise AccountNotFound.by_key(account_id, open_id)
        return found

    def connect(
        self,
        code: str,
        *,
        redirect_uri: str,
        code_verifier: str | None = None,
        label: str | None = None,
        app: str | None = None,
        user_id: str | None = None,
    ) -> Connected:
        """Exchange an authorization code from TikTok's consent page and store the account
        (an upsert by open_id). Returns its id and open_id, never a token.

        With `app`, the code from that app's provider's consent page, exchanged there and
        stored in the app; `user_id` where the provider's answer names no user (X, Google).
        """
        if app is None:
            if user_id is not None:
                raise InvalidArgument("user_id goes with app (TikTok's answer names the user)")
            return self._consent().connect(
                code, redirect_uri=redirect_uri, code_verifier=code_verifier, label=label
            )
        from tokenrefresh.services.connections import Connections, checked_user, connectable

        chosen = self._configuration.app(app)
        target = connectable(chosen)  # InvalidArgument before the code is spent
        user = checked_user(chosen, user_id)
        client = self._client_for(chosen, consent=True)
        return Connections(self._repository, self._cipher, client, self._tokens).connect(
            code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
            label=label,
            target=target,
            user_id=user,
        )

    def revoke(self, *, account_id: int | None = None, open_id: str | None = None) -> Revoked:
        """Revoke the account's access at its app's provider (TikTok for the app `tiktok`)
        and erase its tokens (status `revoked`)."""
        from tokenrefresh.services.connections import Connections, revoke_endpoints

        account = self.account(account_id=account_id, open_id=open_id)
        revokers = revoke_endpoints(self._configuration, self._client_for)
        revoking = Connections(
            self._repository, self._cipher, None, self._tokens, revokers=revokers
        )
        return revoking.revoke(account)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._context.close()

    def __repr__(self) -> str:
        return f"TokenStore({describe_url(self._context.database_url)})"

    def _client_for(self, app: App, *, consent: bool = False) -> ProviderClient | TikTokClient:
        with self._lock:
            return self._context.client_for(app, read_timeout=self._http_timeout, consent=consent)

    def _consent(self) -> Connections:
        from tokenrefresh.services.connections import Connections

        with self._lock:
            if self._connections is None:
                client = self._context.client(read_timeout=self._http_timeout)
                self._connections = Connections(
                    self._repository, self._cipher, client, self._tokens
                )
            return self._connections


def _check_default_database(settings: Settings) -> None:
    """ConfigurationError if no database is configured and the CLI's embedded one is not
    there: the CLI creates it on first use, a library never does."""
    if settings.database_url is not None:
        return
    path = default_database_path()
    if not path.is_file():
        raise ConfigurationError(
            f"no database: {DATABASE_URL} (or {DATABASE_URL}_FILE) is not set, and there is "
            f"no embedded database at {path} (the default, which only the command line "
            f"creates). Set {DATABASE_URL} to the database your tokenrefresh installation "
            "uses, or run `tokenrefresh db upgrade` to create the embedded one",
        )
