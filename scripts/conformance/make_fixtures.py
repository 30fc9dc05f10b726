"""Build small official-format scPRINT checkpoints with the reference package and record its outputs.

Run with the reference environment (``bash scripts/conformance/setup_reference_env.sh`` builds it)::

    .venv-ref/bin/python scripts/conformance/make_fixtures.py --out tests/data/checkpoints

For each checkpoint layout below it

1. builds a random-weight ``scprint.model.model.scPrint`` (a few hundred genes, d_model 32, 2-3 layers),
   with weights drawn at a realistic scale (not the tiny training init, so that every parameter
   matters to the outputs),
2. attaches a Lightning ``Trainer`` through a one-step ``fit`` and writes the file with
   ``trainer.save_checkpoint`` (the official container: state_dict, hyper_parameters, optimizer and loop
   states), then rewrites the hyper-parameters / key names the way the emulated code generation wrote
   them (``paper``: 1.x key ``gene_encoder.embedding.weight`` and ``classes`` as a dict),
3. loads that file back with the reference's own ``scPrint.load_from_checkpoint`` (CPU,
   ``transformer="normal"``, fp32, eval) and records its outputs on fixed inputs (a fixed ``some``
   gene list, no randomness): ZINB parameters, class logits, every cell-token output, gene outputs,
   the ``pred_embedding`` embedding, and the GNInfer network (mean Q and K per gene over cells, then
   ``softmax(QK^T / sqrt(hd))`` per layer-head including the cell tokens, mean over layer-heads;
   reference-scprint.md section 3.4) through the reference's own ``Attention`` accumulator and
   ``GNInfer.aggregate``.

Outputs per layout: ``<layout>.ckpt``, ``<layout>_reference.npz`` and ``<layout>_inputs.json``.
The file must load with ``torch.load(..., weights_only=True)``; the script checks it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_GENE_TABLE = REPO.parent / "shared" / "data" / "scprint_gene_meta" / "biomart_pos.parquet"
DEFAULT_EXPR_TABLE = REPO.parent / "shared" / "data" / "scprint_gene_meta" / "avg_expr.parquet"

HUMAN, MOUSE = "NCBITaxon:9606", "NCBITaxon:10090"

# ---------------------------------------------------------------------------------------------- labels
# Real ontology ids. ``leaves`` get indices 0..n-1 (the classifier outputs), parents come after them
# with the leaves that descend from them, and "unknown" closes the decoder, as scDataLoader builds it.
LABELS: dict[str, dict] = {
    "cell_type_ontology_term_id": {
        "leaves": ["CL:0000236", "CL:0000624", "CL:0000625", "CL:0000576", "CL:0000623"],
        # T cell -> CD4/CD8 ab T cells; lymphocyte -> B, CD4, CD8, NK
        "parents": {"CL:0000084": [1, 2], "CL:0000542": [0, 1, 2, 4]},
    },
    "tissue_ontology_term_id": {
        "leaves": ["UBERON:0000178", "UBERON:0002048", "UBERON:0002107"],
        "parents": {},
    },
    "disease_ontology_term_id": {
        "leaves": ["PATO:0000461", "MONDO:0005148", "MONDO:0007254"],
        # diabetes mellitus -> type 2 diabetes; cancer -> breast cancer
        "parents": {"MONDO:0005015": [1], "MONDO:0004992": [2]},
    },
    "assay_ontology_term_id": {
        "leaves": ["EFO:0009899", "EFO:0009922", "EFO:0008931"],
        "parents": {},
    },
    "self_reported_ethnicity_ontology_term_id": {
        "leaves": ["HANCESTRO:0005", "HANCESTRO:0008", "HANCESTRO:0010"],
        "parents": {},
    },
    "sex_ontology_term_id": {"leaves": ["PATO:0000383", "PATO:0000384"], "parents": {}},
    "organism_ontology_term_id": {"leaves": [HUMAN, MOUSE], "parents": {}},
}
PAPER_CLASSES = [
    "cell_type_ontology_term_id",
    "disease_ontology_term_id",
    "assay_ontology_term_id",
    "self_reported_ethnicity_ontology_term_id",
    "sex_ontology_term_id",
    "organism_ontology_term_id",
]
V2_CLASSES = [
    "cell_type_ontology_term_id",
    "tissue_ontology_term_id",
    "disease_ontology_term_id",
    "assay_ontology_term_id",
    "self_reported_ethnicity_ontology_term_id",
    "sex_ontology_term_id",
    "organism_ontology_term_id",
]
DEFAULT_PRED_EMBEDDING = [
    "cell_type_ontology_term_id",
    "disease_ontology_term_id",
    "self_reported_ethnicity_ontology_term_id",
    "sex_ontology_term_id",
]

# --------------------------------------------------------------------------------------------- layouts
# generation: which code wrote the file. "1.x" = paper-era code (tags 1.0.0-1.6.4): key
# gene_encoder.embedding.weight, hparam classes = dict, no 2.x switches, cell tokens
# [cell, depth, classes]. "2.x" = v1-HEAD code: key gene_encoder.embeddings.weight, classes = list
# plus label_counts, tokens [depth, cell, classes] (or [cell, classes] without a depth token).
LAYOUTS: dict[str, dict] = {
    "paper": {
        "generation": "1.x",
        "seed": 11,
        "d_model": 32,
        "nhead": 4,
        "num_heads_kv": None,
        "nlayers": 2,
        "layers_cls": [32],
        "normalization": "sum",
        "depth_atinput": True,
        "classes": PAPER_CLASSES,
        "pred_embedding": DEFAULT_PRED_EMBEDDING,
    },
    "v1head": {
        "generation": "2.x",
        "seed": 12,
        "d_model": 32,
        "nhead": 2,
        "num_heads_kv": None,
        "nlayers": 3,
        "layers_cls": [24],
        "normalization": "log",
        "depth_atinput": True,
        "classes": PAPER_CLASSES,
        "pred_embedding": ["cell_type_ontology_term_id"],
    },
    "v2": {
        "generation": "2.x",
        "seed": 13,
        "d_model": 32,
        "nhead": 4,
        "num_heads_kv": 2,
        "nlayers": 2,
        "layers_cls": [16],
        "normalization": "log",
        "depth_atinput": False,
        "classes": V2_CLASSES,
        "pred_embedding": DEFAULT_PRED_EMBEDDING,
    },
}

N_HUMAN, N_MOUSE = 200, 40  # vocabulary: human block then mouse block, each sorted by Ensembl id
N_CELLS_A, N_GENES_A = 5, 40  # main batch (all outputs)
N_CELLS_B, N_GENES_B, N_SHARED_B = 3, 32, 20  # second batch, only accumulated into the GRN
DENOISE_MULT = 4.0
N_BATCH_LABELS = 3  # size of the (training-only) batch discriminator, present in official files

log = logging.getLogger("make_fixtures")


# ------------------------------------------------------------------------------------------ vocabulary
def build_vocabulary(gene_table: Path | None, expr_table: Path | None) -> tuple[list[str], list[int], list[str]]:
    """Pick a small real vocabulary (Ensembl ids + scPRINT position index) or synthesize one.

    Returns the gene ids, their ``gene_pos_enc`` values and the symbols (for readability only).
    """
    if gene_table is not None and gene_table.exists():
        import pandas as pd

        table = pd.read_parquet(gene_table)
        table = table[~table.index.duplicated()]
        table = table[table["gene_biotype"] == "protein_coding"]
        human = table[table.index.str.startswith("ENSG")]
        if expr_table is not None and expr_table.exists():
            expr = pd.read_parquet(expr_table)
            expr = expr[~expr.index.duplicated()]
            ranked = expr["avg_expr"].reindex(human.index).dropna().sort_values(ascending=False, kind="stable")
            human_ids = ranked.index[:N_HUMAN]
        else:
            human_ids = human.index.sort_values()[:N_HUMAN]
        mouse = table[table.index.str.startswith("ENSMUSG")]
        mouse_ids = mouse.index.sort_values()[:N_MOUSE]
        genes = sorted(human_ids) + sorted(mouse_ids)
        pos = [int(p) for p in table.loc[genes, "pos"]]
        symbols = [str(s) for s in table.loc[genes, "hgnc_symbol"]]
        return genes, pos, symbols
    log.warning("gene table %s not found: using synthetic Ensembl-like ids", gene_table)
    rng = np.random.default_rng(0)
    genes = [f"ENSG{i:011d}" for i in range(1000, 1000 + 7 * N_HUMAN, 7)]
    genes += [f"ENSMUSG{i:011d}" for i in range(2000, 2000 + 5 * N_MOUSE, 5)]
    pos = sorted(rng.integers(1, 900, N_HUMAN).tolist()) + sorted(rng.integers(1, 900, N_MOUSE).tolist())
    return genes, [int(p) for p in pos], genes


def label_metadata(classes: list[str]) -> tuple[dict, dict, dict]:
    """``label_counts``, ``label_decoders`` and ``labels_hierarchy`` as scDataLoader stores them."""
    counts, decoders, hierarchy = {}, {}, {}
    for name in classes:
        spec = LABELS[name]
        leaves = spec["leaves"]
        parents = list(spec["parents"])
        counts[name] = len(leaves)
        decoders[name] = dict(enumerate(leaves + parents + ["unknown"]))
        if spec["parents"]:
            hierarchy[name] = {len(leaves) + j: list(spec["parents"][p]) for j, p in enumerate(parents)}
    return counts, decoders, hierarchy


# ---------------------------------------------------------------------------------------------- model
def randomize_(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Draw every parameter at a scale where it visibly affects the outputs."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            elif p.ndim == 1:  # LayerNorm weights
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=generator))
            elif "embedding" in name:  # gene, class and metacell embeddings
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))
            else:
                fan_in = p.shape[1]
                p.copy_(torch.randn(p.shape, generator=generator) / np.sqrt(fan_in))


def build_model(spec: dict, genes: list[str], pos: list[int]):
    from scprint.model.model import scPrint

    counts, decoders, hierarchy = label_metadata(spec["classes"])
    model = scPrint(
        genes=genes,
        organisms=[HUMAN, MOUSE],
        d_model=spec["d_model"],
        nhead=spec["nhead"],
        nlayers=spec["nlayers"],
        precpt_gene_emb=None,
        gene_pos_enc=pos,
        normalization=spec["normalization"],
        transformer="normal",
        mvc_decoder="inner product",
        pred_embedding=spec["pred_embedding"],
        layers_cls=spec["layers_cls"],
        classes=counts,
        labels_hierarchy=hierarchy,
        label_decoders=decoders,
        depth_atinput=spec["depth_atinput"],
        num_heads_kv=spec["num_heads_kv"],
        num_batch_labels=N_BATCH_LABELS,
        dropout=0.1,
        residual_in_fp32=True,
        checkpointing=False,
        fused_dropout_add_ln=False,
        prenorm=True,
        drop_path_rate=0.0,
    )
    generator = torch.Generator().manual_seed(spec["seed"])
    randomize_(model, generator)
    # official checkpoints freeze the (ESM2-derived) gene table: no optimizer state for it
    model.gene_encoder.embeddings.weight.requires_grad_(False)
    return model


def one_step_fit(model, genes: list[str], spec: dict, rng: np.random.Generator, root: str) -> object:
    """Attach a Trainer the official way: one optimisation step on a synthetic batch."""
    import lightning as L
    from torch.utils.data import DataLoader

    n_cells, n_genes = 8, 24
    batch = []
    counts, _, _ = label_metadata(spec["classes"])
    for _ in range(n_cells):
        idx = np.sort(rng.choice(len(genes), n_genes, replace=False))
        x = rng.negative_binomial(2, 0.3, n_genes).astype(np.float32)
        x[0] += 1  # never an all-zero context ("sum" normalisation divides by it)
        batch.append(
            {
                "genes": torch.as_tensor(idx, dtype=torch.long),
                "x": torch.as_tensor(x),
                "depth": torch.as_tensor(float(x.sum() + rng.integers(100, 1000))),
                "class": torch.as_tensor([int(rng.integers(0, counts[c])) for c in spec["classes"]]),
            }
        )
    model.lr_reduce_monitor = None  # ReduceLROnPlateau(verbose=True) is rejected by torch >= 2.6
    model.run_full_forward = True
    model.mask_ratio = []
    model.do_denoise = False
    model.do_generate = False
    model.do_cls = True
    model.warmup_duration = 1
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(model, train_dataloaders=DataLoader(batch, batch_size=n_cells))
    return trainer


def rewrite_as_generation(path: Path, spec: dict) -> dict:
    """Rewrite hparams / keys of a v1-HEAD checkpoint the way the emulated code generation wrote them."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    hp = ckpt["hyper_parameters"]
    sd = ckpt["state_dict"]
    hp["transformer"] = "flash"  # what every official run used; loaders override it on CPU
    hp["precpt_gene_emb"] = "data/main/gene_embeddings.parquet"
    if spec["generation"] == "1.x":
        # paper-era code: classes as a dict, none of the 2.x switches, the 1.x embedding key name
        hp["classes"] = dict(hp.pop("label_counts"))
        for key in ("depth_atinput", "cell_specific_blocks", "use_metacell_token", "compress_class_dim"):
            hp.pop(key, None)
        sd["gene_encoder.embedding.weight"] = sd.pop("gene_encoder.embeddings.weight")
    else:
        assert isinstance(hp["classes"], list)
        assert isinstance(hp["label_counts"], dict)
    # plain containers only (that is what official files hold)
    ckpt["hyper_parameters"] = json.loads(json.dumps(hp))
    # json turned the int keys of label_decoders / labels_hierarchy into strings: restore them
    for field in ("label_decoders", "labels_hierarchy"):
        ckpt["hyper_parameters"][field] = {
            c: {int(k): v for k, v in d.items()} for c, d in ckpt["hyper_parameters"][field].items()
        }
    torch.save(ckpt, path)
    check = torch.load(path, map_location="cpu", weights_only=True)
    return check


