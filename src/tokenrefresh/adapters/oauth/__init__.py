"""Any provider's OAuth endpoints, as its profile (`base/providers`) describes them.

- `reading.py`: what every answer is read into first (`Answer`: the body as JSON, its
  tokens, log_id, Retry-After);
- `answer.py`: the pure interpretation of a token answer, by the profile's names, envelope,
  expiry units and error codes.

The TikTok client (`adapters/tiktok`) reads TikTok's answers through `answer.py` with the
`tiktok` profile.
"""
