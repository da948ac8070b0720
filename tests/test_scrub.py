"""The scrubber: no 12-character fragment of a secret survives, in any case or URL encoding;
no control character survives `safe_text`. Property-based: the text is the attacker's.
"""

from __future__ import annotations

import base64
import string
from urllib.parse import quote, unquote

from hypothesis import example, given
from hypothesis import strategies as st

from tokenrefresh.base.scrub import FRAGMENT, MASK, Redactor, register_secret, safe_text, scrub

TOKEN_ALPHABET = string.ascii_letters + string.digits + "._-~+/=!*"
secrets_ = st.text(alphabet=TOKEN_ALPHABET, min_size=FRAGMENT, max_size=90)
noise = st.text(max_size=60)


def fragments(secret: str) -> set[str]:
    lowered = secret.lower()
    return {lowered[i : i + FRAGMENT] for i in range(len(lowered) - FRAGMENT + 1)}


def leaks(output: str, secret: str) -> bool:
    """A fragment of the secret in the output, read as a reader would: any case, decoded."""
    forms = {output.lower(), unquote(output).lower(), unquote(unquote(output)).lower()}
    return any(fragment in form for fragment in fragments(secret) for form in forms)


@st.composite
def disguised(draw: st.DrawFn, secret: str) -> str:
    """A piece of the secret (at least FRAGMENT long), in some case and some encoding."""
    start = draw(st.integers(0, len(secret) - FRAGMENT))
    end = draw(st.integers(start + FRAGMENT, len(secret)))
    piece = secret[start:end]
    piece = draw(
        st.sampled_from([piece, piece.upper(), piece.lower(), piece.swapcase(), piece.title()])
    )
    encoding = draw(st.sampled_from(["plain", "quote", "quote_all", "twice", "mixed_hex"]))
    if encoding == "quote":
        return quote(piece, safe="")
    if encoding == "quote_all":
        return "".join(f"%{ord(char):02X}" for char in piece)
    if encoding == "twice":
        return quote(quote(piece, safe=""), safe="")
    if encoding == "mixed_hex":
        return "".join(
            f"%{ord(char):02x}" if index % 2 else char for index, char in enumerate(piece)
        )
    return piece


@given(data=st.data(), secret=secrets_, before=noise, after=noise)
@example(data=None, secret="rft.abcdefghijklmnopqrstuvwxyz0123456789", before="", after="")
@example(data=None, secret="00000000000f+", before="%", after="")  # a stray % before it
def test_no_fragment_of_a_secret_survives(
    data: st.DataObject | None, secret: str, before: str, after: str
) -> None:
    piece = secret if data is None else data.draw(disguised(secret))
    text = before + piece + after
    scrubbed = Redactor([secret]).scrub(text)
    assert not leaks(scrubbed, secret), (text, scrubbed)
    assert MASK in scrubbed


@given(secret=secrets_, other=secrets_, text=noise)
def test_several_secrets_each_masked(secret: str, other: str, text: str) -> None:
    redactor = Redactor([secret])
    redactor.add(other)
    scrubbed = redactor.scrub(f"{text}{secret}{text}{other.upper()}")
    assert not leaks(scrubbed, secret)
    assert not leaks(scrubbed, other)


@given(text=st.text(alphabet=string.ascii_letters + " :,", max_size=200))
def test_text_without_the_secret_is_unchanged(text: str) -> None:
    secret = "0123456789!#0123456789"  # no letters: cannot occur in the text
    assert Redactor([secret]).scrub(text) == text


def test_per_call_secrets_do_not_stick() -> None:
    base = Redactor(["client-secret-0123456789"])
    call = base.with_secrets("rft.per-call-token-abcdefghij")
    assert MASK in call.scrub("echo rft.per-call-token-abcdefghij")
    assert base.scrub("echo rft.per-call-token-abcdefghij") == "echo rft.per-call-token-abcdefghij"
    assert MASK in base.scrub("CLIENT-SECRET-0123456789")


def test_a_short_secret_is_masked_whole_only() -> None:
    redactor = Redactor(["hunter2!x", "abc"])  # 9 characters; 3 is too short to mask at all
    assert redactor.scrub("password hunter2!x failed") == f"password {MASK} failed"
    assert redactor.scrub("hunter2 alone stays") == "hunter2 alone stays"
    assert redactor.scrub("abc stays") == "abc stays"


def test_the_mask_keeps_the_surrounding_text() -> None:
    secret = "rft.0123456789abcdefghij"
    scrubbed = Redactor([secret]).scrub(f"token {secret} is dead, token {secret[4:20]} too")
    assert scrubbed == f"token {MASK} is dead, token {MASK} too"


# ----------------------------------------------------------------------------- safe_text


@given(text=st.text(), limit=st.one_of(st.none(), st.integers(1, 300)))
def test_safe_text_has_no_control_characters_and_is_bounded(text: str, limit: int | None) -> None:
    out = safe_text(text, limit)
    assert all(char.isprintable() or char == " " or not char.isascii() for char in out)
    assert not any(0 <= ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in out)
    assert not any(0xD800 <= ord(char) <= 0xDFFF for char in out)
    assert "\u202e" not in out
    out.encode("utf-8")  # valid UTF-8, storable in any text column
    if limit is not None:
        assert len(out) <= limit


