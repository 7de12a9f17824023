"""matcher: pure, no I/O — the job/config.yaml model and its strict, bounded loading, JSONPath, the
image policy, and which actions run for an event with every task rendered (a record of why).
Rule: a stage; nothing here touches the network, the disk or the clock."""
