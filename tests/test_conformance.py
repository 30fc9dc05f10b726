"""Conformance with the reference scPRINT implementation on official-format checkpoints.

``tests/data/checkpoints/<layout>.ckpt`` are random-weight models written by the reference package
(``scripts/conformance/make_fixtures.py``) in the official Lightning format, and
``<layout>_reference.npz`` holds the reference's outputs on fixed inputs (``<layout>_inputs.json``).
sc_print must reproduce them in float32 on the CPU. The ``reference`` test regenerates the fixtures
with a live reference environment (``SC_PRINT_REFERENCE_PYTHON``) and runs the same comparisons.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from sc_print.hub import OfficialCheckpoint, read_official_checkpoint

if TYPE_CHECKING:
    from sc_print.nn import ScPrintNet

FIXTURES = Path(__file__).parent / "data" / "checkpoints"
LAYOUTS = ("paper", "v1head", "v2")
REPO = Path(__file__).resolve().parents[1]

ATOL = 1e-5
RTOL = 1e-6  # float32 round-off on values of order 10-100 (decoded means)


def _batch(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.tensor(batch["counts"], dtype=torch.float32)
    idx = torch.tensor(batch["gene_idx"], dtype=torch.long).expand(x.shape[0], -1)
    return idx, x, torch.tensor(batch["depth"], dtype=torch.float32)


def mean_qk_network(net: ScPrintNet, batches: list[dict]) -> dict[str, np.ndarray]:
    """GNInfer's network: per-slot mean Q and K over cells, softmax(QK^T/sqrt(hd)) per layer-head, mean.

    Slots are the cell tokens (in ``net.token_names`` order) then every gene seen, in vocabulary order.
    """
    n_tok, n_genes = net.n_cell_tokens, net.n_genes
    cfg = net.config
    hd = cfg.d_model // cfg.nhead
    sums = torch.zeros(cfg.nlayers, n_tok + n_genes, 2, cfg.nhead, hd, dtype=torch.float64)
    counts = torch.zeros(n_tok + n_genes, dtype=torch.float64)
    for batch in batches:
        idx, x, depth = _batch(batch)
        slots = torch.cat([torch.arange(n_tok).expand(idx.shape[0], -1), idx + n_tok], dim=1)

        def hook(layer: int, q: torch.Tensor, k: torch.Tensor, slots: torch.Tensor = slots) -> None:
            flat = slots.reshape(-1)
            sums[layer, :, 0].index_add_(0, flat, q.reshape(flat.numel(), *q.shape[2:]).double())
            sums[layer, :, 1].index_add_(0, flat, k.reshape(flat.numel(), *k.shape[2:]).double())

        with torch.no_grad():
            net(idx, x, depth, qk_hook=hook, decode=False, classify=False)
        counts.index_add_(0, slots.reshape(-1), torch.ones(slots.numel(), dtype=torch.float64))
    seen = torch.nonzero(counts > 0).squeeze(1)
    mean = sums[:, seen] / counts[seen].view(1, -1, 1, 1, 1)
    q = mean[:, :, 0].permute(0, 2, 1, 3).reshape(-1, len(seen), hd)  # [L*H, N, hd], layer-major
    k = mean[:, :, 1].permute(0, 2, 1, 3).reshape(-1, len(seen), hd)
    heads = torch.softmax(q @ k.transpose(1, 2) / hd**0.5, dim=-1)
    full = heads.mean(0)
    return {
        "grn_full": full.numpy(),
        "grn": full[n_tok:, n_tok:].numpy(),
        "grn_heads": heads.numpy(),
        "grn_gene_idx": (seen[seen >= n_tok] - n_tok).numpy(),
        "grn_cell_count": counts[seen].numpy(),
    }


def sc_print_outputs(ck: OfficialCheckpoint, meta: dict) -> dict[str, np.ndarray]:
    """Everything the reference recorded, computed with sc_print, in the reference's layout."""
    net = ck.net
    idx, x, depth = _batch(meta["batches"]["a"])
    m = float(meta["denoise_depth_mult"])
    with torch.no_grad():
        out = net(idx, x, depth)
        den = net(idx, x, depth, depth_mult=x.sum(1) * m, req_depth=depth * m)
    # reference token names (official class names) -> our positions
    ours = {name: i for i, name in enumerate(net.token_names)}
    official_to_key = {col: key for key, col in ck.label_columns.items()}
    perm = [ours[official_to_key.get(name, name)] for name in meta["reference_token_names"]]
    res = {
        "mu": out.mu.numpy(),
        "theta": out.theta.numpy(),
        "pi_logits": out.pi_logits.numpy(),
        "denoise/mu": den.mu.numpy(),
        "denoise/theta": den.theta.numpy(),
        "denoise/pi_logits": den.pi_logits.numpy(),
        "cell_tokens": out.cell_tokens[:, perm].numpy(),
        "gene_out": out.gene_out.numpy(),
        "embedding": net.embed(out.cell_tokens).numpy(),
        "pred_class": np.stack([out.cls_logits[k].argmax(1).numpy() for k in ck.config.labels], axis=1),
    }
    for key, col in ck.label_columns.items():
        res[f"logits/{col}"] = out.cls_logits[key].numpy()
    grn = mean_qk_network(net, [meta["batches"]["a"], meta["batches"]["b"]])
    full_perm = np.r_[perm, np.arange(len(perm), grn["grn_full"].shape[0])]
    grn["grn_full"] = grn["grn_full"][np.ix_(full_perm, full_perm)]
    grn["grn_heads"] = grn["grn_heads"][:, full_perm][:, :, full_perm]
    grn["grn_cell_count"] = grn["grn_cell_count"][full_perm]
    res.update(grn)
    return res


