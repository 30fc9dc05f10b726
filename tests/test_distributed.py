"""Multi-process inference (Lightning Fabric, gloo on CPU) and DDP training equal their one-process results."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

import sc_print as sp
from sc_print import _distributed

two_cpus = pytest.mark.skipif(_distributed.available_devices("cpu") < 2, reason="needs 2 CPU cores")


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several blocks per process (forked processes inherit the patched value)."""
    monkeypatch.setattr(_distributed, "CPU_BLOCK_SIZE", 37)


def test_shard_is_contiguous_and_complete() -> None:
    for n, world in ((10, 3), (2, 4), (200, 2)):
        shards = [_distributed.shard(n, world, r) for r in range(world)]
        assert np.array_equal(np.concatenate(shards), np.arange(n))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_check_parallel_single_process_is_none() -> None:
    assert _distributed.check_parallel(accelerator="auto", devices=1, num_nodes=1, strategy="auto") is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"devices": 10_000}, "this machine has"),
        ({"devices": 0}, "devices"),
        ({"devices": 2, "strategy": "horovod"}, "Unknown strategy"),
        ({"devices": 2, "device": 0}, "each process gets its own"),
        ({"devices": 2, "accelerator": "mps"}, "MPS"),
        ({"devices": 1, "num_nodes": 2, "strategy": "ddp_spawn"}, "external launcher"),
    ],
)
def test_check_parallel_errors(kwargs: dict, match: str) -> None:
    options = {"accelerator": "cpu", "devices": 2, "num_nodes": 1, "strategy": "auto", **kwargs}
    with pytest.raises(ValueError, match=match):
        _distributed.check_parallel(**options)


def test_grn_mean_attention_refused_with_several_processes(toy_counts_adata, toy_model) -> None:
    with pytest.raises(ValueError, match="aggregation='mean_qk'"):
        sp.tl.grn(toy_counts_adata, model=toy_model, accelerator="cpu", devices=2, aggregation="mean_attention")
    assert "scprint_grn" not in toy_counts_adata.uns


@two_cpus
@pytest.mark.slow
def test_embed_two_processes_equal_one(toy_counts_adata, toy_model, small_blocks) -> None:
    one = sp.tl.embed(toy_counts_adata, model=toy_model, accelerator="cpu", max_len=64, copy=True)
    two = sp.tl.embed(toy_counts_adata, model=toy_model, accelerator="cpu", max_len=64, devices=2, copy=True)
    assert list(two.obs_names) == list(one.obs_names)
    for key in one.obsm:
        np.testing.assert_allclose(np.asarray(two.obsm[key]), np.asarray(one.obsm[key]), atol=1e-5, rtol=0)
    for key in one.obs.columns:
        assert (two.obs[key].astype(str) == one.obs[key].astype(str)).all() or key.startswith("scprint_conf")
    assert two.uns["scprint_embed"]["params"]["devices"] == 2
    assert two.uns["scprint_embed"]["params"]["strategy"] == "ddp_fork"


@two_cpus
@pytest.mark.slow
def test_embed_fixed_context_chosen_once(toy_counts_adata, toy_model, small_blocks) -> None:
    """mode='fixed' without genes picks the variable genes on every cell, not per process."""
    kw = {"model": toy_model, "accelerator": "cpu", "mode": "fixed", "max_len": 40, "copy": True}
    one = sp.tl.embed(toy_counts_adata, **kw)
    two = sp.tl.embed(toy_counts_adata, devices=2, **kw)
    assert two.uns["scprint_embed"]["context"]["genes"] == one.uns["scprint_embed"]["context"]["genes"]
    np.testing.assert_allclose(two.obsm["X_scprint"], one.obsm["X_scprint"], atol=1e-5, rtol=0)


