"""The serving contract that the exporter writes and the orchestrator reads, without PyTorch: the
Triton model names and the config.pbtxt parameters that describe a served model."""

from __future__ import annotations

RANKER = "phoenix_ranker"
USER_TOWER = "phoenix_user_tower"
CANDIDATE_TOWER = "phoenix_candidate_tower"
#: The Triton model names, in the order the request path calls them last to first.
MODEL_NAMES: tuple[str, ...] = (RANKER, USER_TOWER, CANDIDATE_TOWER)

#: config.pbtxt string parameter holding the served model's `ModelConfig` as JSON: clients hash
#: ids and size histories from it, so their features always match the served model.
MODEL_CONFIG_PARAMETER = "phoenix_model_config"
#: config.pbtxt string parameter: the most candidates one ranker request may carry.
MAX_CANDIDATES_PARAMETER = "max_candidates"

#: config.pbtxt string parameter: the candidate counts (comma-separated, ascending) a ranker
#: request is padded up to; written by the exporter for its target, read by the orchestrator.
CANDIDATE_BUCKETS_PARAMETER = "candidate_buckets"

#: The GPU targets' candidate buckets, and the shapes the `pytorch` target captures CUDA graphs
#: for: a few shapes keep both Triton's dynamic batcher and the graphs effective. Also what a
#: client assumes of a ranker exported before the parameter existed.
CANDIDATE_BUCKETS: tuple[int, ...] = (16, 64, 128, 256, 512, 1024)

#: The CPU targets pad only to a multiple of this: on a CPU the ranker's cost grows with the
#: padded count and batching two viewers' requests saves almost nothing, so the coarse GPU
#: buckets would waste a quarter of the ranker's time (measured on the demo world: padded rows
#: 26% of real ones with the GPU buckets, under 5% with steps of 64; docs/BENCHMARKS.md).
CPU_CANDIDATE_STEP = 64


def gpu_candidate_buckets(max_candidates: int) -> tuple[int, ...]:
    """`CANDIDATE_BUCKETS` below `max_candidates`, then the limit itself."""
    return (*(b for b in CANDIDATE_BUCKETS if b < max_candidates), max_candidates)


def cpu_candidate_buckets(max_candidates: int) -> tuple[int, ...]:
    """Every multiple of `CPU_CANDIDATE_STEP` below `max_candidates`, then the limit itself."""
    steps = range(CPU_CANDIDATE_STEP, max_candidates, CPU_CANDIDATE_STEP)
    return (*steps, max_candidates)


def format_buckets(buckets: tuple[int, ...]) -> str:
    """The `CANDIDATE_BUCKETS_PARAMETER` value of `buckets`."""
    return ",".join(str(b) for b in buckets)


def parse_buckets(value: str) -> tuple[int, ...]:
    """The buckets of a `CANDIDATE_BUCKETS_PARAMETER` value; ValueError unless it lists positive
    integers in ascending order."""
    buckets = tuple(int(part) for part in value.split(","))
    if not buckets or any(b < 1 for b in buckets) or list(buckets) != sorted(set(buckets)):
        raise ValueError(
            f"{CANDIDATE_BUCKETS_PARAMETER} must list positive counts in ascending "
            f"order, got {value!r}"
        )
    return buckets


#: Environment variable read by the Python-backend models: intra-op threads of their runtime
#: (ONNX Runtime for `cpu`, PyTorch on the CPU for `pytorch`; 0 or unset: one per core).
ORT_THREADS_ENV = "PHOENIX_ORT_THREADS"
