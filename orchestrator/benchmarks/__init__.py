"""Benchmarks of the orchestrator's own pieces, without PyTorch or Triton."""
