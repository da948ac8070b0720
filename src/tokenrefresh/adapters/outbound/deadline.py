"""A total deadline per call: requests and urllib3 only bound each socket operation.

`Watchdog` ends a call at its deadline by shutting down its sockets; `DeadlineAdapter` is
the requests adapter whose connections report their sockets to the call in progress. Used
only through `outbound/call.py`."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["ACTIVE_CALL", "Call", "DeadlineAdapter", "Watchdog", "attach_to_call"]

# ----------------------------------------------------------------------------- the deadline
#
# requests and urllib3 only bound each socket operation, so an answer trickled a byte at a
# time holds a call for as long as the sender likes. A watchdog thread (one per client)
# shuts down the socket of a call whose deadline passed; the blocked read then returns at
# once. Sockets reach the call in progress on their thread through connection and pool
# subclasses: a new socket as soon as it is connected (before TLS), a connection's final
# socket after connect() (TLS-wrapped, tunnelled through a proxy), and a reused keep-alive
# connection when the pool hands it out.

ACTIVE_CALL = threading.local()  # .call: the Call in progress on this thread, if any


class Call:
    """One call's deadline, whether it passed, and the sockets and connections it used.

    `connected`: a connection was established (TLS included), so the request may be sent."""

    def __init__(self, watchdog: Watchdog, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.connected = False
        self._watchdog = watchdog
        self._parts: list[object] = []
        self._finished = False

    def attach(self, part: object, *, connected: bool) -> None:
        """Watch this socket or connection too; shut it down at once if already expired."""
        with self._watchdog.lock:
            if self._finished:
                return
            self.connected = self.connected or connected
            self._parts.append(part)
            if self.expired:
                _shut_down(part)

    def expire(self) -> None:
        """The deadline passed: shut down everything the call uses (caller holds the lock)."""
        if self.expired or self._finished:
            return
        self.expired = True
        for part in self._parts:
            _shut_down(part)

    def finish(self) -> bool:
        """Stop watching (idempotent); True if the deadline passed first."""
        with self._watchdog.lock:
            if not self._finished:
                self._finished = True
                self._watchdog.forget(self)
            if getattr(ACTIVE_CALL, "call", None) is self:
                ACTIVE_CALL.call = None
            return self.expired


class Watchdog:
    """One thread per client that expires calls past their deadline (started on first use)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self._calls: set[Call] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, seconds: float) -> Call:
        """A call of at most `seconds` begins on this thread."""
        call = Call(self, time.monotonic() + seconds)
        with self.lock:
            self._calls.add(call)
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="tokenrefresh-deadlines", daemon=True
                )
                self._thread.start()
            self.lock.notify()
        ACTIVE_CALL.call = call
        return call

    def cancel(self) -> None:
        """End every call in progress now, as if its deadline had passed (a stop was asked).

        Callable from a signal handler on the calling thread: the lock is reentrant."""
        with self.lock:
            for call in list(self._calls):
                call.expire()

    def forget(self, call: Call) -> None:
        """(Caller holds the lock.)"""
        self._calls.discard(call)

    def close(self) -> None:
        with self.lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self.lock.notify()
        if thread is not None:
            thread.join(timeout=5)

    def _run(self, stop: threading.Event) -> None:
        with self.lock:
            while not stop.is_set():
                self.lock.wait(self._expire_due())

    def _expire_due(self) -> float | None:
        """Expire the calls past their deadline; seconds to the next one (None: no call)."""
        now = time.monotonic()
        waits = []
        for call in self._calls:
            if call.deadline <= now:
                call.expire()
            else:
                waits.append(call.deadline - now)
        return min(waits, default=None)


def attach_to_call(part: object, *, connected: bool = False) -> None:
    call: Call | None = getattr(ACTIVE_CALL, "call", None)
    if call is not None:
        call.attach(part, connected=connected)


def _shut_down(part: object) -> None:
    """Shut down a socket, or a connection's sockets: a read blocked on them returns."""
    sock = getattr(part, "sock", None)  # a connection's socket, SSL socket or TLS-in-TLS transport
    for candidate in (part, sock, getattr(sock, "socket", None)):
        if isinstance(candidate, socket.socket) and candidate.fileno() != -1:
            with contextlib.suppress(OSError):
                # The base class's method: SSLSocket.shutdown would also drop the SSL object
                # under the reading thread's feet.
                socket.socket.shutdown(candidate, socket.SHUT_RDWR)


class _Watched:
    """Connection mixin: a new socket is attached to the call as soon as it is connected
    (before any TLS handshake, which a trickle could stretch too), and the connection's
    final socket (TLS-wrapped, or tunnelled through a proxy) once connect() returns."""

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        attach_to_call(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        attach_to_call(self, connected=True)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedPool:
    """Pool mixin: a connection handed out is attached to the call in progress; a reused
    keep-alive connection has its socket already, so it counts as connected."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        attach_to_call(connection, connected=getattr(connection, "sock", None) is not None)
        return connection


class _WatchedHTTPConnectionPool(_WatchedPool, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(_WatchedPool, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPConnectionPool, "https": _WatchedHTTPSConnectionPool}


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools, direct or through an HTTP(S) proxy, are watched.

    A SOCKS proxy keeps urllib3's own pools: its calls are bounded per read only."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager
