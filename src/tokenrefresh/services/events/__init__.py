"""Events: what changed for an account or a run, recorded in an outbox in the same
transaction as the change, then delivered (signed webhooks, human digests) at least once.

Here is the delivery; what an event is (types, body, URL and secret checks) is in
`tokenrefresh.base.events`, shared with the storage that records it."""
