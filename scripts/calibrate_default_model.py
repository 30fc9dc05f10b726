"""Calibrate abstention of the embedded default model on held-out data (writes ``calibration.json``).

``cell_type``: confidence threshold and novelty test fitted on a stratified sample of the FACS-sorted PBMC
reference, held out from training (see the model card). ``assay``: confidence threshold on the same held-out cells
(all 10x 3' v1); its novelty test needs every assay, and the held-out data hold one, so the class means are fitted
on a seeded sample of training cells of each assay (the novelty reference is "what the model was trained on").
The weights file is not touched. Run from the repository root: ``python scripts/calibrate_default_model.py``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import data_file, load_cellbench, load_pbmc_sorted  # noqa: E402

import sc_print as sp  # noqa: E402
from sc_print.model._calibration import calibrate_label, fit_novelty, novelty_score  # noqa: E402

SEED = 0
N_HELDOUT = 600
N_PER_ASSAY = 40
OUT = REPO / "src" / "sc_print" / "_resources" / "default_model" / "calibration.json"


def _stratified(labels: np.ndarray, n: int, gen: np.random.Generator) -> np.ndarray:
    frac = n / len(labels)
    idx = [
        gen.choice(np.flatnonzero(labels == v), max(1, round(frac * (labels == v).sum())), replace=False)
        for v in np.unique(labels)
    ]
    return np.sort(np.concatenate(idx))


def _rounded(obj: object) -> object:
    """Floats to 6 significant digits (the file ships in the wheel; float32 tokens carry no more)."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def main() -> None:
    t0 = time.perf_counter()
    gen = np.random.default_rng(SEED)
    model = sp.load_model("default")
    model.metadata_.pop("calibration", None)
    ref, _ = load_pbmc_sorted()
    idx = _stratified(ref.obs["cell_type"].to_numpy(), N_HELDOUT, gen)
    held = ref[idx].copy()
    out = model.embed_cells(held, labels=["cell_type", "assay"], seed=SEED)
    record = {}
    h = model.label_hierarchy("cell_type")
    correct = h.is_correct(out.proba["cell_type"].argmax(1), held.obs["cell_type"].to_numpy())
    record["cell_type"] = calibrate_label(out.proba["cell_type"], out.tokens["cell_type"], correct)
    record["cell_type"]["data"] = (
        f"pbmc_sorted_reference (held out), stratified sample of {len(idx)} cells, seed {SEED}"
    )
    # assay: threshold on the held-out cells, novelty reference from training cells of every assay
    ha = model.label_hierarchy("assay")
    assay_correct = ha.is_correct(out.proba["assay"].argmax(1), np.full(len(idx), "EFO:0009901", dtype=object))
    rec = calibrate_label(out.proba["assay"], out.tokens["assay"], assay_correct)
    parts = []
    chem = ad.read_h5ad(data_file("pbmc_10x_small_sets", "pbmc_3_10x_chemistries_2860cells_raw.h5ad"))
    for b in sorted(chem.obs["batch"].astype(str).unique()):
        sel = np.flatnonzero(chem.obs["batch"].astype(str).to_numpy() == b)
        parts.append(chem[np.sort(gen.choice(sel, N_PER_ASSAY, replace=False))].copy())
    donor = ad.read_h5ad(data_file("pbmc_10x_small_sets", "frozen_pbmc_donorA_2896cells_raw.h5ad"))
    parts.append(donor[np.sort(gen.choice(donor.n_obs, N_PER_ASSAY, replace=False))].copy())
    cel, _ = load_cellbench("sc_celseq2_5cl_p1")
    parts.append(cel[np.sort(gen.choice(cel.n_obs, N_PER_ASSAY, replace=False))].copy())
    tokens, preds = [], []
    for part in parts:
        o = model.embed_cells(part, labels=["assay"], seed=SEED)
        tokens.append(o.tokens["assay"])
        preds.append(o.proba["assay"].argmax(1))
    tok, pred = np.concatenate(tokens), np.concatenate(preds)
    rec["novelty"] = fit_novelty(tok, pred, ha.n_leaves)
    rec["max_novelty"] = float(np.quantile(novelty_score(tok, pred, rec["novelty"]), rec["novelty_quantile"]))
    scores = novelty_score(out.tokens["assay"], out.proba["assay"].argmax(1), rec["novelty"])
    kept = (out.proba["assay"].max(1) >= rec["min_confidence"]) & (scores <= rec["max_novelty"])
    rec["coverage"] = float(kept.mean())
    rec["kept_accuracy"] = float(assay_correct[kept].mean()) if kept.any() else float("nan")
    rec["data"] = (
        f"threshold: the same {len(idx)} held-out sorted PBMC cells (truth EFO:0009901); novelty reference: "
        f"{N_PER_ASSAY} training cells of each of 10x 3' v2/v3/5' v1 (pbmc_3_10x_chemistries), 10x 3' v1 "
        f"(pbmc_donorA) and CEL-seq2 (sc_celseq2_5cl_p1), seed {SEED}"
    )
    for r in record.values():
        r.update(max_len=2000, seed=SEED)
    rec.update(max_len=2000, seed=SEED)
    record["assay"] = rec
    OUT.write_text(json.dumps(_rounded(record)) + "\n")
    for label, r in record.items():
        print(
            label,
            {k: r[k] for k in ("min_confidence", "n_cells", "accuracy", "coverage", "kept_accuracy", "max_novelty")},
        )
        for b in r["bins"]:
            print("   ", b)
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
