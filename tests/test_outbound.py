"""The one bounded call: nothing else in tokenrefresh opens an HTTP connection, and the
environment is used as `outbound/call.py` says: proxies from HTTP(S)_PROXY and NO_PROXY,
never `~/.netrc`. Real servers on loopback."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

import tokenrefresh
from helpers import serving
from receiver import Receiver, closed_port, running_receiver
from tokenrefresh.adapters.outbound.call import BoundedClient, CallFailed

SOURCE = Path(tokenrefresh.__file__).parent
HTTP_MODULES = ("requests", "urllib3", "http.client", "urllib.request", "httpx", "aiohttp")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_outbound_package_speaks_http() -> None:
    """Every request goes through BoundedClient: no other module imports an HTTP client
    (Apprise, which brings its own, is bounded by a thread joined with a deadline)."""
    speaking = {
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if any(
            name == module or name.startswith(module + ".")
            for name in imported_modules(path)
            for module in HTTP_MODULES
        )
    }
    assert speaking == {"adapters/outbound/call.py", "adapters/outbound/deadline.py"}
    sessions = [
        path.name for path in SOURCE.rglob("*.py") if "requests.Session()" in path.read_text()
    ]
    assert sessions == ["call.py"]


@dataclass
class Proxy:
    """A loopback HTTP proxy that answers every request itself, recording its target."""

    url: str = ""
    targets: list[str] = field(default_factory=list)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    running = Proxy()

    def answer(request: BaseHTTPRequestHandler) -> None:
        request.rfile.read(int(request.headers.get("Content-Length") or 0))
        running.targets.append(request.path)
        request.send_response(204)
        request.end_headers()

    with serving(answer) as url:
        running.url = url
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(SECRET) as running:
        yield running


@pytest.fixture
def client() -> Iterator[BoundedClient]:
    bounded = BoundedClient(timeout=5.0, max_body_bytes=1024)
    yield bounded
    bounded.close()


def without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_http_proxy_is_honoured_and_no_proxy_too(
    proxy: Proxy, client: BoundedClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with closed_port() as port:
        target = f"http://127.0.0.1:{port}/hooks"
        assert client.post(target, b"{}", {}).status == 204  # the proxy answered
        assert proxy.targets == [target]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with (
            BoundedClient(timeout=5.0, max_body_bytes=0) as direct,
            pytest.raises(CallFailed) as caught,
        ):
            direct.post(target, b"{}", {})
    assert caught.value.cause == "connection refused"
    assert proxy.targets == [target]


def test_netrc_credentials_are_never_sent(
    receiver: Receiver,
    client: BoundedClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without_proxies(monkeypatch)
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-password-123\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert client.post(receiver.url, b"{}", {}).status == 204
    [got] = receiver.wait_for(1)
    assert "authorization" not in got.headers
    # Credentials written in the URL itself are the operator's choice: they are sent.
    with_userinfo = receiver.url.replace("http://", "http://url-user:url-password@")
    assert client.post(with_userinfo, b"{}", {}).status == 204
    assert receiver.wait_for(2)[1].headers["authorization"].startswith("Basic ")
