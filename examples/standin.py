"""A stand-in for TikTok's OAuth endpoints on 127.0.0.1, to try tokenrefresh without a
TikTok app (README, "Try it locally"). It is the loopback server of the tests
(tests/standin.py), standard library only.

    python examples/standin.py PORT [ACCOUNTS.jsonl]

Every account of the file is known with the tokens the file gives, so they refresh, and
rotate, as TikTok's would. An account whose open_id starts with `rejected-` has been
revoked: TikTok answers `invalid_grant` for it. The app's credentials are
`demo-client-key` and `demo-client-secret`. Stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from standin import TikTokStandIn

CLIENT_KEY = "demo-client-key"
CLIENT_SECRET = "demo-client-secret"  # noqa: S105 - the stand-in's own demo value


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or not argv[1].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    standin = TikTokStandIn(client_key=CLIENT_KEY, client_secret=CLIENT_SECRET, port=int(argv[1]))
    lines = Path(argv[2]).read_text(encoding="utf-8").splitlines() if len(argv) == 3 else []
    for line in filter(str.strip, lines):
        account = json.loads(line)
        standin.register(
            account["open_id"],
            access_token=account["access_token"],
            refresh_token=account["refresh_token"],
            scope=account.get("scope"),
        )
        if account["open_id"].startswith("rejected-"):
            standin.revoke(account["open_id"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with standin:
        print(f"TikTok stand-in on {standin.base_url} ({len(lines)} accounts)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
