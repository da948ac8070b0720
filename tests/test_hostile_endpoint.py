"""TikTokClient against an endpoint that misbehaves on purpose, over real loopback HTTP.

One test per class of hostility: odd lifetimes, absurd nesting, endless and trickled answers,
Retry-After nonsense, compression bombs, secrets echoed back, identifiers that are not.
Whatever arrives, the client returns a TokenGrant or raises one of the three outcome
exceptions, within its deadline and its memory bound, and shows no fragment of a secret.
Timings are asserted as generous bounds only: "well before the trickle would end".
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import select
import socket
import socketserver
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine

from conftest import Cli
from helpers import AddAccounts, account, stored_tokens, table
from helpers_tiktok import leaked_fragments, percent_encoded
from standin import Reply, TikTokStandIn
from tokenrefresh.adapters.tiktok import TikTokClient
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TikTokError,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.base.settings import ClientCredentials, Secret

CLIENT_SECRET = "test-client-secret"  # the stand-in's default
PRESENTED = "rft.PresentedToken-Abc123_xyz-7890qrsTUV"  # scripted replies accept any token
TRICKLE = 0.2  # seconds between bytes
NO_TRICKLE_ENDS_BEFORE = 10.0  # seconds: every trickled answer below would take far longer
DAY = timedelta(days=1)

MakeClient = Callable[..., TikTokClient]


@pytest.fixture
def make_client(standin: TikTokStandIn) -> Iterator[MakeClient]:
    """Clients for this stand-in (closed after the test), with any constructor options."""
    clients: list[TikTokClient] = []

    def make(base_url: str | None = None, **options: Any) -> TikTokClient:
        client = TikTokClient(
            ClientCredentials(standin.client_key, Secret(standin.client_secret)),
            base_url=base_url or standin.base_url,
            **options,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def grant_body(**fields: Any) -> dict[str, Any]:
    """A normal answer's fields, with some replaced (None: left out)."""
    body: dict[str, Any] = {
        "access_token": "act.NewAccess-0001",
        "expires_in": 7200,
        "open_id": "alice",
        "refresh_expires_in": 86400,
        "refresh_token": "rft.NewRefresh-0001",
        "scope": "user.info.basic",
        "token_type": "Bearer",
    }
    body.update(fields)
    return {key: value for key, value in body.items() if value is not None}


def grant_with_raw(
    standin: TikTokStandIn, client: TikTokClient, field: str, raw: str | None
) -> TokenGrant:
    """The grant of a normal answer whose field is the JSON text raw, sent as is (None: the
    field left out)."""
    text = json.dumps(grant_body(**{field: None}))
    if raw is not None:
        text = text[:-1] + f', "{field}": {raw}}}'
    standin.script(Reply(200, text.encode()))
    return client.refresh(PRESENTED)


def failure(client: TikTokClient, token: str = PRESENTED) -> TikTokError:
    with pytest.raises(TikTokError) as caught:
        client.refresh(token)
    return caught.value


def timed_failure(client: TikTokClient) -> tuple[TikTokError, float]:
    started = time.monotonic()
    error = failure(client)
    return error, time.monotonic() - started


def deadline_threads() -> int:
    return sum(thread.name == "tokenrefresh-deadlines" for thread in threading.enumerate())


