"""Held-out evaluation: per-action AUC of the ranker and recall@K of the two towers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from export.checkpoint import Checkpoint
from export.training.data import Impressions, TrainingData, favorite_pairs, ranker_batches
from export.training.metrics import recall_at_k, roc_auc
from phoenix.actions import ACTIONS, from_columns

#: The candidate tower's inputs, in `RetrievalModel.embed_posts` order.
_POST_INPUTS = ("post_hash", "author_hash", "sids")


@dataclass(frozen=True)
class EvalReport:
    auc: dict[str, float | None]  # per action; None where the held-out set has one class only
    positives: dict[str, int]  # held-out positives per action
    recall: dict[int, float | None]  # recall@K of held-out favorites over the whole corpus
    impressions: int
    viewers_with_favorites: int
    corpus_size: int


@torch.inference_mode()
def predict_actions(checkpoint: Checkpoint, data: TrainingData, imp: Impressions) -> np.ndarray:
    """[N, A] probabilities of the named actions for every impression, in the impressions'
    order."""
    probs = np.zeros((len(imp), len(ACTIONS)), dtype=np.float32)
    groups = imp.by_viewer()
    order = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    batch_rows = []
    for batch in ranker_batches(data, imp, viewers_per_batch=64, max_candidates=256):
        p = checkpoint.ranker(batch.inputs).probs
        batch_rows.append(from_columns(p[batch.mask].numpy()))
    if batch_rows:
        probs[order] = np.concatenate(batch_rows)
    return probs


@torch.inference_mode()
def retrieve(checkpoint: Checkpoint, data: TrainingData, viewers: np.ndarray, k: int) -> np.ndarray:
    """[Q, k] post ids, best first, by exact dot product over the whole corpus."""
    model = checkpoint.retrieval
    posts = torch.cat(
        [
            model.embed_posts(
                *(torch.from_numpy(data.corpus[k][i : i + 8192]) for k in _POST_INPUTS)
            )
            for i in range(0, len(data.corpus_post_ids), 8192)
        ]
    )
    out = []
    for i in range(0, len(viewers), 256):
        users = model.embed_users(data.history_inputs(viewers[i : i + 256]))
        top = torch.topk(users @ posts.T, k=min(k, len(posts)), dim=1).indices.numpy()
        out.append(data.corpus_post_ids[top])
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def evaluate(
    checkpoint: Checkpoint, data: TrainingData, ks: tuple[int, ...] = (10, 100)
) -> EvalReport:
    imp = data.test
    probs = predict_actions(checkpoint, data, imp)
    auc = {name: roc_auc(imp.labels[:, a], probs[:, a]) for a, name in enumerate(ACTIONS)}
    positives = {name: int(imp.labels[:, a].sum()) for a, name in enumerate(ACTIONS)}

    rows, viewers = favorite_pairs(imp)
    unique_viewers = np.unique(viewers)
    relevant = [set(imp.post_ids[rows[viewers == v]].tolist()) for v in unique_viewers]
    retrieved = retrieve(checkpoint, data, unique_viewers, max(ks)) if len(unique_viewers) else None
    recall = {
        k: (recall_at_k(retrieved[:, :k], relevant) if retrieved is not None else None) for k in ks
    }
    return EvalReport(
        auc, positives, recall, len(imp), len(unique_viewers), len(data.corpus_post_ids)
    )


def format_comparison(trained: EvalReport, untrained: EvalReport) -> str:
    """A Markdown table: each metric for the trained and the untrained model side by side."""

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    lines = [
        f"held-out impressions: {trained.impressions}, "
        f"viewers with held-out favorites: {trained.viewers_with_favorites}",
        "",
        "| metric | held-out positives | trained | untrained |",
        "|---|---:|---:|---:|",
    ]
    for name in ACTIONS:
        lines.append(
            f"| AUC {name} | {trained.positives[name]} | {fmt(trained.auc[name])} | "
            f"{fmt(untrained.auc[name])} |"
        )
    for k in trained.recall:
        lines.append(
            f"| retrieval recall@{k} of {trained.corpus_size} posts | - | "
            f"{fmt(trained.recall[k])} | {fmt(untrained.recall[k])} |"
        )
    return "\n".join(lines)