def compare(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """Max abs difference per output; asserts every output matches."""
    assert set(ref) <= set(ours), sorted(set(ref) - set(ours))
    diffs = {}
    for name in sorted(ref):
        a, b = np.asarray(ours[name]), np.asarray(ref[name])
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if np.issubdtype(b.dtype, np.integer):
            np.testing.assert_array_equal(a, b, err_msg=name)
            diffs[name] = 0.0
            continue
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=name)
        diffs[name] = float(np.abs(a.astype(np.float64) - b).max())
    return diffs


def _load_fixture(folder: Path, layout: str) -> tuple[OfficialCheckpoint, dict, dict[str, np.ndarray]]:
    ck = read_official_checkpoint(folder / f"{layout}.ckpt")
    meta = json.loads((folder / f"{layout}_inputs.json").read_text())
    with np.load(folder / f"{layout}_reference.npz") as z:
        ref = {k: z[k] for k in z.files}
    return ck, meta, ref


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fixture_reproduces_reference(layout: str) -> None:
    ck, meta, ref = _load_fixture(FIXTURES, layout)
    assert ck.generation == meta["generation"]
    ours = sc_print_outputs(ck, meta)
    compare(ours, ref)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fixture_metadata(layout: str) -> None:
    ck, meta, _ = _load_fixture(FIXTURES, layout)
    assert len(ck.genes) == meta["vocabulary_size"]
    assert [ck.genes[i] for i in meta["batches"]["a"]["gene_idx"]] == meta["genes_of_batch_a"]
    assert list(ck.label_columns.values()) == meta["classes"]
    assert ck.config.pred_embedding == [k for k, c in ck.label_columns.items() if c in meta["pred_embedding"]]
    cell_type = ck.hierarchies["cell_type"]
    assert cell_type.leaves[0] == "CL:0000236"
    assert "CL:0000084" in cell_type.parents  # T cell, parent of the CD4/CD8 leaves
    assert sorted(cell_type.descendants("CL:0000084")) == ["CL:0000624", "CL:0000625"]
    spec = meta["spec"]
    assert ck.config.depth_atinput == spec["depth_atinput"]
    assert ck.config.normalization == spec["normalization"]
    assert (ck.config.num_heads_kv or ck.config.nhead) == (spec["num_heads_kv"] or spec["nhead"])


def test_token_order_follows_generation() -> None:
    paper = read_official_checkpoint(FIXTURES / "paper.ckpt", compute_sha256=False)
    head = read_official_checkpoint(FIXTURES / "v1head.ckpt", compute_sha256=False)
    v2 = read_official_checkpoint(FIXTURES / "v2.ckpt", compute_sha256=False)
    assert paper.token_names[:2] == ["cell", "depth"]
    assert head.token_names[:2] == ["depth", "cell"]
    assert v2.token_names[0] == "cell"
    assert "depth" not in v2.token_names


def test_to_model_keeps_the_weights() -> None:
    ck = read_official_checkpoint(FIXTURES / "v2.ckpt")
    model = ck.to_model(name="fixture")
    assert model.metadata_["name"] == "fixture"
    assert model.metadata_["sha256"] == ck.sha256
    assert model.genes == ck.genes
    ours, theirs = model.module.net.state_dict(), ck.net.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.reference
def test_live_reference(tmp_path: Path) -> None:
    """Regenerate the fixtures with the reference package itself and compare every output."""
    python = os.environ["SC_PRINT_REFERENCE_PYTHON"]
    script = REPO / "scripts" / "conformance" / "make_fixtures.py"
    proc = subprocess.run(
        [python, str(script), "--out", str(tmp_path)], capture_output=True, text=True, check=False, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for layout in LAYOUTS:
        ck, meta, ref = _load_fixture(tmp_path, layout)
        diffs = compare(sc_print_outputs(ck, meta), ref)
        sys.stdout.write(f"{layout}: " + ", ".join(f"{k}={v:.1e}" for k, v in diffs.items()) + "\n")
