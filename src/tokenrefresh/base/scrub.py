"""Text from outside, made safe: no fragment of a secret, no control character, bounded length.

Two promises meet here. No run of FRAGMENT or more characters of a secret (a token, the
client secret, an encryption key, a database password, a ping URL) appears in anything
tokenrefresh shows, logs or stores, in any letter case or URL encoding, nor of its base64
(standard or URL-safe, padded or not, wherever it stands in a longer base64 text, as in an
echoed `Authorization: Basic` header). And no text that
came from outside (TikTok's answers, labels, open_ids, driver errors) reaches a terminal
with control characters in it.

`REDACTOR` holds the process-wide secrets (registered by Settings); `scrub` applies it,
plus any secrets of the moment (the tokens of one call), and `safe_text` escapes and bounds.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import unicodedata
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = [
    "FRAGMENT",
    "MASK",
    "REDACTOR",
    "Redactor",
    "register_secret",
    "safe_text",
    "scrub",
]

FRAGMENT = 12  # this many characters of a secret in a row count as a leak
MIN_WHOLE = 8  # a shorter secret is masked where it appears whole, if it has at least this many
MASK = "[redacted]"

# Characters that change what a terminal does or shows, besides the C0/C1 controls:
# bidirectional overrides and isolates (text that reads differently than it is) and the
# Unicode line and paragraph separators.
_INVISIBLE_FORMAT = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029\ufeff"
)


class Redactor:
    """Masks every fragment of its secrets in a text.

    Secrets of FRAGMENT characters or more are masked wherever FRAGMENT of their characters
    stand in a row; shorter ones (MIN_WHOLE and up) wherever they stand whole. Matching
    ignores letter case and sees through percent-encoding (once or twice encoded). The
    base64 forms of a secret are matched as more fragments of the same kind: a lookup per
    position, whatever the number of secrets, so they cost memory, not speed.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._windows: frozenset[str] = frozenset()
        self._wholes: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Remember more secrets (thread-safe: readers see the old or the new sets)."""
        windows, wholes = _windows_of(secret for secret in secrets if secret)
        if not windows and not wholes:
            return
        with self._lock:
            self._windows = self._windows | windows
            self._wholes = self._wholes | wholes

    def with_secrets(self, *secrets: str | None) -> Redactor:
        """A copy that also masks these secrets (the tokens of one call)."""
        copy = Redactor()
        copy._windows, copy._wholes = self._windows, self._wholes
        copy.add(*secrets)
        return copy

    def scrub(self, text: str) -> str:
        windows, wholes = self._windows, self._wholes
        if not text or not (windows or wholes) or len(text) < MIN_WHOLE:
            return text
        lowered = _lower(text)
        hits: list[tuple[int, int]] = []
        if windows:
            for start in range(len(lowered) - FRAGMENT + 1):
                if lowered[start : start + FRAGMENT] in windows:
                    hits.append((start, start + FRAGMENT))
        for whole in wholes:
            start = lowered.find(whole)
            while start != -1:
                hits.append((start, start + len(whole)))
                start = lowered.find(whole, start + 1)
        if "%" in lowered:
            hits += _encoded_hits(lowered, windows, wholes)
        return _masked(text, hits) if hits else text


def _windows_of(secrets: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    windows: set[str] = set()
    wholes: set[str] = set()
    for secret in secrets:
        for form in {secret, unquote(secret)}:
            lowered = _lower(form)
            if len(lowered) >= FRAGMENT:
                windows.update(
                    lowered[start : start + FRAGMENT]
                    for start in range(len(lowered) - FRAGMENT + 1)
                )
            elif len(lowered) >= MIN_WHOLE:
                wholes.add(lowered)
            for encoded in _base64_forms(form):
                windows.update(
                    encoded[start : start + FRAGMENT]
                    for start in range(len(encoded) - FRAGMENT + 1)
                )
    return frozenset(windows), frozenset(wholes)


_URL_SAFE = str.maketrans("+/", "-_")


def _base64_forms(secret: str) -> set[str]:
    """The secret's base64, lowered, in both alphabets, at each of the three alignments its
    bytes (UTF-8, or Latin-1 as HTTP Basic sends them) can have in a longer encoded text.
    Only the characters that its bytes alone decide are kept: they are the same whatever
    stands before or after it, and never padding, so padded and unpadded forms match."""
    encodings = {secret.encode("utf-8", errors="surrogatepass")}
    with contextlib.suppress(UnicodeEncodeError):
        encodings.add(secret.encode("latin-1"))
    forms: set[str] = set()
    for data in encodings:
        for shift in range(3):  # bytes of the 3-byte group before the secret's first byte
            encoded = base64.b64encode(bytes(shift) + data).decode("ascii")
            # Character i carries bits 6i to 6i+6: keep those wholly inside the secret's.
            inner = encoded[-(-8 * shift // 6) : 8 * (shift + len(data)) // 6]
            forms |= {inner.lower(), inner.translate(_URL_SAFE).lower()}
    return forms


def _lower(text: str) -> str:
    """Lower case, one character for one: positions stay comparable."""
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def _encoded_hits(
    lowered: str, windows: frozenset[str], wholes: frozenset[str]
) -> list[tuple[int, int]]:
    """Fragments written percent-encoded (`%2B`, or twice: `%252B`), found by decoding
    forward from every position, so a stray `%` before a secret cannot hide it."""
    longest = max([FRAGMENT, *(len(whole) for whole in wholes)])
    hits: list[tuple[int, int]] = []
    for start in range(len(lowered)):
        decoded, ends = _decode_forward(lowered, start, longest)
        if len(decoded) >= FRAGMENT and decoded[:FRAGMENT] in windows:
            hits.append((start, ends[FRAGMENT - 1]))
        for whole in wholes:
            if decoded.startswith(whole):
                hits.append((start, ends[len(whole) - 1]))
    return hits


def _decode_forward(text: str, start: int, count: int) -> tuple[str, list[int]]:
    """Up to `count` characters decoded from `start`, and where each ends in `text`."""
    chars: list[str] = []
    ends: list[int] = []
    position = start
    while position < len(text) and len(chars) < count:
        char, position = _next_char(text, position)
        chars.append(char)
        ends.append(position)
    return "".join(chars), ends


def _next_char(text: str, position: int) -> tuple[str, int]:
    """One character at `position`: literal, `%XX`, or `%25XX`; and the position after it."""
    if text[position] != "%" or not _is_hex(text[position + 1 : position + 3]):
        return text[position], position + 1
    char = chr(int(text[position + 1 : position + 3], 16))
    if char == "%" and _is_hex(text[position + 3 : position + 5]):
        return _lower(chr(int(text[position + 3 : position + 5], 16))), position + 5
    return _lower(char), position + 3


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(char in "0123456789abcdef" for char in text)


def _masked(text: str, hits: list[tuple[int, int]]) -> str:
    hits.sort()
    out: list[str] = []
    position = 0
    current_start, current_end = hits[0]
    for start, end in hits[1:]:
        if start <= current_end:
            current_end = max(current_end, end)
            continue
        out += [text[position:current_start], MASK]
        position = current_end
        current_start, current_end = start, end
    out += [text[position:current_start], MASK, text[current_end:]]
    return "".join(out)


REDACTOR = Redactor()


def register_secret(*secrets: str | None) -> None:
    """Mask these everywhere from now on (client secret, keys, passwords, ping URLs)."""
    REDACTOR.add(*secrets)


def scrub(text: str, *secrets: str | None) -> str:
    """The text without any fragment of a registered secret or of `secrets`."""
    redactor = REDACTOR.with_secrets(*secrets) if any(secrets) else REDACTOR
    return redactor.scrub(text)


def safe_text(text: str, limit: int | None = None, *, keep_newlines: bool = False) -> str:
    """Control characters escaped (`\\x1b`), lone surrogates replaced, at most `limit` long.

    For a terminal and for a database text column alike: what is left is printable, valid
    UTF-8, free of NUL, and says visibly where something was escaped.
    """
    if limit is not None:
        text = text[: limit + 1]  # each character becomes at least one: enough to cut from
    if text.isascii() and text.isprintable():
        cleaned = text
    else:
        cleaned = "".join(_escaped(char, keep_newlines) for char in text)
    if limit is not None and len(cleaned) > limit:
        cleaned = cleaned[: max(0, limit - 1)] + "…"
    return cleaned


def _escaped(char: str, keep_newlines: bool) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    if char == "\n" and keep_newlines:
        return char
    if char in _INVISIBLE_FORMAT or unicodedata.category(char) == "Cc":
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char
