"""The base: settings and the vocabulary every floor shares (durations, defaults, the
clock, scrubbing, scopes, logging, TikTok's outcomes, what an event is, the version). It
imports nothing of tokenrefresh above it. `tokenrefresh.errors` sits on this floor too,
kept at the top of the package because users import it there.
"""
