"""The project's models against X's own outputs (golden files made by running X's code; see
tests/data/x_reference/README.md and docs/FIDELITY.md).

Nothing here depends on the shapes of these files: the geometry is read from the checkpoint and
the golden inputs, as `phoenix import` reads it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from export.importer.x_batch import ranker_inputs_from_x
from export.importer.x_checkpoint import read_x_checkpoint
from export.importer.x_import import build_ranker, build_retrieval, golden_table_blocks
from export.importer.x_params import (
    ATTN,
    HEADS,
    ranker_config_from_params,
    retrieval_config_from_params,
)
from export.importer.x_presets import find_preset
from export.models.precision import cast_for_inference

DATA = Path(__file__).resolve().parents[1] / "data" / "x_reference"
CKPT = DATA / "orbax_ckpt"
RANKER_FILES = sorted(DATA.glob("ranker_golden_*.npz"))
TOWER_FILES = sorted(DATA.glob("two_tower_golden_*.npz"))
F32_TOL = 1e-4
BF16_TOL = 0.25


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def x_params() -> dict[str, np.ndarray]:
    ckpt = read_x_checkpoint(CKPT)
    return {**ckpt.params, "emb_table": ckpt.emb_table}


def _ranker(params, golden_path: Path):  # type: ignore[no-untyped-def]
    golden = _load(golden_path)
    preset = find_preset("home_direct_packed_nano")
    config = ranker_config_from_params(
        params,
        name="golden",
        key_size=preset.key_size,
        history_len=golden["input/history_seq/post_hashes"].shape[1],
        table_blocks=golden_table_blocks([golden_path]),
        sid_levels=preset.sid_levels,
    )
    return build_ranker(params, config), golden


def _valid(a: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.concatenate([a[i, :c].ravel() for i, c in enumerate(counts)])


@pytest.mark.parametrize("path", RANKER_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("variant", ["train_f32", "serve_f32", "train_bf16", "serve_bf16"])
def test_ranker_matches_x(x_params, path: Path, variant: str) -> None:
    ranker, golden = _ranker(x_params, path)
    inputs = ranker_inputs_from_x(golden)
    bf16 = variant.endswith("bf16")
    model = cast_for_inference(copy.deepcopy(ranker), torch.bfloat16) if bf16 else ranker
    with torch.no_grad():
        out = model(inputs, x_serving_kernel=variant.startswith("serve"))
    counts = golden["meta/cand_len"]
    logits = _valid(out.logits.float().numpy(), counts)
    cont = _valid(out.continuous.float().numpy(), counts)
    x_logits = _valid(golden[f"output/{variant}/logits_cand"], counts)
    x_cont = _valid(golden[f"output/{variant}/continuous_cand"], counts)
    if bf16:
        assert np.abs(logits - x_logits).max() < BF16_TOL
        assert np.abs(cont - x_cont).max() < BF16_TOL
    else:
        assert np.abs(logits - x_logits).max() < F32_TOL
        assert np.abs(cont - x_cont).max() < F32_TOL * max(1.0, np.abs(x_cont).max())
        # What X serves: log sigmoid of the logits.
        x_log_probs = _valid(golden[f"output/{variant}/serving_log_probs_cand"], counts)
        log_probs = _valid(out.log_probs.numpy(), counts)
        assert np.abs(log_probs - x_log_probs).max() < F32_TOL


@pytest.mark.parametrize("path", RANKER_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("serving_kernel", [False, True])
def test_one_pass_equals_full_mask_on_x_inputs(x_params, path: Path, serving_kernel) -> None:
    ranker, golden = _ranker(x_params, path)
    inputs = ranker_inputs_from_x(golden)
    with torch.no_grad():
        fast = ranker(inputs, x_serving_kernel=serving_kernel)
        reference = ranker.forward_reference(inputs, x_serving_kernel=serving_kernel)
    torch.testing.assert_close(fast.logits, reference.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.continuous, reference.continuous, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("path", RANKER_FILES, ids=lambda p: p.stem)
def test_serving_kernel_difference_is_xs(x_params, path: Path) -> None:
    """X's serving kernel reads padded history: on padded rows it departs from the training
    kernel by as much as X's own two kernels differ, and not at all on full histories."""
    ranker, golden = _ranker(x_params, path)
    inputs = ranker_inputs_from_x(golden)
    with torch.no_grad():
        ours = (ranker(inputs, x_serving_kernel=True).logits - ranker(inputs).logits).numpy()
    theirs = golden["output/serve_f32/logits_cand"] - golden["output/train_f32/logits_cand"]
    counts = golden["meta/cand_len"]
    np.testing.assert_allclose(_valid(ours, counts), _valid(theirs, counts), atol=2 * F32_TOL)
    full = golden["meta/hist_len"] == golden["input/history_seq/post_hashes"].shape[1]
    for row, is_full in enumerate(full):
        spread = np.abs(ours[row, : counts[row]]).max()
        assert (spread < 1e-5) if is_full else (spread > 0.1)


