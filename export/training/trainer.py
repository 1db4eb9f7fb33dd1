"""Training the ranker and the retrieval towers on CPU or GPU.

- ranker: binary cross-entropy on the action columns the world labels (the named actions' X
  columns, `phoenix.actions.COLUMN_OF`; X's other columns get no gradient) plus a dwell-time
  regression on continuous column 1, which the model already outputs in seconds (squared error
  in units of 30 s); one forward per batch of viewers scoring all of each viewer's sampled
  impressions at once (the one-pass form trains as it serves);
- towers: in-batch softmax with a temperature, favorites as positives, other rows of the batch as
  negatives (same-viewer and same-post pairs masked out so they are not false negatives).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from export.checkpoint import Checkpoint
from export.models import PhoenixRanker, RetrievalModel
from export.training.data import RankerBatch, TrainingData, favorite_pairs, ranker_batches
from phoenix.actions import COLUMN_OF, DWELL_TIME_SCALE_S

log = logging.getLogger(__name__)


class TrainSettings(BaseModel):
    """Optimisation settings; saved in the checkpoint's metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ranker_steps: int = Field(default=600, ge=0, description="Ranker optimisation steps.")
    retrieval_steps: int = Field(default=200, ge=0, description="Two-tower optimisation steps.")
    max_seconds: float | None = Field(
        default=None, gt=0, description="Wall-clock budget for both stages, split by step counts."
    )
    viewers_per_batch: int = Field(default=32, ge=1)
    candidates_per_viewer: int = Field(default=32, ge=1)
    retrieval_batch: int = Field(default=128, ge=2)
    learning_rate: float = Field(default=1e-2, gt=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    temperature: float = Field(default=0.05, gt=0, description="In-batch softmax temperature.")
    dwell_loss_weight: float = Field(default=1.0, ge=0)
    seed: int = 0


@dataclass(frozen=True)
class StageResult:
    steps: int
    seconds: float
    final_loss: float | None


def train(
    data: TrainingData, settings: TrainSettings, *, progress: bool = True
) -> tuple[Checkpoint, dict[str, StageResult]]:
    """Train both models from a fresh initialisation; returns the checkpoint and a summary."""
    checkpoint = Checkpoint.initialise(data.config, seed=settings.seed)
    total_steps = max(settings.ranker_steps + settings.retrieval_steps, 1)
    budget = settings.max_seconds

    def share(steps: int) -> float | None:
        return None if budget is None else budget * steps / total_steps

    rng = np.random.default_rng(settings.seed)
    results = {
        "ranker": _train_ranker(
            checkpoint.ranker, data, settings, rng, share(settings.ranker_steps), progress
        ),
        "retrieval": _train_retrieval(
            checkpoint.retrieval, data, settings, rng, share(settings.retrieval_steps), progress
        ),
    }
    checkpoint.ranker.eval()
    checkpoint.retrieval.eval()
    return checkpoint, results


#: The labelled columns of the ranker's logits, in `phoenix.actions.ACTIONS` order.
_LABELLED_COLUMNS = torch.tensor(COLUMN_OF)


def ranker_loss(model: PhoenixRanker, batch: RankerBatch, dwell_weight: float) -> torch.Tensor:
    out = model(batch.inputs)
    mask = batch.mask.float()  # [B, C]
    logits = out.logits[..., _LABELLED_COLUMNS].float()  # [B, C, A] named
    bce = F.binary_cross_entropy_with_logits(logits, batch.labels, reduction="none")
    action_loss = (bce.mean(-1) * mask).sum() / mask.sum()
    dwell_error = (out.dwell_time - batch.dwell_s) / DWELL_TIME_SCALE_S  # seconds, in 30 s units
    dwell_loss = (dwell_error**2 * mask).sum() / mask.sum()
    return action_loss + dwell_weight * dwell_loss


def _train_ranker(
    model: PhoenixRanker,
    data: TrainingData,
    settings: TrainSettings,
    rng: np.random.Generator,
    seconds: float | None,
    progress: bool,
) -> StageResult:
    if settings.ranker_steps == 0 or len(data.train) == 0:
        return StageResult(0, 0.0, None)

    def batches():  # endless shuffled epochs
        while True:
            yield from ranker_batches(
                data, data.train, settings.viewers_per_batch, settings.candidates_per_viewer, rng
            )

    stream = batches()
    return _optimise(
        model,
        "ranker",
        settings.ranker_steps,
        seconds,
        settings,
        progress,
        lambda: ranker_loss(model, next(stream), settings.dwell_loss_weight),
    )


def _train_retrieval(
    model: RetrievalModel,
    data: TrainingData,
    settings: TrainSettings,
    rng: np.random.Generator,
    seconds: float | None,
    progress: bool,
) -> StageResult:
    rows, viewers = favorite_pairs(data.train)
    if settings.retrieval_steps == 0 or len(rows) < 2:
        return StageResult(0, 0.0, None)
    cand = data.train.candidates
    post_ids = data.train.post_ids

    def step_loss() -> torch.Tensor:
        pick = rng.choice(len(rows), size=min(settings.retrieval_batch, len(rows)), replace=False)
        r, v = rows[pick], viewers[pick]
        users = model.embed_users(data.history_inputs(v))  # [N, D]
        posts = model.embed_posts(
            torch.from_numpy(cand["candidate_post_hash"][r]),
            torch.from_numpy(cand["candidate_author_hash"][r]),
            torch.from_numpy(cand["candidate_sids"][r]),
        )  # [N, D]
        logits = users @ posts.T / settings.temperature  # [N, N]
        # Another row with the same viewer or the same post is not a negative.
        same = torch.from_numpy(
            (v[:, None] == v[None, :]) | (post_ids[r][:, None] == post_ids[r][None, :])
        )
        logits = logits.masked_fill(same & ~torch.eye(len(r), dtype=torch.bool), -1e9)
        return F.cross_entropy(logits, torch.arange(len(r)))

    return _optimise(
        model, "retrieval", settings.retrieval_steps, seconds, settings, progress, step_loss
    )


def _optimise(model, name, steps, seconds, settings, progress, loss_fn) -> StageResult:  # type: ignore[no-untyped-def]
    """AdamW with linear warm-up and cosine decay; stops at `steps` or after `seconds`."""
    model.train()
    opt = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(i, steps) / steps)),
    )
    start = time.perf_counter()
    ema: float | None = None
    done = 0
    # disable=None: a live bar on a terminal, none in CI logs (the summary line is logged).
    bar = tqdm(total=steps, desc=f"train {name}", unit="step", disable=None if progress else True)
    log_every = max(1, steps // 10)
    with bar:
        for step in range(1, steps + 1):
            done = step
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            value = float(loss.detach())
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            bar.update()
            bar.set_postfix(loss=f"{ema:.4f}")
            if bar.disable and step % log_every == 0:  # no live bar: a line per tenth instead
                log.info("%s: step %d/%d, loss %.4f", name, step, steps, ema)
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
    elapsed = time.perf_counter() - start
    log.info("%s: %d steps in %.1f s, loss %.4f", name, done, elapsed, ema or float("nan"))
    return StageResult(done, elapsed, ema)
