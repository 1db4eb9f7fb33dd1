"""Locustfiles that `phoenix loadtest` runs (one per target)."""
