"""What an event is, shared by the floors that record it (`storage/outbox.py`), check its
configuration (`settings.py`) and deliver it (`services/events/`): its types and records
(`records.py`), its JSON body (`payload.py`), the URL and secret shapes (`checks.py`)."""