# ----------------------------------------------------------------------------- lifetimes


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        pytest.param("7200.0", timedelta(seconds=7200), id="json-float"),
        pytest.param('" 7200 "', timedelta(seconds=7200), id="padded-string"),
        pytest.param('"7.2e3"', timedelta(seconds=7200), id="exponent-string"),
        pytest.param("3600.5", timedelta(seconds=3600.5), id="fraction"),
        pytest.param(str(10**20), DAY, id="1e20-clamped"),
        pytest.param(str(10**400), DAY, id="10**400-clamped"),
        pytest.param("1e999", DAY, id="1e999-clamped"),
        pytest.param("1" + "0" * 5000, DAY, id="5001-digits-clamped"),
        pytest.param(None, None, id="missing"),
        pytest.param("null", None, id="null"),
        pytest.param("true", None, id="bool"),
        pytest.param("NaN", None, id="nan"),
        pytest.param("-Infinity", None, id="minus-infinity"),
        pytest.param("0", None, id="zero"),
        pytest.param("-7200", None, id="negative"),
        pytest.param('"two hours"', None, id="words"),
        pytest.param('"0x1C20"', None, id="hex-string"),
        pytest.param('"\\u0667\\u0662"', None, id="arabic-digits"),
        pytest.param("[7200]", None, id="array"),
    ],
)
def test_any_access_lifetime_keeps_the_grant(
    standin: TikTokStandIn,
    make_client: MakeClient,
    expires_in: str | None,
    lifetime: timedelta | None,
) -> None:
    """The JSON text is sent as is (10**400, NaN): the new pair is kept whatever it says."""
    grant = grant_with_raw(standin, make_client(), "expires_in", expires_in)

    assert grant.refresh_token == "rft.NewRefresh-0001"
    assert grant.access_token == "act.NewAccess-0001"
    assert grant.refresh_expires_at is not None
    sent_at = grant.refresh_expires_at - timedelta(seconds=86400)
    assert grant.access_expires_at.tzinfo is not None
    if lifetime is None:  # unknown, so due: the next run refreshes again
        assert grant.access_expires_at == sent_at
        assert grant.notes == (
            "expires_in missing or unusable: the access token is refreshed again by the next run",
        )
    else:
        assert grant.access_expires_at == sent_at + lifetime
        assert grant.notes == (("expires_in clamped to 1 day",) if lifetime == DAY else ())


@pytest.mark.parametrize(
    ("refresh_expires_in", "lifetime", "note"),
    [
        pytest.param('"15552000"', timedelta(days=180), None, id="digit-string"),
        pytest.param("15552000.0", timedelta(days=180), None, id="json-float"),
        pytest.param(str(10**20), timedelta(days=366), "clamped to 366 days", id="clamped"),
        pytest.param(str(10**400), timedelta(days=366), "clamped to 366 days", id="10**400"),
        pytest.param(None, None, "missing or unusable", id="missing"),
        pytest.param("false", None, "missing or unusable", id="bool"),
        pytest.param('"-1"', None, "missing or unusable", id="negative-string"),
        pytest.param("Infinity", None, "missing or unusable", id="infinity"),
    ],
)
def test_any_refresh_lifetime_keeps_the_grant(
    standin: TikTokStandIn,
    make_client: MakeClient,
    refresh_expires_in: str | None,
    lifetime: timedelta | None,
    note: str | None,
) -> None:
    grant = grant_with_raw(standin, make_client(), "refresh_expires_in", refresh_expires_in)

    assert grant.refresh_token == "rft.NewRefresh-0001"
    sent_at = grant.access_expires_at - timedelta(seconds=7200)
    if lifetime is None:  # the caller keeps the stored expiry
        assert grant.refresh_expires_at is None
        assert grant.notes == (
            "refresh_expires_in missing or unusable: the stored refresh expiry is kept",
        )
    else:
        assert grant.refresh_expires_at == sent_at + lifetime
        assert grant.notes == ((f"refresh_expires_in {note}",) if note else ())


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("depth", [30_000, 100_000])
def test_deeply_nested_json_is_not_an_answer(
    standin: TikTokStandIn, make_client: MakeClient, depth: int
) -> None:
    """30,000 deep fits the default 64 KiB cap; 100,000 deep gets a 1 MiB cap to be parsed."""
    nested = b'{"refresh_token": "rft.NewRefresh-0001", "x": ' + b"[" * depth + b"]" * depth
    standin.script(Reply(200, nested + b"}"))
    error = failure(make_client(max_body_bytes=1 << 20))
    assert type(error) is RefreshFailed
    assert error.reason == "TikTok's answer is not a JSON object"
    assert error.http_status == 200


@pytest.mark.parametrize(
    "body", [b"[]", b"42", b"null", b'"rft.NewRefresh-0001"', b"", b"\xff\xfe\x00{"]
)
def test_json_that_is_not_an_object_fails(
    standin: TikTokStandIn, make_client: MakeClient, body: bytes
) -> None:
    standin.script(Reply(200, body))
    error = failure(make_client())
    assert type(error) is RefreshFailed
    assert error.reason == "TikTok's answer is not a JSON object"
    assert "rft.NewRefresh-0001" not in str(error)


