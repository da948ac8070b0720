"""Events: what changed for an account or a run, recorded in an outbox in the same
transaction as the change, then delivered (signed webhooks, human digests) at least once."""
