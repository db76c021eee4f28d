"""API keys, the safe-by-default start-up check, and per-request access decisions."""
