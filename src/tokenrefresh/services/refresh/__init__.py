"""The refresh service: what the cron run and (later) on-demand callers share.

- `plan.py`: which accounts a run takes, and the dry run (no client, no lock);
- `run.py`: the run itself: lock, dispatch to workers, time budget, signals;
- `account.py`: refreshing one claimed account: call, classify, store, record;
- `report.py`: the results, as plain data; `observers.py`: progress and start hooks;
- `control.py`, `pacing.py`: when a run stops, and how fast it calls TikTok.
"""
