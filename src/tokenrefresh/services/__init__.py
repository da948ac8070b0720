"""Services: what tokenrefresh does, each called by a face (`cli/`, `api.py`) with its
adapters already built: the refresh (`refresh/`), on-demand tokens, accounts and imports,
connect and revoke, keys, cleanup, status and health, pings and metrics, the cron jobs,
the schema commands, and event delivery (`events/`). They import adapters, storage and
base, never a face.
"""