def load_reference(path: Path):
    """Load the file with the reference's own loader, as its notebooks and cli do on CPU."""
    from scprint.model.model import scPrint

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    kwargs = {"transformer": "normal", "precpt_gene_emb": None}
    if "label_counts" in ckpt["hyper_parameters"]:
        kwargs["classes"] = ckpt["hyper_parameters"]["label_counts"]
    model = scPrint.load_from_checkpoint(str(path), map_location="cpu", strict=True, **kwargs)
    return model.float().eval()


# ---------------------------------------------------------------------------------------------- inputs
def make_inputs(genes: list[str], rng: np.random.Generator) -> dict:
    """Two fixed ``some`` batches of human genes (vocabulary order, zeros included)."""
    human = [i for i, g in enumerate(genes) if g.startswith("ENSG")]
    idx_a = np.sort(rng.choice(human, N_GENES_A, replace=False))
    shared = rng.choice(idx_a, N_SHARED_B, replace=False)
    others = rng.choice(np.setdiff1d(human, idx_a), N_GENES_B - N_SHARED_B, replace=False)
    idx_b = np.sort(np.concatenate([shared, others]))

    def counts(n_cells: int, n_genes: int) -> tuple[np.ndarray, np.ndarray]:
        mean = rng.gamma(0.6, 6.0, size=(1, n_genes))
        x = rng.poisson(mean * rng.uniform(0.5, 2.0, size=(n_cells, 1))).astype(np.float32)
        x[:, 0] += 1
        depth = x.sum(1) + rng.integers(200, 4000, n_cells)
        return x, depth.astype(np.float32)

    xa, da = counts(N_CELLS_A, N_GENES_A)
    xb, db = counts(N_CELLS_B, N_GENES_B)
    return {
        "a": {"gene_idx": idx_a.tolist(), "counts": xa.tolist(), "depth": da.tolist()},
        "b": {"gene_idx": idx_b.tolist(), "counts": xb.tolist(), "depth": db.tolist()},
    }


