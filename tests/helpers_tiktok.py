"""Helpers the TikTokClient tests share: a client on the loopback stand-in, and finding a
fragment of a secret in what an error shows, however it was encoded."""

from __future__ import annotations

from urllib.parse import unquote

from standin import FORM_CONTENT_TYPE, Received, TikTokStandIn
from tokenrefresh.adapters.tiktok import TikTokClient
from tokenrefresh.base.outcomes import TikTokError
from tokenrefresh.base.scrub import FRAGMENT
from tokenrefresh.base.settings import ClientCredentials, Secret

TIMEOUT = 0.3  # the call's deadline (connect and whole answer), in seconds
WRONG_SECRET = "not-the-app-secret-9f8e7d"


def make_client(
    standin: TikTokStandIn, client_secret: str, timeout: float = TIMEOUT
) -> TikTokClient:
    """A client of the stand-in's app with this secret; the caller closes it."""
    return TikTokClient(
        ClientCredentials(standin.client_key, Secret(client_secret)),
        base_url=standin.base_url,
        connect_timeout=timeout,
        timeout=timeout,
    )


def the_one_form_sent(standin: TikTokStandIn, path: str, **fields: str) -> Received:
    """The one request the stand-in received: a form POST to the path, of the app's
    credentials and exactly these fields."""
    [received] = standin.received
    assert received.method == "POST"
    assert received.path == path
    assert received.content_type.split(";")[0] == FORM_CONTENT_TYPE
    assert received.form == {
        "client_key": standin.client_key,
        "client_secret": standin.client_secret,
        **fields,
    }
    return received


def shown(error: TikTokError) -> str:
    """Everything an error shows: str, repr, reason and args."""
    return " ".join([str(error), repr(error), error.reason, *map(str, error.args)])


def leaked_fragments(text: str, *secrets: str) -> list[str]:
    """FRAGMENT-long pieces of the secrets in the text, in any case, percent-decoded or not."""
    forms = {text.lower(), unquote(text).lower(), unquote(unquote(text)).lower()}
    return [
        secret[start : start + FRAGMENT]
        for secret in secrets
        for start in range(len(secret) - FRAGMENT + 1)
        if any(secret[start : start + FRAGMENT].lower() in form for form in forms)
    ]


def assert_hides(error: TikTokError, *secrets: str) -> None:
    """The error shows no fragment of the secrets, nor the exception it was raised from."""
    assert leaked_fragments(shown(error), *secrets) == []
    assert error.__suppress_context__ or error.__context__ is None


def percent_encoded(text: str) -> str:
    """Every byte of the text as %XX."""
    return "".join(f"%{byte:02X}" for byte in text.encode())
