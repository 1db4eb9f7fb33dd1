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

#: Candidate counts the orchestrator pads a ranker request up to, and the shapes the `pytorch`
#: target captures CUDA graphs for: a few shapes keep both the batcher and the graphs effective.
CANDIDATE_BUCKETS: tuple[int, ...] = (16, 64, 128, 256, 512, 1024)

#: Environment variable read by the Python-backend models: intra-op threads of their runtime
#: (ONNX Runtime for `cpu`, PyTorch on the CPU for `pytorch`; 0 or unset: one per core).
ORT_THREADS_ENV = "PHOENIX_ORT_THREADS"