def test_imported_parameters_are_bit_exact(x_params) -> None:
    ranker, _ = _ranker(x_params, RANKER_FILES[0])
    state = ranker.state_dict()
    assert torch.equal(state["embed.table.weight"], torch.from_numpy(x_params["emb_table"]))
    assert torch.equal(
        state["unembed.weight"], torch.from_numpy(x_params[HEADS + "unembeddings"]).T
    )
    qkv = x_params[ATTN + "qkv/w"]
    layers, d, _ = qkv.shape
    config = ranker.config
    g = config.num_q_heads // config.num_kv_heads
    fused = qkv.reshape(layers, d, config.num_kv_heads, g + 2, config.key_size)
    for layer in range(layers):
        k = fused[layer, :, :, g].reshape(d, -1).T
        assert torch.equal(state[f"trunk.blocks.{layer}.attn.k_proj.weight"], torch.from_numpy(k))
        q_head_1 = fused[layer, :, 0, 1]  # kv group 0, second query head -> query head 1
        q = state[f"trunk.blocks.{layer}.attn.q_proj.weight"]
        ks = config.key_size
        assert torch.equal(q[ks : 2 * ks], torch.from_numpy(q_head_1.T.copy()))
    for path in RANKER_FILES:
        golden = _load(path)
        for key in [k for k in golden if k.startswith("param/")]:
            assert np.array_equal(golden[key], x_params[key.removeprefix("param/")])


def _towers(path: Path):  # type: ignore[no-untyped-def]
    golden = _load(path)
    params = {k.removeprefix("param/"): v for k, v in golden.items() if k.startswith("param/")}
    params["emb_table"] = golden["emb_table"]
    preset = find_preset("xrecsys_two_tower_nano")
    authors = golden_table_blocks([path])[2]
    post_rows = golden["input/history_seq/post_hashes"].max() - 64  # rows posts hash into
    config = retrieval_config_from_params(
        params,
        name="golden",
        key_size=preset.key_size,
        history_len=golden["input/history_seq/post_hashes"].shape[1],
        table_blocks=(0, 0, authors, 0),
        post_hash_rows=max(int(post_rows), 2),
        sid_levels=preset.sid_levels,
    )
    return build_retrieval(params, config), golden


def _tower_outputs(towers, golden, **kwargs):  # type: ignore[no-untyped-def]
    inputs = ranker_inputs_from_x(golden)
    c = inputs.candidates
    b, n = c.candidate_post_hash.shape[:2]
    with torch.no_grad():
        user = towers.embed_users(inputs.history, **kwargs)
        posts = towers.embed_posts(
            c.candidate_post_hash.reshape(b * n, 2),
            c.candidate_author_hash.reshape(b * n, 2),
            c.candidate_sids.reshape(b * n, -1),
        ).reshape(b, n, -1)
    return user.numpy(), posts.numpy()


@pytest.mark.parametrize("path", TOWER_FILES, ids=lambda p: p.stem)
def test_two_tower_matches_x(path: Path) -> None:
    towers, golden = _towers(path)
    user, posts = _tower_outputs(towers, golden, x_user_tower_attention=False)
    np.testing.assert_allclose(user, golden["output/f32/user_embedding"], atol=1e-5)
    np.testing.assert_allclose(posts, golden["output/f32/candidate_embedding"], atol=1e-5)
    np.testing.assert_allclose(posts, golden["output/f32/candidate_tower_from_lookups"], atol=1e-5)
    scores = np.einsum("bd,bnd->bn", user, posts)
    np.testing.assert_allclose(scores, golden["output/f32/scores_f32"], atol=1e-5)
    bf16 = cast_for_inference(copy.deepcopy(towers), torch.bfloat16)
    user16, posts16 = _tower_outputs(bf16, golden, x_user_tower_attention=False)
    assert np.abs(user16 - golden["output/bf16/user_embedding"]).max() < 2e-2
    assert np.abs(posts16 - golden["output/bf16/candidate_embedding"]).max() < 2e-2


@pytest.mark.parametrize("path", TOWER_FILES, ids=lambda p: p.stem)
def test_user_tower_attention_works_as_intended(path: Path) -> None:
    """X's unpacked user tower ignores the order of the history (its attention adds nothing);
    the project's attends, so reversing the valid history moves the embedding."""
    towers, golden = _towers(path)
    intended, _ = _tower_outputs(towers, golden)
    assert np.abs(intended - golden["output/f32/user_embedding"]).max() > 1e-3
    flipped = dict(golden)
    counts = golden["meta/hist_len"]
    for key in [k for k in golden if k.startswith("input/history_seq/")]:
        arr = golden[key].copy()
        for row, n in enumerate(counts):
            arr[row, :n] = arr[row, :n][::-1]
        flipped[key] = arr
    x_like, _ = _tower_outputs(towers, flipped, x_user_tower_attention=False)
    attending, _ = _tower_outputs(towers, flipped)
    long_rows = counts > 1
    assert np.abs(x_like - golden["output/f32/user_embedding"])[long_rows].max() < 1e-5
    assert np.abs(attending - intended)[long_rows].max() > 1e-4
