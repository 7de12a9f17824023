"""util: small helpers every layer may use (atomic files, whole characters, retries, log format,
parsing values written as text).
Rule: imports only :mod:`jes.errors` and the standard library (and what the helper wraps)."""
