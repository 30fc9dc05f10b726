"""Reference side of the speed benchmark: runs in the reference scPRINT environment (``.venv-ref``).

``build`` writes a random-weight reference checkpoint in the official format (small shape by default:
d_model 128, 4 layers, 4 heads) over the benchmark genes; ``run`` times one task (embed, denoise, grn) of
the reference model on the benchmark inputs and prints a JSON line with the wall time and the peak
resident memory of this process. The reference's task classes need a lamindb instance, which cannot be
set up offline, so ``run`` drives the model the way they do: ``model._predict`` over batches of the
fixed gene list (``how="some"``), and for the network the reference's own Q/K accumulator
(``model.attn``) and ``GNInfer.aggregate`` (softmax, mean over heads, then the ``thresh`` filtration).

Never imported by sc_print; run with ``.venv-ref/bin/python benchmarks/_speed_reference.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts" / "conformance"))


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB


def build(args: argparse.Namespace) -> None:
    import make_fixtures as mf

    meta = json.loads(Path(args.inputs_json).read_text())
    genes, pos = meta["genes"], meta["gene_pos"]
    spec = copy.deepcopy(mf.LAYOUTS["v1head"])
    spec.update(d_model=args.d_model, nhead=args.nhead, nlayers=args.nlayers, layers_cls=[args.d_model], seed=0)
    torch.manual_seed(0)
    model = mf.build_model(spec, genes, pos)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="scprint_speed_") as root:
        trainer = mf.one_step_fit(model, genes, spec, rng, root)
        trainer.save_checkpoint(args.out)
    mf.rewrite_as_generation(Path(args.out), spec)
    print(json.dumps({"checkpoint": args.out, "genes": len(genes)}))


def run(args: argparse.Namespace) -> None:
    import make_fixtures as mf

    data = np.load(args.inputs_npz)
    counts = data["counts"][: args.n_cells, : args.n_genes].astype(np.float32)
    depth = data["depth"][: args.n_cells].astype(np.float32)
    gene_idx = data["gene_idx"][: args.n_genes]
    model = mf.load_reference(Path(args.ckpt))
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    n_tok = len(mf.reference_token_names(model))
    layers = list(range(model.nlayers))
    with torch.no_grad():
        model.on_predict_epoch_start()
        for s in range(0, len(counts), args.batch_size):
            x = torch.as_tensor(counts[s : s + args.batch_size])
            idx = torch.as_tensor(gene_idx, dtype=torch.long).unsqueeze(0).expand(x.shape[0], -1).contiguous()
            d = torch.as_tensor(depth[s : s + args.batch_size])
            if args.task == "embed":
                model._predict(idx, x, d, predict_mode="none", pred_embedding=model.pred_embedding, keep_output=True)
            elif args.task == "denoise":
                model._predict(idx, x, d, predict_mode="denoise", depth_mult=4, keep_output=True)
            else:
                model._predict(
                    idx,
                    x,
                    d,
                    predict_mode="none",
                    pred_embedding=model.pred_embedding,
                    get_attention_layer=layers,
                    keep_output=False,
                )
        if args.task == "grn":
            from scprint.tasks.grn import GNInfer

            qk = model.attn.get()
            fake = types.SimpleNamespace(
                head_agg="mean",
                comp_attn=True,
                how="given",
                curr_genes=[model.genes[i] for i in gene_idx],
                n_cell_embs=n_tok,
                preprocess="softmax",
                symmetrize=False,
                apc=False,
            )
            full = GNInfer.aggregate(fake, qk, model.genes)
            full[full < 1 / full.shape[0]] = 0  # GNInfer filtration "thresh"
            edges = int((full[n_tok:, n_tok:] > 0).sum())
        else:
            edges = None
    wall = time.perf_counter() - start
    print(
        json.dumps(
            {
                "impl": "reference",
                "task": args.task,
                "n_cells": len(counts),
                "n_genes": len(gene_idx),
                "wall_s": wall,
                "peak_rss_gb": _peak_rss_gb(),
                "edges": edges,
                "batch_size": args.batch_size,
                "threads": args.threads,
            }
        )
    )


def main() -> int:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("LAMIN_SKIP_MIGRATION", "true")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--inputs-json", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--d-model", type=int, default=128)
    b.add_argument("--nhead", type=int, default=4)
    b.add_argument("--nlayers", type=int, default=4)
    r = sub.add_parser("run")
    r.add_argument("--ckpt", required=True)
    r.add_argument("--inputs-npz", required=True)
    r.add_argument("--task", choices=["embed", "denoise", "grn"], required=True)
    r.add_argument("--n-cells", type=int, default=1000)
    r.add_argument("--n-genes", type=int, default=4000)
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    build(args) if args.cmd == "build" else run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
