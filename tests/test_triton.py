"""Triton kernels of the gene-network step against the torch path, and ``aggregation="mean_attention"``.

The kernel tests (``test_kernel_*``) need the kernels compiled for a GPU or built for the Triton interpreter, and
``TRITON_INTERPRET=1`` only takes effect when it is set before ``triton`` is first imported (other test modules
import it indirectly). On a machine without CUDA they therefore run in a subprocess started with
``TRITON_INTERPRET=1`` by :func:`test_kernels_under_the_triton_interpreter`; on a CUDA machine they run in
this process on the GPU.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sc_print as scp
from sc_print.grn import AttentionAccumulator, attention_network, mean_attention_network
from sc_print.grn._aggregate import resolve_backend
from sc_print.grn._mean_attention import attention_sum_torch

pytestmark = pytest.mark.triton

ROOT = Path(__file__).resolve().parents[1]
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
kernel = pytest.mark.skipif(
    not (INTERPRET or CUDA),
    reason="runs in the TRITON_INTERPRET=1 subprocess of test_kernels_under_the_triton_interpreter",
)
DTYPES = [torch.float32, torch.bfloat16]


def test_kernels_under_the_triton_interpreter() -> None:
    """Every ``test_kernel_*`` of this file passes under ``TRITON_INTERPRET=1`` (a fresh process)."""
    if INTERPRET or CUDA:
        pytest.skip("the kernel tests run in this process")
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__)), "-q", "-p", "no:cacheprovider", "-k", "test_kernel_"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary, summary
    assert "skipped" not in summary, proc.stdout[-2000:]


def _kernels():
    pytest.importorskip("triton")
    from sc_print.grn import _triton

    assert _triton.INTERPRETED == INTERPRET
    return _triton


def _close_network(a, b, threshold: float | None, atol: float) -> None:
    """Two sparse networks agree, except edges within float rounding of the threshold (kept by one only)."""
    da, db = a.toarray(), b.toarray()
    diff = np.abs(da - db) > atol
    if threshold is not None:
        dense = np.maximum(da, db)
        diff &= np.abs(dense - threshold) > atol
    assert not diff.any(), f"{diff.sum()} entries differ, max {np.abs(da - db).max()}"


# ---------------------------------------------------------------------------------------------------- kernels
@kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("s", "hd"), [(1, 16), (37, 24), (50, 8)])
def test_kernel_row_lse_matches_torch(dtype: torch.dtype, s: int, hd: int) -> None:
    tri = _kernels()
    gen = torch.Generator().manual_seed(s)
    q = (torch.randn(2, 3, s, hd, generator=gen) * 2).to(dtype)
    k = (torch.randn(2, 3, s, hd, generator=gen) * 2).to(dtype)
    lse = tri.row_lse(q.to(DEVICE), k.to(DEVICE), scale=hd**-0.5).cpu()
    ref = torch.logsumexp(q.float() @ k.float().transpose(-1, -2) * hd**-0.5, dim=-1)
    torch.testing.assert_close(lse, ref, atol=2e-5, rtol=1e-5)


@kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("filtration", ["threshold", "top_k", "none"])
def test_kernel_mean_qk_network_matches_torch(dtype: torch.dtype, filtration: str) -> None:
    """Odd sizes (35 genes + 2 cell tokens, head_dim 24), a subset of heads with unequal weights."""
    _kernels()
    gen = torch.Generator().manual_seed(1)
    q = (torch.randn(2, 37, 3, 24, generator=gen) * 2).to(dtype)
    k = (torch.randn(2, 37, 3, 24, generator=gen) * 2).to(dtype)
    opts = {"n_tokens": 2, "filtration": filtration, "top_k": 5, "heads": [(0, 1), (1, 0), (1, 2)]}
    opts["head_weights"] = [0.5, 0.2, 0.3]
    ref = attention_network(q.float(), k.float(), backend="torch", **opts)
    out = attention_network(q.to(DEVICE), k.to(DEVICE), backend="triton", **opts)
    assert out.shape == (35, 35)
    assert out.has_sorted_indices
    if filtration == "top_k":
        assert (np.diff(out.indptr) == 5).all()
    _close_network(out, ref, 1 / 37 if filtration == "threshold" else None, atol=2e-5)
    if filtration != "threshold":
        assert out.nnz == ref.nnz


@kernel
def test_kernel_top_k_wider_than_a_key_block_and_all_heads() -> None:
    """``top_k`` larger than the kernel's key block (16 in the interpreter, 64 on a GPU) is still exact."""
    _kernels()
    gen = torch.Generator().manual_seed(2)
    q, k = torch.randn(1, 41, 1, 16, generator=gen), torch.randn(1, 41, 1, 16, generator=gen)
    top = 20 if INTERPRET else 70
    ref = attention_network(q, k, n_tokens=1, filtration="top_k", top_k=top, backend="torch")
    out = attention_network(q.to(DEVICE), k.to(DEVICE), n_tokens=1, filtration="top_k", top_k=top, backend="triton")
    assert (np.diff(out.indptr) == min(top, 40)).all()
    _close_network(out, ref, None, atol=2e-5)


@kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slots", ["per_cell", "shared"])
def test_kernel_attention_sum_matches_torch(dtype: torch.dtype, slots: str) -> None:
    """Cells sharing slots (atomic adds), slots -1 (in the softmax, not accumulated), 29 tokens, head_dim 24.

    ``slots="shared"``: every cell has the same slots (a fixed context), where the torch path sums the cells first.
    """
    tri = _kernels()
    gen = torch.Generator().manual_seed(3)
    q = (torch.randn(3, 2, 29, 24, generator=gen) * 2).to(dtype)
    k = (torch.randn(3, 2, 29, 24, generator=gen) * 2).to(dtype)
    w = torch.tensor([0.3, 0.7])
    rows = torch.stack([torch.randperm(40, generator=gen)[:29] for _ in range(3)])
    rows[0, 3] = -1
    rows[2, 10:12] = -1
    if slots == "shared":
        rows = rows[:1].expand(3, -1).clone()
    ref = torch.zeros(40, 40)
    attention_sum_torch(q, k, w, rows, ref)
    acc = torch.zeros(40, 40, device=DEVICE)
    tri.attention_sum(q.to(DEVICE), k.to(DEVICE), w, rows.to(DEVICE), acc)
    torch.testing.assert_close(acc.cpu(), ref, atol=2e-5, rtol=1e-5)


