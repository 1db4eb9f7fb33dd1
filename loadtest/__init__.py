"""Locust scenarios that drive the orchestrator and Triton (built in a later issue)."""