def test_invalid_utf8_and_lone_surrogates_keep_the_grant(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    """A stray byte must not cost a new pair; surrogates and controls never reach the database."""
    body = json.dumps(grant_body(open_id="ali\\ud800ce\\u0000", scope="SCOPE")).encode()
    body = body.replace(b"\\\\", b"\\").replace(b"SCOPE", b"user.info\xff\xfe")
    standin.script(Reply(200, body))
    grant = make_client().refresh(PRESENTED)

    assert grant.refresh_token == "rft.NewRefresh-0001"
    assert grant.access_token == "act.NewAccess-0001"
    assert grant.scope == "user.info\ufffd\ufffd"
    assert grant.open_id == "ali\ufffdce\\x00"
    assert grant.open_id.encode("utf-8")  # storable as it is
    assert grant.notes == (
        "the answer is not valid UTF-8: invalid bytes were replaced",
        "open_id had control characters escaped or was cut to 255 characters",
    )


def test_a_token_with_a_lone_surrogate_is_kept_exactly(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    """Tokens are kept as sent (the cipher stores them with surrogatepass), and presented back."""
    body = json.dumps(grant_body(refresh_token="rft.odd\ud800token")).encode()
    standin.script(Reply(200, body), Reply(200, json.dumps(grant_body()).encode()))
    client = make_client()
    grant = client.refresh(PRESENTED)
    assert grant.refresh_token == "rft.odd\ud800token"
    client.refresh(grant.refresh_token)  # no UnicodeEncodeError on the way out
    assert standin.received[1].body.endswith(b"refresh_token=rft.odd%ED%A0%80token")


def test_an_answer_without_content_type_or_length_is_read(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    body = json.dumps(grant_body()).encode()
    standin.script(Reply(raw=b"HTTP/1.0 200 OK\r\n\r\n" + body))
    grant = make_client().refresh(PRESENTED)
    assert grant.refresh_token == "rft.NewRefresh-0001"
    assert grant.notes == ()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"garbage\r\n\r\n", id="no-status-line"),
        pytest.param(b"HTTP/1.1 abc Nope\r\n\r\n", id="bad-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", id="short-body"),
        pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n{}", id="many-headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n{}", id="long-header"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk"
        ),
    ],
)
def test_broken_http_is_a_transient_failure(
    standin: TikTokStandIn, make_client: MakeClient, raw: bytes
) -> None:
    standin.script(Reply(raw=raw))
    error = failure(make_client())
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.maybe_processed is True  # TikTok saw the request and may have rotated
    assert error.reason.startswith("connection to TikTok failed")


# ----------------------------------------------------------------------------- size


def peak_memory_of(call: Callable[[], TikTokError]) -> tuple[TikTokError, int, float]:
    """The error a call raises, the peak of Python memory traced meanwhile, and its duration."""
    tracemalloc.start()
    try:
        started = time.monotonic()
        error = call()
        took = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return error, peak, took