@two_cpus
@pytest.mark.slow
def test_denoise_two_processes_equal_one(toy_counts_adata, toy_model, small_blocks) -> None:
    kw = {"model": toy_model, "accelerator": "cpu", "n_genes": 50, "copy": True}
    one = sp.tl.denoise(toy_counts_adata, **kw)
    two = sp.tl.denoise(toy_counts_adata, devices=2, **kw)
    a, b = one.layers["scprint_denoised"], two.layers["scprint_denoised"]
    assert sparse.issparse(b)
    assert b.shape == a.shape
    np.testing.assert_allclose(b.toarray(), a.toarray(), atol=1e-5, rtol=1e-6)
    hvg_one = sp.tl.denoise(toy_counts_adata, genes="hvg", **kw)
    hvg_two = sp.tl.denoise(toy_counts_adata, genes="hvg", devices=2, **kw)
    assert hvg_two.uns["scprint_denoise"]["genes"] == hvg_one.uns["scprint_denoise"]["genes"]
    assert hvg_two.uns["scprint_denoise"]["gene_set"] == "hvg"
    np.testing.assert_allclose(
        hvg_two.layers["scprint_denoised"].toarray(), hvg_one.layers["scprint_denoised"].toarray(), atol=1e-5
    )


@two_cpus
@pytest.mark.slow
def test_grn_two_processes_equal_one(toy_counts_adata, toy_model) -> None:
    kw = {"model": toy_model, "accelerator": "cpu", "groupby": "cell_type", "n_genes": 40, "copy": True}
    one = sp.tl.grn(toy_counts_adata, **kw)
    two = sp.tl.grn(toy_counts_adata, devices=2, **kw)
    keys = one.uns["scprint_grn"]["varp_keys"]
    assert two.uns["scprint_grn"]["varp_keys"] == keys
    for key in keys.values():
        a, b = one.varp[key], two.varp[key]
        assert a.nnz > 0
        np.testing.assert_allclose(b.toarray(), a.toarray(), atol=1e-5, rtol=0)


TRAIN_SCRIPT = """
import json, sys
import numpy as np, pandas as pd, anndata as ad, torch
from scipy import sparse
from sc_print.data import load_gene_table
from sc_print.model import ScPrint

table = load_gene_table()
ids = [g for g in table.index if str(g).startswith("ENSG")][:300]
gen = np.random.default_rng(7)
n = 96
ct = gen.integers(3, size=n)
counts = gen.poisson(np.tile(gen.lognormal(-1.0, 1.2, size=300), (3, 1))[ct] * 4).astype(np.float32)
counts[counts.sum(1) == 0, 0] = 1.0
obs = pd.DataFrame(
    {"cell_type": pd.Categorical.from_codes(ct, categories=["CL:0000236", "CL:0000084", "CL:0000576"])},
    index=[f"c{i}" for i in range(n)],
)
adata = ad.AnnData(sparse.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=ids))
torch.manual_seed(0)
ScPrint.setup_anndata(adata, labels_keys=["cell_type"])
model = ScPrint(adata, size="tiny", max_len=64, dropout=0.0)
before = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
model.train(max_steps=3, batch_size=16, warmup_steps=1, accelerator="cpu", devices=2, strategy="ddp",
            enable_progress_bar=False, enable_model_summary=False)
world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
changed = any(not torch.equal(before[k], v) for k, v in model.module.state_dict().items())
digest = float(sum(v.double().sum() for v in model.module.state_dict().values() if v.is_floating_point()))
with open(f"{sys.argv[1]}.{rank}", "w") as f:
    json.dump({"world": world, "changed": changed, "digest": digest,
               "loss": model.history["train_loss"].values.ravel().tolist() if "train_loss" in model.history else []},
              f)
if torch.distributed.is_initialized():
    torch.distributed.barrier()  # rank 0 (the launching process) exits after rank 1 wrote its file
"""


@two_cpus
@pytest.mark.slow
def test_train_ddp_two_cpu_processes(tmp_path: Path) -> None:
    """``model.train(accelerator="cpu", devices=2, strategy="ddp")``: both ranks train the same weights."""
    script = tmp_path / "train_ddp.py"
    script.write_text(textwrap.dedent(TRAIN_SCRIPT))
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    assert all(r["changed"] for r in ranks)
    assert ranks[0]["digest"] == pytest.approx(ranks[1]["digest"], rel=1e-6)  # DDP keeps the replicas equal
    assert ranks[0]["loss"]  # the logger lives on rank 0
    assert np.isfinite(ranks[0]["loss"]).all()
