"""A stand-in for TikTok's OAuth endpoints on 127.0.0.1, to try tokenrefresh without a
TikTok app (README, "Try it locally"). It is the loopback server of the tests
(tests/standin.py), standard library only.

    python examples/standin.py PORT [ACCOUNTS.jsonl] [--state FILE]

Every account of the file is known with the tokens the file gives, so they refresh, and
rotate, as TikTok's would. An account whose open_id starts with `rejected-` has been
revoked: TikTok answers `invalid_grant` for it. The app's credentials are
`demo-client-key` and `demo-client-secret`. Its consent page,
http://127.0.0.1:PORT/v2/auth/authorize/ (TIKTOK_AUTHORIZE_URL), says yes at once for
the user `demo-new-creator` (or the `open_id=` added to the URL): a redirect to the
redirect URI with a code. With --state, the tokens it issued are kept in FILE (0600),
written after every call, and known again when it starts with the same FILE: accounts of
the file already in it keep their rotated tokens. Stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from standin import TikTokStandIn
from standin_state import StateUnreadable, load_state, save_state

CLIENT_KEY = "demo-client-key"
CLIENT_SECRET = "demo-client-secret"  # noqa: S105 - the stand-in's own demo value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="standin.py", description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("accounts", type=Path, nargs="?")
    parser.add_argument("--state", type=Path, metavar="FILE", help="keep the tokens in FILE")
    args = parser.parse_args(argv[1:])
    standin = TikTokStandIn(client_key=CLIENT_KEY, client_secret=CLIENT_SECRET, port=args.port)
    try:
        kept = load_state(args.state) if args.state else None
    except StateUnreadable as error:
        print(f"standin.py: {error}; remove it to start afresh", file=sys.stderr)
        return 1
    if kept is not None:
        standin.restore(kept)
    lines = args.accounts.read_text(encoding="utf-8").splitlines() if args.accounts else []
    accounts = [json.loads(line) for line in lines if line.strip()]
    for account in accounts:
        if kept is not None and account["open_id"] in kept["newest"]:
            continue  # known already, with the tokens it has now
        standin.register(
            account["open_id"],
            access_token=account["access_token"],
            refresh_token=account["refresh_token"],
            scope=account.get("scope"),
        )
        if account["open_id"].startswith("rejected-"):
            standin.revoke(account["open_id"])
    if args.state:
        save_state(args.state, standin.snapshot())
        standin.on_change = lambda snapshot: save_state(args.state, snapshot)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with standin:
        print(f"TikTok stand-in on {standin.base_url} ({len(accounts)} accounts)", flush=True)
        if args.state:
            restored = "tokens restored from" if kept is not None else "a new state in"
            print(f"Its tokens are kept in {args.state} ({restored} it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
