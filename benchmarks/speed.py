"""Speed and peak memory of sc_print against the reference scPRINT on identical weights and inputs.

Inputs: the 1,000 deepest cells of the 10x frozen PBMC donor A set (``../shared/data``) over its 4,000
(and top 2,000) seurat_v3 highly variable genes, raw counts. Weights: one random-weight checkpoint in the
official format written by the reference package (small shape: d_model 128, 4 layers, 4 heads), loaded
by both. Each (implementation, task, gene count) runs in its own process so its peak resident memory is
its own. The reference runs in ``.venv-ref`` (``scripts/conformance/setup_reference_env.sh``); its tasks
need lamindb, so it is driven like its task classes drive it (see ``_speed_reference.py``).

The reference is slow (about 2 s per cell for the 4,000-gene network on 2 cores), so by default it is
timed on ``--ref-cells`` (50) cells and its time per cell is scaled to 1,000 cells (the work is one forward
per batch plus running sums, linear in cells); its peak memory is reported as measured on those cells.
``--ref-cells 1000`` runs it in full. sc_print runs in bfloat16 autocast with batch 8 by default (its CPU
setting; ``--dtype float32`` for full precision), the reference in float32 (its own CPU setting) with batch
``--ref-batch-size`` (16: its CPU attention materialises per-cell attention, and its default of 64 cells needs
more than 24 GB at 4,000 genes). Part of ``run_all.sh``; about 30 min on 2 cores.

Writes ``benchmarks/results/speed.json``, ``speed.md`` and ``speed_rows.jsonl`` (every measurement as it was taken;
``--from-rows`` rebuilds the tables from such a file). A failed measurement (e.g. out of memory) is recorded, not fatal.

    .venv/bin/python benchmarks/speed.py [--ref-cells 50] [--tasks grn embed denoise] [--genes 2000 4000]
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


def build_result(raw: list[dict], *, machine_info: dict | None = None) -> dict:
    """Pair the rows of the runs (sc_print then reference, per task and gene count) into the result record."""
    rows, scaling, notes = [], [], []
    for row in raw:
        if row.get("error"):
            notes.append(
                f"The {row['impl']} run of `{row['task']}` over {row['n_genes']:,} genes "
                f"({row.get('n_cells', '?')} cells, batch {row.get('batch_size', '?')}) failed: {row['error']}"
            )
        elif row.get("backed"):
            scaling.append(row)
        elif row["impl"] == "sc_print":
            rows.append({"task": row["task"], "n_genes": row["n_genes"], "n_cells": N_CELLS, "sc_print": row})
        else:
            match = [r for r in rows if r["task"] == row["task"] and r["n_genes"] == row["n_genes"]]
            if not match:
                continue
            ref = dict(row)
            scale = N_CELLS / ref["n_cells"]
            ref["wall_s_1000_cells"] = ref["wall_s"] * scale
            ref["extrapolated"] = scale != 1
            match[-1]["reference"] = ref
            match[-1]["speedup"] = ref["wall_s_1000_cells"] / match[-1]["sc_print"]["wall_s"]
            match[-1]["memory_ratio"] = ref["peak_rss_gb"] / match[-1]["sc_print"]["peak_rss_gb"]
    ours = [r["sc_print"] for r in rows]
    if ours:
        notes.append(
            f"sc_print ran with dtype {ours[0].get('dtype')} and batch {ours[0].get('batch_size')}; the reference in "
            "float32 (its CPU setting). Edge counts of the networks are in speed.json for both."
        )
    return {
        "data": "10x frozen PBMC donor A (Zheng et al. 2017), 1,000 deepest cells, top seurat_v3 HVGs (raw counts)",
        "model": "random weights, official checkpoint format written by scprint 2.3.8, d_model 128, 4 layers, 4 heads",
        "machine": machine_info or machine(),
        "rows": rows,
        "embed_memory_scaling": scaling,
        "notes": notes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref-cells", type=int, default=50)
    parser.add_argument(
        "--ref-batch-size", type=int, default=16,
        help="reference batch size: its CPU attention materialises per-cell attention, and its default of 64 cells "
        "needs more than 24 GB at 4,000 genes",
    )  # fmt: skip
    parser.add_argument("--tasks", nargs="+", default=["grn", "embed", "denoise"])
    parser.add_argument("--genes", nargs="+", type=int, default=[2000, 4000])
    parser.add_argument("--batch-size", type=int, default=8, help="sc_print batch size")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument(
        "--memory-scaling", nargs="*", type=int, default=[1, 4, 16],
        help="also embed --scaling-cells cells tiled this many times from a backed .h5ad (peak memory vs cells)",
    )  # fmt: skip
    parser.add_argument("--scaling-cells", type=int, default=250)
    parser.add_argument("--scaling-genes", type=int, default=500)
    parser.add_argument(
        "--from-rows", type=Path, default=None,
        help="rebuild speed.json/.md from a rows file of an earlier run (no new measurement)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    args = parser.parse_args()
    rows_file = args.out.with_name(args.out.stem + "_rows.jsonl")

    if args.from_rows is not None:
        raw = [json.loads(line) for line in args.from_rows.read_text().splitlines() if line.strip()]
        machine_info = next((r["machine"] for r in raw if "machine" in r), None)
        raw = [r for r in raw if "impl" in r]
        return _write(args.out, build_result(raw, machine_info=machine_info))

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
    rows_file.parent.mkdir(parents=True, exist_ok=True)
    rows_file.write_text(json.dumps({"machine": machine()}) + "\n")
    raw: list[dict] = []

    def record(cmd: list[str], what: dict) -> None:
        """Run one measurement; a failure is recorded (and reported) instead of stopping the suite."""
        try:
            row = _run(cmd)
        except RuntimeError as err:
            row = {**what, "error": str(err).strip().splitlines()[-1][:300] or "process failed"}
        raw.append(row)
        with rows_file.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    common = ["--ckpt", str(ckpt), "--inputs-npz", str(npz)]
    for n_genes in args.genes:
        for task in args.tasks:
            record(
                [
                    sys.executable, str(HERE / "_speed_ours.py"), *common, "--task", task,
                    "--n-genes", str(n_genes), "--n-cells", str(N_CELLS),
                    "--batch-size", str(args.batch_size), "--dtype", args.dtype, "--device", args.device,
                ],
                {"impl": "sc_print", "task": task, "n_genes": n_genes, "n_cells": N_CELLS, "batch_size": args.batch_size},
            )  # fmt: skip
            if has_ref:
                record(
                    [
                        str(REF_PYTHON), str(HERE / "_speed_reference.py"), "run", *common, "--task", task,
                        "--n-genes", str(n_genes), "--n-cells", str(args.ref_cells),
                        "--batch-size", str(args.ref_batch_size),
                    ],
                    {"impl": "reference", "task": task, "n_genes": n_genes, "n_cells": args.ref_cells,
                     "batch_size": args.ref_batch_size},
                )  # fmt: skip
    for tile in args.memory_scaling:
        record(
            [
                sys.executable, str(HERE / "_speed_ours.py"), *common, "--task", "embed",
                "--n-genes", str(args.scaling_genes), "--n-cells", str(args.scaling_cells), "--tile", str(tile),
                "--backed", "--batch-size", "64", "--dtype", args.dtype, "--device", args.device,
            ],
            {"impl": "sc_print", "task": "embed", "n_genes": args.scaling_genes, "backed": True},
        )  # fmt: skip
    return _write(args.out, build_result(raw))


def _write(out: Path, result: dict) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(render(result))
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
    missing = [r for r in result["rows"] if not r.get("reference")]
    if missing and timed:
        lines.append("\n– : no reference measurement for this row (see the notes below).")
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