def test_an_endless_body_ends_at_the_cap_in_bounded_memory(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    client = make_client()
    standin.script(Reply(200, b'{"access_token": "act.x", "pad": "', endless=True))
    error, peak, took = peak_memory_of(lambda: failure(client))
    assert peak < 4 * 1024 * 1024  # the sender would go on for 1 GiB
    assert type(error) is RefreshFailed
    assert error.reason == "TikTok's answer is larger than 64 KiB (the token may have been rotated)"
    assert error.maybe_processed is True  # a 200: TikTok may have rotated
    assert error.http_status == 200
    assert took < NO_TRICKLE_ENDS_BEFORE


def test_a_redirect_with_an_endless_body_is_not_read_either(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    """requests' Session.send reads a redirect's whole body even when it does not follow it."""
    client = make_client()
    standin.script(Reply(302, b"moved", headers={"Location": "/elsewhere"}, endless=True))
    error, peak, took = peak_memory_of(lambda: failure(client))
    assert peak < 4 * 1024 * 1024
    assert type(error) is RefreshFailed
    assert error.reason == "TikTok's answer is larger than 64 KiB"
    assert error.maybe_processed is False
    assert error.http_status == 302
    assert took < NO_TRICKLE_ENDS_BEFORE


def test_a_gzip_bomb_stops_at_the_cap(standin: TikTokStandIn, make_client: MakeClient) -> None:
    """50 MiB of zeros in about 50 KiB: under the cap compressed, far over it inflated."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = packer.compress(b'{"refresh_token": "rft.NewRefresh-0001", "pad": "')
    bomb += b"".join(packer.compress(zeros) for _ in range(50)) + packer.flush()
    assert len(bomb) < 64 * 1024
    client = make_client()
    standin.script(Reply(200, bomb, headers={"Content-Encoding": "gzip"}))
    error, peak, _ = peak_memory_of(lambda: failure(client))
    assert peak < 4 * 1024 * 1024
    assert type(error) is RefreshFailed
    assert error.reason == (
        "TikTok's answer is larger than 64 KiB decompressed (the token may have been rotated)"
    )
    assert error.maybe_processed is True


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_answer_sent_despite_identity_is_still_a_grant(
    standin: TikTokStandIn, make_client: MakeClient, encoding: str
) -> None:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    body = packer.compress(json.dumps(grant_body()).encode()) + packer.flush()
    standin.script(Reply(200, body, headers={"Content-Encoding": encoding}))
    grant = make_client().refresh(PRESENTED)
    assert grant.refresh_token == "rft.NewRefresh-0001"
    received = {name.lower(): value for name, value in standin.received[0].headers.items()}
    assert received["accept-encoding"] == "identity"


def test_an_unknown_encoding_of_a_200_may_have_rotated(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    standin.script(Reply(200, b"\x1b\x00\x00", headers={"Content-Encoding": "br"}))
    error = failure(make_client())
    assert type(error) is RefreshFailed
    assert error.reason == (
        "TikTok's answer has a Content-Encoding tokenrefresh cannot read "
        "(the token may have been rotated)"
    )
    assert error.maybe_processed is True


# ----------------------------------------------------------------------------- the deadline


def test_a_trickled_body_ends_at_the_deadline(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    body = json.dumps(grant_body()).encode()  # about 200 bytes: 40 s at 0.2 s a byte
    standin.script(Reply(200, body, trickle=TRICKLE))
    error, took = timed_failure(make_client(timeout=1.0))
    assert type(error) is RefreshFailed
    assert error.reason == (
        "no complete answer from TikTok within 1 s (the token may have been rotated)"
    )
    assert error.maybe_processed is True
    assert error.http_status == 200
    assert 1.0 <= took < NO_TRICKLE_ENDS_BEFORE


def test_trickled_headers_end_at_the_deadline(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 200 + b"\r\nContent-Length: 2\r\n\r\n{}"
    standin.script(Reply(raw=head, trickle=TRICKLE))
    error, took = timed_failure(make_client(timeout=1.0))
    assert type(error) is RefreshFailed
    assert error.reason.startswith("no complete answer from TikTok within 1 s")
    assert error.maybe_processed is True
    assert error.http_status is None
    assert 1.0 <= took < NO_TRICKLE_ENDS_BEFORE


def grant_then_a_trickle_to_the_deadline(standin: TikTokStandIn, client: TikTokClient) -> bytes:
    """A normal answer, then the same trickled: the client's first call is a grant, its
    second ends at its 1 s deadline. The answer's body."""
    body = json.dumps(grant_body()).encode()
    standin.script(Reply(200, body), Reply(200, body, trickle=TRICKLE))
    assert client.refresh(PRESENTED).refresh_token == "rft.NewRefresh-0001"
    error, took = timed_failure(client)
    assert error.reason.startswith("no complete answer from TikTok within 1 s")
    assert took < NO_TRICKLE_ENDS_BEFORE
    return body


def test_a_trickle_on_a_reused_keep_alive_connection_ends_at_the_deadline(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    client = make_client(timeout=1.0)
    body = grant_then_a_trickle_to_the_deadline(standin, client)
    assert standin.accepted_connections == 1  # the second call did reuse the connection
    # And the client goes on: the next call gets a fresh connection and its answer.
    standin.script(Reply(200, body))
    assert client.refresh(PRESENTED).refresh_token == "rft.NewRefresh-0001"


def test_a_trickle_through_an_http_proxy_ends_at_the_deadline(
    standin: TikTokStandIn, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in plays the proxy: it reads the path from the absolute request URI."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", standin.base_url)
    client = make_client(base_url="http://tiktok.invalid", timeout=1.0)
    grant_then_a_trickle_to_the_deadline(standin, client)
    assert [received.headers.get("Host") for received in standin.received] == ["tiktok.invalid"] * 2


def test_a_slow_answer_within_the_deadline_is_a_grant(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    body = json.dumps(grant_body()).encode()
    standin.script(Reply(200, body, trickle=0.001))
    grant = make_client(timeout=30.0).refresh(PRESENTED)
    assert grant.refresh_token == "rft.NewRefresh-0001"


def test_one_watchdog_thread_per_client(standin: TikTokStandIn, make_client: MakeClient) -> None:
    before = deadline_threads()
    client = make_client(timeout=1.0)
    body = json.dumps(grant_body()).encode()
    standin.script(*[Reply(200, body)] * 5, Reply(200, body, trickle=TRICKLE))
    for _ in range(5):
        client.refresh(PRESENTED)
    failure(client)
    assert deadline_threads() == before + 1
    client.close()
    assert deadline_threads() == before


# ----------------------------------------------------------------------------- TLS


class Relay(socketserver.ThreadingTCPServer):
    """Forwards each connection to `upstream`: TLS-terminating if given a server context,
    and trickling what goes back to the client (a byte every `trickle` s) if asked."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(
        self, upstream: int, *, tls: ssl.SSLContext | None = None, trickle: float = 0.0
    ) -> None:
        self.upstream = ("127.0.0.1", upstream)
        self.tls = tls
        self.trickle = trickle
        self.accepted: list[socket.socket] = []
        super().__init__(("127.0.0.1", 0), RelayHandler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        for conn in self.accepted:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class RelayHandler(socketserver.BaseRequestHandler):
    server: Relay

    def handle(self) -> None:
        self.server.accepted.append(self.request)
        with contextlib.suppress(OSError):
            client = self.request
            if self.server.tls is not None:
                client = self.server.tls.wrap_socket(client, server_side=True)
            with client, socket.create_connection(self.server.upstream) as upstream:
                self.pump(client, upstream)

    def pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """One thread, both directions (an SSL socket must not be shared by two threads)."""
        while True:
            pending = isinstance(client, ssl.SSLSocket) and client.pending()
            ready = [client] if pending else select.select([client, upstream], [], [], 1.0)[0]
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                if source is client:
                    upstream.sendall(data)
                elif self.server.trickle <= 0:
                    client.sendall(data)
                else:
                    for position in range(len(data)):
                        client.sendall(data[position : position + 1])
                        time.sleep(self.server.trickle)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenrefresh test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_front(
    standin: TikTokStandIn, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Relay]:
    """HTTPS in front of the stand-in, trusted by clients made from now on."""
    cert_path, key_path = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_path))
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    front = Relay(standin.port, tls=context)
    yield front
    front.stop()


def test_an_answer_over_tls_is_a_grant(
    standin: TikTokStandIn, make_client: MakeClient, tls_front: Relay
) -> None:
    standin.script(Reply(200, grant_body()), Reply(200, grant_body()))
    client = make_client(base_url=f"https://127.0.0.1:{tls_front.port}")
    assert client.refresh(PRESENTED).refresh_token == "rft.NewRefresh-0001"
    assert client.refresh(PRESENTED).refresh_token == "rft.NewRefresh-0001"
    assert standin.accepted_connections == 1  # kept alive through TLS too


def test_a_trickled_body_over_tls_ends_at_the_deadline(
    standin: TikTokStandIn, make_client: MakeClient, tls_front: Relay
) -> None:
    """The watchdog shuts down an SSL socket under a read in another thread."""
    standin.script(Reply(200, json.dumps(grant_body()).encode(), trickle=TRICKLE))
    client = make_client(base_url=f"https://127.0.0.1:{tls_front.port}", timeout=1.0)
    error, took = timed_failure(client)
    assert type(error) is RefreshFailed
    assert error.reason.startswith("no complete answer from TikTok within 1 s")
    assert error.maybe_processed is True
    assert error.http_status == 200
    assert 1.0 <= took < NO_TRICKLE_ENDS_BEFORE


def test_a_trickled_tls_handshake_ends_at_the_deadline_unsent(
    standin: TikTokStandIn, make_client: MakeClient, tls_front: Relay
) -> None:
    """Each handshake byte comes well within the connect timeout: only the deadline ends it,
    and as nothing was sent, TikTok cannot have rotated the token."""
    slow_network = Relay(tls_front.port, trickle=0.05)
    try:
        client = make_client(base_url=f"https://127.0.0.1:{slow_network.port}", timeout=1.0)
        error, took = timed_failure(client)
    finally:
        slow_network.stop()
    assert type(error) is RefreshFailed
    assert error.reason == "could not connect to TikTok within 1 s"
    assert error.maybe_processed is False
    assert 1.0 <= took < NO_TRICKLE_ENDS_BEFORE
    assert standin.received == []


# ----------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("99999999999999999999999", 3600.0, id="huge"),
        pytest.param("1e999", 3600.0, id="1e999"),
        pytest.param("1e99999999999999999999999", 3600.0, id="beyond-decimal"),
        pytest.param("-5", 0.0, id="negative"),
        pytest.param("2.5", 2.5, id="fraction"),
        pytest.param("nan", None, id="nan"),
        pytest.param("inf", None, id="inf"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", 3600.0, id="year-9999"),
        pytest.param("Fri, 31 Dec 99999 23:59:59 GMT", None, id="year-99999"),
        pytest.param("Mon, 01 Jan 0001 00:00:00 +2359", 0.0, id="year-1"),
        pytest.param("Wed, 32 Foo 2015 25:61:00 GMT", None, id="bad-date"),
        pytest.param("\xd9\xa1\xd9\xa2", None, id="not-ascii"),
        pytest.param("9" * 5000, None, id="too-long"),
    ],
)
def test_retry_after_is_clamped_or_ignored(
    standin: TikTokStandIn, make_client: MakeClient, value: str, seconds: float | None
) -> None:
    standin.script(Reply(429, headers={"Retry-After": value}))
    error = failure(make_client())
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.retry_after == seconds


# ----------------------------------------------------------------------------- secrets


def test_fragments_of_secrets_echoed_in_a_description_are_masked(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    token = standin.issue("alice").refresh_token
    description = (
        f"token {token[6:30].upper()} / {percent_encoded(token[20:40])} / "
        f"secret {CLIENT_SECRET[1:17].upper()} / {percent_encoded(CLIENT_SECRET)} / "
        f"new act.{token[8:30]} / done"
    )
    standin.script(
        Reply(400, {"error": "invalid_grant", "error_description": description, "log_id": "L1"})
    )
    error = failure(make_client(), token)
    assert type(error) is UserTokenRejected
    shown = " ".join([str(error), repr(error), error.reason])
    assert leaked_fragments(shown, token, CLIENT_SECRET) == []
    assert error.reason == (
        "invalid_grant (HTTP 400): token [redacted] / [redacted] / secret [redacted] / "
        "[redacted] / new act.[redacted] / done"
    )


def test_tokens_of_the_answer_itself_are_masked_in_a_reason(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    """A description that repeats the answer's own (unshaped) access token."""
    access = "OpaqueAccessValue0123456789"
    body = {"error": "server_error", "error_description": f"for {access}", "access_token": access}
    standin.script(Reply(500, body))
    error = failure(make_client())
    assert leaked_fragments(error.reason, access) == []
    assert error.reason == "server_error (HTTP 500): for [redacted]"


def test_a_log_id_that_is_a_token_fragment_is_dropped(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    token = "rft.Abcdefghijklmnopqrstuvwxyz0123456789"
    standin.script(
        Reply(400, {"error": "invalid_grant", "log_id": token[4:30]}),
        Reply(400, {"error": "invalid_grant"}, headers={"X-Tt-Logid": CLIENT_SECRET[3:18]}),
        Reply(
            400,
            {"error": "invalid_grant", "log_id": token[4:30].lower()},
            headers={"X-Tt-Logid": "HEADER-LOG-1"},
        ),
        Reply(400, {"error": "invalid_grant", "log_id": "log\x1b[2J"}),
    )
    client = make_client()
    errors = [failure(client, token) for _ in range(4)]
    assert [error.log_id for error in errors] == [None, None, "HEADER-LOG-1", None]
    for error in errors:
        assert type(error) is UserTokenRejected
        assert leaked_fragments(str(error), token, CLIENT_SECRET) == []


@pytest.mark.parametrize(
    "code",
    [
        "\x1b[31minvalid_grant",
        "invalid_grant\n",
        "invalid grant",
        "INVALID_GRANT",
        "x" * 65,
        "abcdefghijklmnopqrstuvwxyz",  # a fragment of the presented token
        "rft.abcdefghijklmnop",
    ],
)
def test_an_error_code_that_is_not_one_is_dropped(
    standin: TikTokStandIn, make_client: MakeClient, code: str
) -> None:
    token = "rft.Xabcdefghijklmnopqrstuvwxyz0123456789"
    standin.script(Reply(400, {"error": code, "error_description": "nope"}))
    error = failure(make_client(), token)
    assert type(error) is RefreshFailed  # not a verdict on the token
    assert error.error_code is None
    assert error.reason == "an unrecognised error code (HTTP 400): nope"
    assert leaked_fragments(str(error), token) == []


def test_no_hostile_answer_raises_anything_else(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    """A last sweep: each reply above, and a few more, ends as a grant or an outcome."""
    replies = [
        Reply(200, b'{"error": {"code": 1e999, "log_id": [1]}, "refresh_token": 5}'),
        Reply(200, b'{"error": {"code": "ok"}, "access_token": "act.x", "scope": 7}'),
        Reply(401, {"error": "invalid_client", "error_description": 10**100}),
        Reply(999, {"error": "x" * 10_000}),
        Reply(200, {"error": "invalid_grant", "refresh_token": "rft.NewRefresh-0001"}),
        Reply(204),
        Reply(100),
    ]
    standin.script(*replies)
    client = make_client(timeout=2.0)
    outcomes = []
    for _ in replies:
        try:
            outcomes.append(type(client.refresh(PRESENTED)))
        except (UserTokenRejected, AppCredentialsRejected, RefreshFailed) as error:
            outcomes.append(type(error))
    assert outcomes[4] is TokenGrant
    assert outcomes[2] is AppCredentialsRejected
    assert set(outcomes) <= {TokenGrant, UserTokenRejected, AppCredentialsRejected, RefreshFailed}


def test_expiries_count_from_when_the_request_was_sent(
    standin: TikTokStandIn, make_client: MakeClient
) -> None:
    """Even for a slow answer with absurd lifetimes: [sent_at, sent_at + clamp]."""
    standin.script(Reply(200, grant_body(expires_in=10**30, refresh_expires_in=10**30), delay=0.3))
    before = datetime.now(UTC)
    grant = make_client().refresh(PRESENTED)
    after = datetime.now(UTC)
    sent_at = grant.access_expires_at - DAY
    assert before <= sent_at <= after - timedelta(seconds=0.3)  # sent before the answer's delay
    assert grant.refresh_expires_at == sent_at + timedelta(days=366)


# ----------------------------------------------------------------------------- end to end


def test_a_pair_with_odd_lifetimes_is_stored_by_a_refresh_run(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine, fernet_key: str
) -> None:
    """TikTok rotates and answers with odd lifetimes: the new pair is stored and noted (the old
    client failed the call, presented the spent token again and the account expired)."""
    [tokens] = add_accounts(1)
    answer = grant_body(expires_in="soon", refresh_expires_in=10**20, open_id="user0")
    standin.script(Reply(200, answer, consume=True), open_id="user0")
    before = datetime.now(UTC)

    result = cli("refresh", "--window", "3h", "--http-timeout", "5")

    assert result.exit_code == 0, result.stderr
    assert stored_tokens(engine, "user0", fernet_key) == (
        "act.NewAccess-0001",
        "rft.NewRefresh-0001",
    )
    row = account(engine, "user0")
    assert row["status"] == "active"
    access_expires_at = row["access_expires_at"].replace(tzinfo=UTC)
    assert before <= access_expires_at <= datetime.now(UTC)  # due: the next run refreshes again
    [attempt] = table(engine, "refresh_attempts")
    assert attempt["outcome"] == "refreshed"
    assert attempt["message"] == (
        "expires_in missing or unusable: the access token is refreshed again by the next run; "
        "refresh_expires_in clamped to 366 days"
    )
    assert standin.presented() == {tokens.refresh_token: 1}
