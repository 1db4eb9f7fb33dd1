"""Fixtures of the orchestrator's tests: the service on a fake Triton (`server`, `service`,
`world_dir`; a test module may define its own of the same name instead)."""

from tests.fakes.service import server, service, world_dir  # noqa: F401
