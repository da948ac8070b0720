"""An answer's body as every outbound call reads it: capped while reading, decompressed only
as far as the cap (a gzip bomb stops there). `UnreadableBody` says why a body could not be
read in full, in words a caller puts after its receiver's name ("TikTok's " + reason)."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

__all__ = ["UnreadableBody", "close_delimited", "decoded", "header_value", "read_capped"]

_READ_CHUNK = 16 * 1024


class UnreadableBody(Exception):
    """The answer's body could not be read in full: too large, or an unknown encoding."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_capped(raw: Any, limit: int) -> bytes:
    """The raw (still encoded) body; UnreadableBody as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = raw.read(min(_READ_CHUNK, limit + 1 - size), decode_content=False)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise UnreadableBody(f"answer is larger than {_size_text(limit)}")


def decoded(raw: bytes, headers: Mapping[str, str], limit: int) -> bytes:
    """The body with its Content-Encoding undone, never expanding past `limit` bytes.

    Accept-Encoding: identity asks for none, but an answer compressed anyway may still carry
    a new token pair, so gzip and deflate are read rather than dropped."""
    encodings = [
        part.strip().lower()
        for part in (header_value(headers, "Content-Encoding") or "").split(",")
    ]
    encodings = [encoding for encoding in encodings if encoding not in ("", "identity")]
    if not encodings:
        return raw
    if len(encodings) > 1 or encodings[0] not in ("gzip", "x-gzip", "deflate"):
        raise UnreadableBody("answer has a Content-Encoding tokenrefresh cannot read")
    if encodings[0] == "deflate":
        try:
            return _inflate(raw, zlib.MAX_WBITS, limit)  # zlib-wrapped, as the RFC says
        except zlib.error:
            return _inflate_or_fail(raw, -zlib.MAX_WBITS, limit)  # raw deflate, as some send
    return _inflate_or_fail(raw, 32 + zlib.MAX_WBITS, limit)  # gzip (or zlib) header


def _inflate_or_fail(data: bytes, wbits: int, limit: int) -> bytes:
    try:
        return _inflate(data, wbits, limit)
    except zlib.error:
        raise UnreadableBody("compressed answer is corrupt") from None


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    """Decompressed, but never more than `limit` bytes of output (a gzip bomb stops here)."""
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise UnreadableBody(f"answer is larger than {_size_text(limit)} decompressed")
    return out


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name."""
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None


def close_delimited(headers: Mapping[str, str]) -> bool:
    """True if only the connection's end marks the end of the body (no length, not chunked)."""
    chunked = "chunked" in (header_value(headers, "Transfer-Encoding") or "").lower()
    return not chunked and header_value(headers, "Content-Length") is None


def _size_text(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} bytes"
