"""A 300-step CPU pretraining of the ``small`` preset on the PBMC sets: does the denoising loss fall?

Data: the 10x PBMC sets of ``../shared/data/pbmc_10x_small_sets`` — frozen donor A and the three chemistries
(5,750 cells) for training, 500 cells of the FACS-sorted reference held out. Model: ``ScPrint(size="small")``
(d_model 128, 4 layers, 4 heads) with the full recipe (denoising + bottleneck + token dissimilarity; no labels),
256 random expressed genes per cell, batch 32, lr 1e-3 with 50 warm-up steps, seed 0. Every 50 steps the
held-out denoising loss is measured with the same seeded contexts and noise (``denoising_loss`` of
``scripts/train_default_model.py``). Writes ``benchmarks/results/pretrain_pbmc.json``.

    .venv/bin/python scripts/pretrain_pbmc.py [--steps 300]

It is a training run (the learning curve of issue 2), not part of the benchmark suite: about 25 min on 2 cores.
``benchmarks/make_report.py`` includes its result when the file is there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
SHARED = REPO.parent / "shared" / "data" / "pbmc_10x_small_sets"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pretrain_pbmc.json")
    args = parser.parse_args()

    import anndata as ad
    import scipy.sparse as sp
    import torch
    from lightning.pytorch.callbacks import Callback
    from train_default_model import denoising_loss, machine, seed_all, to_ensembl

    from sc_print.model import ScPrint

    seed_all(0)
    parts = []
    for file, name in [
        ("frozen_pbmc_donorA_2896cells_raw.h5ad", "donorA"),
        ("pbmc_3_10x_chemistries_2860cells_raw.h5ad", "chemistries"),
    ]:
        part, _ = to_ensembl(ad.read_h5ad(SHARED / file), name)
        parts.append(part)
    train = ad.concat(parts, join="outer", fill_value=0)
    train.X = sp.csr_matrix(train.X, dtype=np.float32)
    train.obs_names_make_unique()
    held, _ = to_ensembl(ad.read_h5ad(SHARED / "sorted_pbmc_reference_2140cells_9types_raw.h5ad"), "sorted")
    held = held[np.random.default_rng(0).choice(held.n_obs, 500, replace=False)].copy()
    held.X = sp.csr_matrix(held.X, dtype=np.float32)

    ScPrint.setup_anndata(train)
    model = ScPrint(train, size="small", max_len=256)
    curve = [{"step": 0, "heldout_denoise_loss": denoising_loss(model, held, seed=1)}]
    print(json.dumps(curve[-1]), flush=True)

    class HeldOut(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step = trainer.global_step
            if step % args.every == 0:
                was = model.module.training
                curve.append({"step": step, "heldout_denoise_loss": denoising_loss(model, held, seed=1)})
                model.module.train(was)
                print(json.dumps(curve[-1]), flush=True)

    torch.set_num_threads(2)
    start = time.perf_counter()
    model.train(max_steps=args.steps, batch_size=32, warmup_steps=50, enable_progress_bar=False, callbacks=[HeldOut()])
    wall = time.perf_counter() - start
    history = {k: [float(v) for v in np.asarray(f).ravel()] for k, f in model.history.items() if "denoise" in k}
    result = {
        "data": f"train: 10x PBMC donor A + 3 chemistries ({train.n_obs} cells x {train.n_vars} genes); "
        "held out: 500 FACS-sorted PBMC",
        "model": "ScPrint size='small' (d_model 128, 4 layers, 4 heads), max_len 256, batch 32, lr 1e-3, seed 0",
        "steps": args.steps,
        "wall_s": wall,
        "s_per_step": wall / args.steps,
        "heldout_curve": curve,
        "epoch_history": history,
        "machine": machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("steps", "wall_s", "s_per_step")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
