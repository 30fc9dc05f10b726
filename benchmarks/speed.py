"""Speed and peak memory of sc_print against the reference scPRINT on identical weights and inputs.

Inputs: the 1,000 deepest cells of the 10x frozen PBMC donor A set (``../shared/data``) over its 4,000
(and top 2,000) seurat_v3 highly variable genes, raw counts. Weights: one random-weight checkpoint in the
official format written by the reference package (small shape: d_model 128, 4 layers, 4 heads), loaded
by both. Each (implementation, task, gene count) runs in its own process so its peak resident memory is
its own. The reference runs in ``.venv-ref`` (``scripts/conformance/setup_reference_env.sh``); its tasks
need lamindb, so it is driven like its task classes drive it (see ``_speed_reference.py``).

The reference is slow (about 2 s per cell for the 4,000-gene network on 2 cores), so by default it is
timed on ``--ref-cells`` cells and its time per cell is scaled to 1,000 cells (the work is one forward
per batch plus running sums, linear in cells); its peak memory is reported as measured on those cells.
``--ref-cells 1000`` runs it in full.

Writes ``benchmarks/results/speed.json`` and ``benchmarks/results/speed.md``.

    .venv/bin/python benchmarks/speed.py [--ref-cells 100] [--tasks grn embed denoise] [--genes 2000 4000]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
RESULTS = HERE / "results"
SHARED = REPO.parent / "shared" / "data"
REF_PYTHON = REPO / ".venv-ref" / "bin" / "python"
N_CELLS, N_GENES = 1000, 4000


def machine() -> dict:
    import torch

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import os

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def prepare_inputs() -> tuple[Path, Path]:
    """1,000 deepest donor-A cells x 4,000 HVGs (Ensembl ids, HVG-rank order) → npz + gene json."""
    npz, meta = WORK / "speed_inputs.npz", WORK / "speed_genes.json"
    if npz.exists() and meta.exists():
        return npz, meta
    import anndata as ad
    import scanpy as sc

    from sc_print.data import load_gene_table, map_gene_names

    adata = ad.read_h5ad(SHARED / "pbmc_10x_small_sets" / "frozen_pbmc_donorA_2896cells_raw.h5ad")
    ids, _ = map_gene_names(adata.var_names, organism="human")
    ids = np.asarray(ids, dtype=str)
    _, first = np.unique(ids, return_index=True)
    keep = np.zeros(adata.n_vars, dtype=bool)
    keep[first] = True
    keep &= ids != ""
    adata = adata[:, keep].copy()
    adata.var_names = ids[keep]
    depth = np.asarray(adata.X.sum(1)).ravel()
    cells = np.sort(np.argsort(-depth, kind="stable")[:N_CELLS])
    adata = adata[cells].copy()
    sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=N_GENES)
    rank = adata.var["highly_variable_rank"].to_numpy()
    order = np.argsort(np.where(np.isnan(rank), np.inf, rank), kind="stable")[:N_GENES]
    genes = adata.var_names[order].to_numpy().astype(str)
    counts = adata[:, order].X.toarray().astype(np.float32)
    pos = load_gene_table()["pos"].reindex(genes).fillna(0).astype(int).tolist()
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        npz, counts=counts, depth=depth[cells].astype(np.float32), genes=genes, gene_idx=np.arange(N_GENES)
    )
    meta.write_text(json.dumps({"genes": genes.tolist(), "gene_pos": [max(int(p), 1) for p in pos]}))
    return npz, meta


def _run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    if out.returncode != 0:
        msg = f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}"
        raise RuntimeError(msg)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref-cells", type=int, default=100)
    parser.add_argument(
        "--ref-batch-size", type=int, default=16,
        help="reference batch size: its CPU attention materialises per-cell attention, and its default of 64 cells "
        "needs more than 24 GB at 4,000 genes",
    )  # fmt: skip
    parser.add_argument("--tasks", nargs="+", default=["grn", "embed", "denoise"])
    parser.add_argument("--genes", nargs="+", type=int, default=[2000, 4000])
    parser.add_argument("--batch-size", type=int, default=16, help="sc_print batch size")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument(
        "--memory-scaling", nargs="*", type=int, default=[1, 4, 16],
        help="also embed --scaling-cells cells tiled this many times from a backed .h5ad (peak memory vs cells)",
    )  # fmt: skip
    parser.add_argument("--scaling-cells", type=int, default=250)
    parser.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    args = parser.parse_args()

    npz, meta = prepare_inputs()
    ckpt = WORK / "speed_small_random.ckpt"
    has_ref = REF_PYTHON.exists() and not args.no_reference
    if not ckpt.exists():
        if not REF_PYTHON.exists():
            msg = f"{ckpt} is missing and the reference environment ({REF_PYTHON}) is not there to build it."
            raise SystemExit(msg)
        _run(
            [
                str(REF_PYTHON),
                str(HERE / "_speed_reference.py"),
                "build",
                "--inputs-json",
                str(meta),
                "--out",
                str(ckpt),
            ]
        )
    rows = []
    for n_genes in args.genes:
        for task in args.tasks:
            ours = _run(
                [
                    sys.executable,
                    str(HERE / "_speed_ours.py"),
                    "--ckpt", str(ckpt), "--inputs-npz", str(npz), "--task", task,
                    "--n-genes", str(n_genes), "--n-cells", str(N_CELLS),
                    "--batch-size", str(args.batch_size), "--dtype", args.dtype, "--device", args.device,
                ]
            )  # fmt: skip
            row = {"task": task, "n_genes": n_genes, "n_cells": N_CELLS, "sc_print": ours}
            print(json.dumps(ours), flush=True)
            if has_ref:
                ref = _run(
                    [
                        str(REF_PYTHON), str(HERE / "_speed_reference.py"), "run",
                        "--ckpt", str(ckpt), "--inputs-npz", str(npz), "--task", task,
                        "--n-genes", str(n_genes), "--n-cells", str(args.ref_cells),
                        "--batch-size", str(args.ref_batch_size),
                    ]
                )  # fmt: skip
                print(json.dumps(ref), flush=True)
                scale = N_CELLS / ref["n_cells"]
                ref["wall_s_1000_cells"] = ref["wall_s"] * scale
                ref["extrapolated"] = scale != 1
                row["reference"] = ref
                row["speedup"] = ref["wall_s_1000_cells"] / ours["wall_s"]
                row["memory_ratio"] = ref["peak_rss_gb"] / ours["peak_rss_gb"]
            rows.append(row)
    scaling = []
    for tile in args.memory_scaling:
        run = _run(
            [
                sys.executable, str(HERE / "_speed_ours.py"),
                "--ckpt", str(ckpt), "--inputs-npz", str(npz), "--task", "embed", "--n-genes", "2000",
                "--n-cells", str(args.scaling_cells), "--tile", str(tile), "--backed", "--batch-size", "64",
                "--dtype", args.dtype, "--device", args.device,
            ]
        )  # fmt: skip
        print(json.dumps(run), flush=True)
        scaling.append(run)
    result = {
        "data": "10x frozen PBMC donor A (Zheng et al. 2017), 1,000 deepest cells, top seurat_v3 HVGs (raw counts)",
        "model": "random weights, official checkpoint format written by scprint 2.3.8, d_model 128, 4 layers, 4 heads",
        "machine": machine(),
        "reference_cells": args.ref_cells if has_ref else None,
        "rows": rows,
        "embed_memory_scaling": scaling,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(render(result))
    print(render(result))
    return 0


def render(result: dict) -> str:
    """Markdown table of a speed result."""
    m = result["machine"]
    lines = [
        f"Speed and peak memory, {result['data']}; {result['model']}; machine: {m['cpu']}, {m['cores']} cores"
        + (f", {m['gpu']}" if m.get("gpu") else "")
        + f", torch {m['torch']}.",
        "",
        "| task | genes | sc_print time (s) | sc_print peak RSS (GB) | reference time (s) | reference peak RSS (GB) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ours, ref = r["sc_print"], r.get("reference")
        ref_t = "–" if ref is None else f"{ref['wall_s_1000_cells']:.0f}" + (" *" if ref["extrapolated"] else "")
        ref_m = "–" if ref is None else f"{ref['peak_rss_gb']:.2f}" + (" *" if ref["extrapolated"] else "")
        speed = "–" if ref is None else f"{r['speedup']:.1f}×"
        lines.append(
            f"| {r['task']} | {r['n_genes']:,} | {ours['wall_s']:.0f} | {ours['peak_rss_gb']:.2f} | {ref_t} | {ref_m} | {speed} |"
        )
    if result.get("embed_memory_scaling"):
        lines += [
            "",
            f"Peak memory of `sp.tl.embed` ({result['embed_memory_scaling'][0]['n_genes']:,} genes, fixed context, "
            "backed `.h5ad`) as the number of cells grows:",
            "",
            "| cells | time (s) | peak RSS (GB) |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['n_cells']:,} | {r['wall_s']:.0f} | {r['peak_rss_gb']:.2f} |" for r in result["embed_memory_scaling"]
        ]
    timed = sorted({r["reference"]["n_cells"] for r in result["rows"] if r.get("reference")})
    if timed and timed != [N_CELLS]:
        lines.append(
            f"\n\\* reference timed on {' or '.join(map(str, timed))} cells (see `speed.json`) and scaled to {N_CELLS} "
            "(time is linear in cells); its peak memory is as measured on those cells."
        )
    for note in result.get("notes", []):
        lines.append(f"\n{note}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