@kernel
def test_kernel_mean_attention_through_the_model_matches_torch(toy_model, toy_counts_adata) -> None:
    """The Triton accumulator hooked into a real forward gives the torch accumulator's network."""
    from sc_print.data import load_counts
    from sc_print.grn import accumulate_attention

    counts = load_counts(toy_counts_adata, toy_model.vocab, layer=None, chunk_size=4096)
    positions = np.arange(0, 40, 2)
    kw = {
        "positions": positions, "layers": [0, 1], "max_len": 20, "n_repeats": 1, "seed": 0, "batch_size": 4,
        "device": DEVICE, "dtype": torch.float32,
    }  # fmt: skip
    net = copy.deepcopy(toy_model.net)
    tri = accumulate_attention(net.to(DEVICE), counts, np.arange(9), backend="triton", **kw)
    ref = accumulate_attention(
        net.cpu(), counts, np.arange(9), backend="torch", **{**kw, "device": torch.device("cpu")}
    )
    torch.testing.assert_close(tri.attn_sum.cpu(), ref.attn_sum, atol=1e-5, rtol=1e-5)
    _close_network(mean_attention_network(tri), mean_attention_network(ref), 1 / 22, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- torch path
def _brute_force_mean_attention(qs, ks, slots, w, n) -> tuple[np.ndarray, np.ndarray]:
    total, count = np.zeros((n, n)), np.zeros(n)
    for q, k, s in zip(qs, ks, slots, strict=True):
        for a in range(q.shape[0]):
            att = torch.softmax(q[a].double() @ k[a].double().T / q.shape[-1] ** 0.5, -1).numpy()
            np.add.at(total, (s[:, None], s[None, :]), w[a] * att)
        count[s] += 1
    return total, count


def test_attention_accumulator_is_the_exact_mean_of_per_cell_attention() -> None:
    """Per-cell softmax over each cell's own context, head weights, mean over the cells holding the query gene."""
    gen = torch.Generator().manual_seed(4)
    acc = AttentionAccumulator(n_tokens=1, n_genes=9, layers=[0, 1], nhead=2, heads=[(0, 1), (1, 0)])
    qs, ks, slots = [], [], []
    for b in range(2):
        genes = torch.stack([torch.randperm(9, generator=gen)[:5] for _ in range(3)])
        acc.set_batch(genes)
        q, k = torch.randn(2, 3, 6, 2, 4, generator=gen), torch.randn(2, 3, 6, 2, 4, generator=gen)
        acc(0, q[0], k[0])
        acc(1, q[1], k[1])
        for c in range(3):
            s = np.concatenate([[0], genes[c].numpy() + 1])
            qs.append(torch.stack([q[0, c, :, 1], q[1, c, :, 0]]))
            ks.append(torch.stack([k[0, c, :, 1], k[1, c, :, 0]]))
            slots.append(s)
        del b
    total, count = _brute_force_mean_attention(qs, ks, slots, [0.5, 0.5], 10)
    np.testing.assert_allclose(acc.attn_sum.numpy(), total, atol=1e-5)
    np.testing.assert_allclose(acc.count.numpy(), count)
    net = mean_attention_network(acc, filtration="none").toarray()
    seen = np.flatnonzero(count[1:] > 0)
    np.testing.assert_array_equal(acc.seen, seen)
    expected = (total / np.maximum(count, 1)[:, None])[1:, 1:][np.ix_(seen, seen)]
    np.testing.assert_allclose(net, expected, atol=1e-5)
    full = acc.attn_sum / acc.count.clamp(min=1)[:, None]
    np.testing.assert_allclose(full.sum(1).numpy()[count > 0], 1.0, atol=1e-5)  # rows are distributions


def test_attention_accumulator_rejects_bad_genes_and_unset_batches() -> None:
    with pytest.raises(ValueError, match="distinct gene slots"):
        AttentionAccumulator(n_tokens=1, n_genes=5, layers=[0], nhead=1, genes=np.array([1, 1]))
    acc = AttentionAccumulator(n_tokens=1, n_genes=5, layers=[0], nhead=1)
    with pytest.raises(RuntimeError, match="set_batch"):
        acc(0, torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))


@pytest.mark.parametrize(("g", "n"), [(5, 9), (30, 40), (1, 3)])
def test_place_network_puts_rows_and_columns_at_their_positions(g: int, n: int) -> None:
    import scipy.sparse as sp

    from sc_print.grn import place_network

    rng = np.random.default_rng(g)
    dense = rng.random((g, g)) * (rng.random((g, g)) > 0.5)
    pos = rng.choice(n, g, replace=False)
    out = place_network(sp.csr_matrix(dense), pos, n)
    expected = np.zeros((n, n))
    expected[np.ix_(pos, pos)] = dense
    assert out.dtype == np.float32
    assert out.has_canonical_format
    np.testing.assert_allclose(out.toarray(), expected, atol=1e-7)


def test_triton_backend_needs_cuda_or_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="backend='triton' needs"):
        resolve_backend("triton", torch.device("cpu"))
    with pytest.raises(ValueError, match="Unknown network backend"):
        resolve_backend("cuda", torch.device("cpu"))


