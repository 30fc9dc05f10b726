"""sc_print side of the speed benchmark: time one task through the public API in a fresh process.

Prints a JSON line with the wall time and the peak resident memory of this process. Run by
``benchmarks/speed.py``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings

import numpy as np
import torch


def main() -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--inputs-npz", required=True)
    parser.add_argument("--task", choices=["embed", "denoise", "grn"], required=True)
    parser.add_argument("--n-cells", type=int, default=1000)
    parser.add_argument("--n-genes", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=1, help="repeat the cells this many times (memory scaling)")
    parser.add_argument("--backed", action="store_true", help="read the counts from a backed .h5ad")
    args = parser.parse_args()

    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    import sc_print as scp

    torch.set_num_threads(args.threads)
    data = np.load(args.inputs_npz, allow_pickle=False)
    genes = [str(g) for g in data["genes"][: args.n_genes]]
    counts = sp.csr_matrix(data["counts"][: args.n_cells, : args.n_genes].astype(np.float32))
    depth = data["depth"][: args.n_cells].astype(np.float64)
    if args.tile > 1:
        counts = sp.vstack([counts] * args.tile, format="csr")
        depth = np.tile(depth, args.tile)
    adata = ad.AnnData(counts, var=pd.DataFrame(index=genes))
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    # the cell depth of the full profile, as the reference receives it
    adata.obs["scprint_depth"] = depth
    adata.var["scprint_gene_id"] = genes
    if args.backed:
        import tempfile
        from pathlib import Path

        path = Path(tempfile.mkdtemp()) / "cells.h5ad"
        adata.write_h5ad(path)
        del adata, counts
        adata = ad.read_h5ad(path, backed="r")
    model = scp.load_model(args.ckpt, device=args.device)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else None
    accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
    common = {"model": model, "batch_size": args.batch_size, "accelerator": accelerator, "dtype": dtype}
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    if args.task == "embed":
        scp.tl.embed(adata, mode="fixed", genes=genes, **common)
    elif args.task == "denoise":
        scp.tl.denoise(adata, genes=genes, depth_mult=4.0, **common)
    else:
        scp.tl.grn(adata, genes=genes, filtration="threshold", **common)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    edges = int(adata.varp["scprint_grn"].nnz) if args.task == "grn" else None
    out = {
        "impl": "sc_print",
        "task": args.task,
        "n_cells": adata.n_obs,
        "n_genes": len(genes),
        "wall_s": wall,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "edges": edges,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "dtype": args.dtype,
        "device": args.device,
        "backed": args.backed,
    }
    if args.device.startswith("cuda"):
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1024**3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
