"""Outbound HTTP, bounded: the one place tokenrefresh opens a requests session.

- `call.py`: `BoundedClient.post`, one bounded call (total deadline, capped and bomb-safe
  body, no redirects, no retries, the proxy and `.netrc` policy written there);
- `deadline.py`: the watchdog that ends a call at its deadline, however the bytes arrive;
- `body.py`: reading an answer's body within its cap, and decoding it no further.

TikTok (`adapters/tiktok/client.py`), webhooks (`services/events/webhook.py`) and pings
(`services/monitoring.py`) use it; nothing is imported here, so that importing a submodule
stays cheap.
"""