@given(text=st.text())
def test_safe_text_keeps_newlines_only_when_asked(text: str) -> None:
    assert "\n" not in safe_text(text)
    assert safe_text(text, keep_newlines=True).count("\n") == text.count("\n")


def test_safe_text_shows_what_it_escaped() -> None:
    assert safe_text("\x1b[31mred\x00\u202eevil\x9b") == "\\x1b[31mred\\x00\\u202eevil\\x9b"
    assert safe_text("Café Berlin 🎉") == "Café Berlin 🎉"
    assert safe_text("a" * 10, 5) == "aaaa…"


# ----------------------------------------------------------------------------- edges
# Each of these was a surviving mutant of mutmut's run over scrub.py.


def test_a_secret_of_exactly_the_shortest_masked_length_is_masked() -> None:
    assert Redactor(["12345678"]).scrub("12345678") == MASK
    assert Redactor(["12345678"]).scrub("x 12345678 and 12345678 y") == f"x {MASK} and {MASK} y"


def test_a_short_secret_written_percent_encoded_is_masked() -> None:
    redactor = Redactor(["pa$$word"])
    assert redactor.scrub("login pa%24%24word failed") == f"login {MASK} failed"


def test_text_with_percent_signs_but_no_secret_is_unchanged() -> None:
    text = "100% of 20 calls failed (%41 is not a secret, nor is %%)"
    assert Redactor(["rft.0123456789abcdefghij"]).scrub(text) == text


def test_a_secret_encoded_twice_is_masked() -> None:
    secret = "rft.a+b/c=d!e*f+g/h=i"
    twice = quote(quote(secret, safe=""), safe="")
    scrubbed = Redactor([secret]).scrub(f"token={twice}")
    assert scrubbed == f"token={MASK}"


def test_safe_text_boundaries() -> None:
    assert safe_text("\ud800x\udfff") == "\ufffdx\ufffd"
    assert safe_text("aaaaa", 5) == "aaaaa"  # exactly the limit: not cut
    assert safe_text("aaaaaa", 1) == "…"
    assert safe_text("\x7f\x80\x9f") == "\\x7f\\x80\\x9f"


def test_scrub_masks_the_registered_secrets_and_those_of_the_call() -> None:
    register_secret("registered-secret-0123456789")
    call_secret = "rft.call-secret-abcdefghijklmn"
    text = f"a REGISTERED-SECRET-0123456789 b {call_secret} c"
    assert scrub(text, call_secret) == f"a {MASK} b {MASK} c"
    assert scrub(text) == f"a {MASK} b {call_secret} c"  # the call's secret is not kept
    assert scrub("nothing secret here", None, "") == "nothing secret here"


# ----------------------------------------------------------------------------- base64 forms


def base64_fragments(secret: bytes, prefix_length: int) -> set[str]:
    """Every FRAGMENT-long run of the base64 characters that `secret`'s bits alone decide,
    when `prefix_length` bytes stand before it: both alphabets, any case."""
    encoded = base64.b64encode(bytes(prefix_length) + secret).decode("ascii")
    first_bit, end_bit = 8 * prefix_length, 8 * (prefix_length + len(secret))
    decided = "".join(
        char
        for index, char in enumerate(encoded)
        if 6 * index >= first_bit and 6 * index + 6 <= end_bit
    )
    runs = set()
    for form in (decided, decided.translate(str.maketrans("+/", "-_"))):
        runs |= {form[i : i + FRAGMENT].lower() for i in range(len(form) - FRAGMENT + 1)}
    return runs


@given(
    secret=st.text(min_size=8, max_size=60),
    prefix=st.binary(max_size=20),
    suffix=st.binary(max_size=20),
    url_safe=st.booleans(),
    padded=st.booleans(),
    around=noise,
)
@example(
    secret="hooks-user:pass-word", prefix=b"", suffix=b"", url_safe=False, padded=True, around=""
)
@example(
    secret="héllo:wörld-ünicode", prefix=b"a", suffix=b"", url_safe=True, padded=False, around=""
)
@example(secret="~" * 24, prefix=b"ab", suffix=b"", url_safe=True, padded=False, around="")
def test_the_base64_of_a_secret_is_masked_at_any_alignment(
    secret: str, prefix: bytes, suffix: bytes, url_safe: bool, padded: bool, around: str
) -> None:
    """An echoed `Authorization: Basic ...` (or any base64 holding a secret): whatever
    stands before and after it, no FRAGMENT of the secret's own base64 characters stays."""
    redactor = Redactor([secret])
    data = secret.encode("utf-8", errors="surrogatepass")
    encoder = base64.urlsafe_b64encode if url_safe else base64.b64encode
    encoded = encoder(prefix + data + suffix).decode("ascii")
    encoded = encoded if padded else encoded.rstrip("=")
    shown = redactor.scrub(f"{around}Authorization: Basic {encoded}{around}").lower()
    assert not any(run in shown for run in base64_fragments(data, len(prefix)))


def test_a_latin_1_password_is_masked_as_http_basic_sends_it() -> None:
    """requests encodes Basic credentials as Latin-1, not UTF-8."""
    secret = "user:pässwörd-ümlaut"
    encoded = base64.b64encode(secret.encode("latin-1")).decode("ascii")
    shown = Redactor([secret]).scrub(f"Basic {encoded}")
    # At most the last group's characters, which the padding's zero bits also decide, stay.
    assert shown.startswith(f"Basic {MASK}")
    assert len(shown) <= len(f"Basic {MASK}") + 3