# ---------------------------------------------------------------------------------------------------- sp.tl.grn
def test_grn_mean_attention_runs_on_cpu(toy_model, toy_counts_adata) -> None:
    adata = toy_counts_adata
    genes = list(adata.var_names[:30])
    scp.tl.grn(adata, model=toy_model, genes=genes, aggregation="mean_attention", key_added="ma", batch_size=16)
    net = adata.varp["ma"]
    assert net.format == "csr"
    assert net.shape == (adata.n_vars, adata.n_vars)
    assert 0 < net.nnz < 30 * 30
    assert adata.uns["ma"]["params"]["aggregation"] == "mean_attention"
    assert net.data.min() >= 1 / (30 + toy_model.net.n_cell_tokens) - 1e-7  # the threshold rule
    scp.tl.grn(adata, model=toy_model, genes=genes, aggregation="mean_attention", key_added="mb", batch_size=5)
    np.testing.assert_allclose(adata.varp["mb"].toarray(), net.toarray(), atol=1e-6)  # batch size irrelevant


def test_grn_mean_attention_equals_mean_qk_on_identical_cells(toy_model, toy_counts_adata) -> None:
    """With every cell identical (same counts, fixed context), the mean of attention is the attention of the mean."""
    import anndata as ad
    import scipy.sparse as sp

    one = toy_counts_adata[:1]
    adata = ad.AnnData(sp.vstack([one.X] * 12, format="csr"), var=one.var.copy())
    adata.obs_names = [f"copy{i}" for i in range(12)]
    kw = {"model": toy_model, "genes": list(adata.var_names[:25]), "filtration": "none", "min_cells": 5}
    scp.tl.grn(adata, aggregation="mean_attention", key_added="ma", **kw)
    scp.tl.grn(adata, aggregation="mean_qk", key_added="mq", **kw)
    np.testing.assert_allclose(adata.varp["ma"].toarray(), adata.varp["mq"].toarray(), atol=1e-5)


def test_grn_mean_attention_genome_wide_and_differs_from_mean_qk(toy_model, toy_counts_adata) -> None:
    adata = toy_counts_adata
    kw = {"model": toy_model, "genes": "genome_wide", "max_len": 40, "filtration": "top_k", "top_k": 3, "rng": 1}
    scp.tl.grn(adata, aggregation="mean_attention", key_added="ma", **kw)
    scp.tl.grn(adata, aggregation="mean_qk", key_added="mq", **kw)
    ma, mq = adata.varp["ma"], adata.varp["mq"]
    assert np.diff(ma.indptr).max() == 3
    assert adata.uns["ma"]["n_genes"] == adata.uns["mq"]["n_genes"]  # the same genes seen
    assert (ma != mq).nnz > 0


def test_grn_rejects_an_unknown_aggregation(toy_model, toy_counts_adata) -> None:
    adata = toy_counts_adata
    with pytest.raises(ValueError, match="Unknown aggregation 'mean'"):
        scp.tl.grn(adata, model=toy_model, aggregation="mean")
    assert not adata.varp
    assert not adata.uns


# ---------------------------------------------------------------------------------------------------- gpu script
@kernel
def test_kernel_gpu_benchmark_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``benchmarks/gpu/run.py --dry-run`` runs its sections at tiny shapes on CPU and writes its report.

    In-process (in the interpreter subprocess on CPU); ``gpu_tests`` (a pytest subprocess) is left to the CLI dry run.
    """
    spec = importlib.util.spec_from_file_location("gpu_run", ROOT / "benchmarks" / "gpu" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sections = "kernels,tasks,genome_wide,pretraining"
    monkeypatch.setattr(sys, "argv", ["run.py", "--dry-run", "--out", str(tmp_path), "--only", sections])
    assert module.main() == 0
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["dry_run"] is True
    assert not report["errors"]
    for section in sections.split(","):
        assert report[section], section
    assert all(row["ok"] for row in report["kernels"])
    assert {row["task"] for row in report["tasks"]} == {"embed", "denoise", "grn mean_qk", "grn mean_attention"}
    assert report["pretraining"][0]["cells_per_s"] > 0
    assert (tmp_path / "gpu.md").read_text().startswith("# GPU")