def tensors(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.tensor(batch["counts"], dtype=torch.float32)
    idx = torch.tensor(batch["gene_idx"], dtype=torch.long).unsqueeze(0).expand(x.shape[0], -1).contiguous()
    return idx, x, torch.tensor(batch["depth"], dtype=torch.float32)


# --------------------------------------------------------------------------------------------- record
def reference_token_names(model) -> list[str]:
    """Name of each cell-token position in the reference (v1-HEAD) forward."""
    names = ["depth"] if model.depth_atinput else []
    return names + ["cell"] + list(model.classes)


def record(model, inputs: dict) -> dict[str, np.ndarray]:
    from scprint.tasks.grn import GNInfer

    out: dict[str, np.ndarray] = {}
    idx, x, depth = tensors(inputs["a"])
    n_tok = len(reference_token_names(model))
    with torch.no_grad():
        res = model(idx, x, req_depth=depth, depth_mult=x.sum(1), do_class=True, get_gene_emb=True)
        out["mu"] = res["mean"].numpy()
        out["theta"] = res["disp"].numpy()
        out["pi_logits"] = res["zero_logits"].numpy()
        out["cell_tokens"] = res["cell_embs"].numpy()
        out["gene_out"] = res["gene_embedding"].numpy()
        assert out["cell_tokens"].shape[1] == n_tok
        for name in model.classes:
            out[f"logits/{name}"] = res["cls_output_" + name].numpy()

        den = model(idx, x, req_depth=depth * DENOISE_MULT, depth_mult=x.sum(1) * DENOISE_MULT, do_class=True)
        out["denoise/mu"] = den["mean"].numpy()
        out["denoise/theta"] = den["disp"].numpy()
        out["denoise/pi_logits"] = den["zero_logits"].numpy()

        # the embedding and the GNInfer accumulation through the reference's own predict path
        model.on_predict_epoch_start()
        layers = list(range(model.nlayers))
        pred = model._predict(
            idx,
            x,
            depth,
            predict_mode="none",
            pred_embedding=model.pred_embedding,
            get_attention_layer=layers,
            keep_output=False,
        )
        out["embedding"] = pred["embs"].numpy()
        out["pred_class"] = pred["class"].numpy()
        idx_b, x_b, depth_b = tensors(inputs["b"])
        model._predict(
            idx_b,
            x_b,
            depth_b,
            predict_mode="none",
            pred_embedding=model.pred_embedding,
            get_attention_layer=layers,
            keep_output=False,
        )
        qk = model.attn.get()  # [L, T + G, 2, H, hd], NaN for genes never seen
        seen = sorted(set(inputs["a"]["gene_idx"]) | set(inputs["b"]["gene_idx"]))
        # GNInfer.aggregate with the default softmax / mean-over-heads settings, cell tokens included
        fake = types.SimpleNamespace(
            head_agg="mean",
            comp_attn=True,
            how="given",
            curr_genes=[model.genes[i] for i in seen],
            n_cell_embs=n_tok,
            preprocess="softmax",
            symmetrize=False,
            apc=False,
        )
        full = GNInfer.aggregate(fake, qk, model.genes)
        fake_heads = types.SimpleNamespace(**{**vars(fake), "head_agg": "none"})
        fake_heads.curr_genes = [model.genes[i] for i in seen]
        heads = GNInfer.aggregate(fake_heads, qk, model.genes)
    assert full.shape == (n_tok + len(seen),) * 2, full.shape
    out["grn_full"] = full.astype(np.float32)  # (T+N)^2, cell tokens first (reference order)
    out["grn"] = full[n_tok:, n_tok:].astype(np.float32)  # genes only, no threshold, not renormalised
    out["grn_heads"] = np.moveaxis(heads, -1, 0).astype(np.float32)  # [L*H, T+N, T+N], layer-major
    out["grn_gene_idx"] = np.asarray(seen, dtype=np.int64)
    out["grn_cell_count"] = model.attn.div.numpy()[np.r_[np.arange(n_tok), n_tok + np.asarray(seen)]]
    return out


def make_layout(name: str, spec: dict, outdir: Path, genes: list[str], pos: list[int], symbols: list[str]) -> None:
    torch.manual_seed(spec["seed"])
    rng = np.random.default_rng(spec["seed"])
    model = build_model(spec, genes, pos)
    ckpt_path = outdir / f"{name}.ckpt"
    with tempfile.TemporaryDirectory(prefix="scprint_fixture_") as root:
        trainer = one_step_fit(model, genes, spec, rng, root)
        trainer.save_checkpoint(ckpt_path)
    ckpt = rewrite_as_generation(ckpt_path, spec)

    ref = load_reference(ckpt_path)
    inputs = make_inputs(genes, np.random.default_rng(spec["seed"] + 100))
    outputs = record(ref, inputs)
    np.savez_compressed(outdir / f"{name}_reference.npz", **outputs)

    import importlib.metadata as md

    meta = {
        "layout": name,
        "generation": spec["generation"],
        "spec": {k: v for k, v in spec.items() if k != "seed"},
        "reference_token_names": reference_token_names(ref),
        "classes": list(ref.classes),
        "pred_embedding": list(ref.pred_embedding),
        "vocabulary_size": len(genes),
        "symbols_of_batch_a": [symbols[i] for i in inputs["a"]["gene_idx"]],
        "genes_of_batch_a": [genes[i] for i in inputs["a"]["gene_idx"]],
        "denoise_depth_mult": DENOISE_MULT,
        "batches": inputs,
        "modes": {
            "main": "forward(gene_idx, counts, req_depth=depth, depth_mult=counts.sum(1))",
            "denoise": "req_depth=depth*m, depth_mult=counts.sum(1)*m with m=denoise_depth_mult",
            "grn": "batches a then b through _predict(get_attention_layer=all layers); GNInfer.aggregate "
            "(softmax, mean over layer-heads), no threshold; grn = grn_full[T:, T:]",
        },
        "reference_versions": {p: md.version(p) for p in ("scprint", "simpler-flash", "torch", "lightning", "numpy")},
        "checkpoint_keys": sorted(ckpt["state_dict"]),
    }
    (outdir / f"{name}_inputs.json").write_text(json.dumps(meta, indent=1) + "\n")
    size = ckpt_path.stat().st_size
    log.info("%s: %s (%.0f KB), %d outputs", name, ckpt_path, size / 1024, len(outputs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "checkpoints")
    parser.add_argument("--layouts", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--gene-table", type=Path, default=DEFAULT_GENE_TABLE)
    parser.add_argument("--expr-table", type=Path, default=DEFAULT_EXPR_TABLE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("LAMIN_SKIP_MIGRATION", "true")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    genes, pos, symbols = build_vocabulary(args.gene_table, args.expr_table)
    for name in args.layouts:
        make_layout(name, copy.deepcopy(LAYOUTS[name]), args.out, genes, pos, symbols)
    return 0


if __name__ == "__main__":
    sys.exit(main())
