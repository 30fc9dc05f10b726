"""One-go GPU check of sc_print: GPU tests, Triton kernels, embed/denoise/grn timings, genome-wide network, pretraining.

Written for a bare H100/H200 with torch + Triton (our other dependencies carried as wheels, see
``benchmarks/gpu/wheels.txt`` and ``download_wheels.sh``) and no network; everything runs in one process within a
time budget (``--budget-s``, default 450 s: sections that would start after it are recorded as skipped). Data are
synthetic (negative-binomial counts over genes of the embedded default model's vocabulary), models are the embedded
default model (genome-wide network) or random-weight ``small`` / ``medium`` presets (timings do not depend on the
weights). Writes ``<out>/gpu.json`` and ``<out>/gpu.md``.

Sections:

``gpu_tests``
    ``pytest -m gpu`` on the test suite (a subprocess; on CPU it collects them and they skip).
``kernels``
    The Triton kernels of ``sc_print.grn._triton`` against the torch path: first call (compile) and steady-state
    time, agreement (max abs difference, edge counts), for mean-Q/K networks of ``T + G`` slots and the
    mean-attention accumulation of a batch of cells.
``tasks``
    ``sp.tl.embed`` / ``sp.tl.denoise`` / ``sp.tl.grn`` (both aggregations) for the presets at ``--n-cells`` ×
    2,000 / 4,000 genes (fixed context of all genes), wall time and peak GPU memory.
``genome_wide``
    ``sp.tl.grn(genes="genome_wide")`` with the default model over every vocabulary gene (random contexts of
    2,000 expressed genes per cell), ``mean_qk`` + threshold; wall time, peak GPU memory (or process RSS on CPU)
    and the number of edges.
``pretraining``
    ``ScPrint.train`` throughput (cells/s, bf16 mixed precision on CUDA) of the small preset.

``--dry-run`` runs every section at tiny shapes on CPU (``TRITON_INTERPRET=1`` for the kernels) so CI keeps this
script working; ``--device cpu --only tasks,genome_wide`` gives the CPU numbers of the same code.

Run: ``python benchmarks/gpu/run.py [--dry-run] [--out DIR] [--only SECTION,...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("gpu_tests", "kernels", "tasks", "genome_wide", "pretraining")
TASKS = ("embed", "denoise", "grn mean_qk", "grn mean_attention")


def forward_gflop(cfg, n_tokens: int, *, qk_only: bool = False) -> float:
    """Matrix-product GFLOP of one cell's forward through the transformer (``n_tokens`` tokens, MLP 4d).

    Per layer ``24 S d² + 4 S² d`` (Q/K/V and output projections, scores and weighted sum, MLP); with ``qk_only``
    (the network path) the last layer needs its Q/K/V projections only.
    """
    d, n_layers, s = cfg.d_model, cfg.nlayers, n_tokens
    full = 24 * s * d * d + 4 * s * s * d
    return ((n_layers - 1) * full + 6 * s * d * d if qk_only else n_layers * full) / 1e9


def matmul_gflops(device: str) -> dict[str, float]:
    """Measured dense matrix-product throughput (2048³ float32 and bfloat16) of this device."""
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(2048, 2048, device=device, dtype=dtype)
        a @ a
        sync(device)
        t0 = time.perf_counter()
        for _ in range(5):
            a @ a
        sync(device)
        out[f"matmul_{name}_gflops"] = 5 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9
    return out


# ---------------------------------------------------------------------------------------------------- helpers
def sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def peak_reset(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: Any) -> dict[str, float]:
    import torch

    out = {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}
    if torch.device(device).type == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1024**3
    return out


def timed_call(fn, device, repeats: int = 1) -> tuple[float, float, Any]:
    """(first call seconds, median of ``repeats`` further calls (or the first), last result)."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return first, float(np.median(times)) if times else first, out


def synthetic_adata(genes: list[str], n_cells: int, *, seed: int = 0, expressed: float = 0.12):
    """Negative-binomial counts, every gene expressed in some cells, about ``expressed`` of the genes per cell."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    gen = np.random.default_rng(seed)
    n = len(genes)
    rows, cols, vals = [], [], []
    per_cell = max(1, int(expressed * n))
    base = gen.lognormal(0.0, 1.0, size=n)
    for c in range(n_cells):
        idx = np.sort(gen.choice(n, size=per_cell, replace=False))
        v = gen.negative_binomial(2, 2 / (2 + base[idx] * 2)) + 1
        rows.append(np.full(per_cell, c))
        cols.append(idx)
        vals.append(v)
    x = sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(n_cells, n)
    )
    adata = ad.AnnData(x, var=pd.DataFrame(index=list(genes)))
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    return adata


_DEFAULT: list[Any] = []


def default_model():
    """The embedded default model (loaded once)."""
    if not _DEFAULT:
        import sc_print as scp

        _DEFAULT.append(scp.load_model("default"))
    return _DEFAULT[0]


def preset_model(adata, size: str, device: str):
    import torch

    from sc_print.model import ScPrint

    torch.manual_seed(0)
    ScPrint.setup_anndata(adata)
    model = ScPrint(adata, size=size, dropout=0.0)
    model.module.to(device)
    model.module.eval()
    return model


# ---------------------------------------------------------------------------------------------------- sections
def gpu_tests(args) -> dict[str, Any]:
    target = [str(ROOT / "tests" / "test_triton.py")] if args.dry_run else [str(ROOT / "tests")]
    cmd = [sys.executable, "-m", "pytest", *target, "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.tests_timeout, check=False)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    # pytest's exit code 5 = nothing collected (no test marked gpu in the target)
    return {
        "returncode": proc.returncode,
        "summary": last,
        "wall_s": time.perf_counter() - t0,
        "ok": proc.returncode in (0, 5),
    }


def kernels(args) -> list[dict[str, Any]]:
    import torch

    from sc_print.grn import attention_network
    from sc_print.grn._mean_attention import attention_sum_torch

    dev = args.device
    if not (dev.startswith("cuda") or os.environ.get("TRITON_INTERPRET") == "1"):
        return [{"name": "skipped", "ok": True, "reason": "no CUDA and TRITON_INTERPRET unset"}]
    from sc_print.grn import _triton

    rows = []
    gen = torch.Generator().manual_seed(0)
    for n_genes, n_layers in args.kernel_shapes:
        n = n_genes + 4
        q = torch.randn(n_layers, n, 4, 32, generator=gen).to(dev)
        k = torch.randn(n_layers, n, 4, 32, generator=gen).to(dev)
        for filtration in ("threshold", "top_k"):
            opts = {"n_tokens": 4, "filtration": filtration, "top_k": 20}

            def net(backend: str, q=q, k=k, opts=opts):
                return attention_network(q, k, backend=backend, **opts)

            first, steady, out = timed_call(lambda: net("triton"), dev, args.repeats)
            _, torch_s, ref = timed_call(lambda: net("torch"), dev, 0)
            diff = abs(out - ref)
            rows.append({
                "name": f"mean_qk {filtration}", "genes": n_genes, "heads": n_layers * 4, "first_s": first,
                "steady_s": steady, "torch_s": torch_s, "edges": int(out.nnz), "edges_torch": int(ref.nnz),
                "max_abs_diff": float(diff.max()) if diff.nnz else 0.0,
                "ok": bool((diff.max() if diff.nnz else 0.0) < 1e-4 and abs(out.nnz - ref.nnz) <= 1e-4 * ref.nnz + 2),
            })  # fmt: skip
    b, h, s = args.attention_shape
    qa = torch.randn(b, h, s, 32, generator=gen).to(dev)
    ka = torch.randn(b, h, s, 32, generator=gen).to(dev)
    w = torch.full((h,), 1 / h)
    slots = torch.stack([torch.randperm(4 * s, generator=gen)[:s] for _ in range(b)]).to(dev)
    acc_t = torch.zeros(4 * s, 4 * s, device=dev)
    acc_r = torch.zeros(4 * s, 4 * s, device=dev)
    first, steady, _ = timed_call(lambda: _triton.attention_sum(qa, ka, w, slots, acc_t), dev, args.repeats)
    _, torch_s, _ = timed_call(lambda: attention_sum_torch(qa, ka, w, slots, acc_r), dev, 0)
    calls = 1 + args.repeats
    diff = float((acc_t / calls - acc_r).abs().max())
    rows.append({
        "name": "mean_attention batch", "cells": b, "tokens": s, "heads": h, "first_s": first, "steady_s": steady,
        "torch_s": torch_s, "max_abs_diff": diff, "ok": diff < 1e-4,
    })  # fmt: skip
    return rows


def tasks(args) -> list[dict[str, Any]]:
    import sc_print as scp

    vocab = default_model().vocab.ids
    dev = args.device
    common = {"accelerator": "gpu" if dev.startswith("cuda") else "cpu", "batch_size": args.batch_size}
    rows = []
    for size in args.presets:
        for n_genes in args.task_genes:
            genes = list(vocab[:n_genes])
            adata = synthetic_adata(genes, args.n_cells, expressed=0.5)
            model = preset_model(adata.copy(), size, dev)
            calls = {
                "embed": lambda a, m=model, g=genes: scp.tl.embed(a, model=m, mode="fixed", genes=g, **common),
                "denoise": lambda a, m=model, g=genes: scp.tl.denoise(a, model=m, genes=g, **common),
                "grn mean_qk": lambda a, m=model, g=genes: scp.tl.grn(a, model=m, genes=g, **common),
                "grn mean_attention": lambda a, m=model, g=genes: scp.tl.grn(
                    a, model=m, genes=g, aggregation="mean_attention", **common
                ),
            }
            for task, call in calls.items():
                if task not in args.task_names:
                    continue
                if over_budget(args):
                    rows.append({"preset": size, "genes": n_genes, "task": task, "skipped": "time budget"})
                    continue
                a = adata.copy()
                peak_reset(dev)
                sync(dev)
                t0 = time.perf_counter()
                call(a)
                sync(dev)
                row = {"preset": size, "genes": n_genes, "cells": args.n_cells, "task": task}
                row["wall_s"] = time.perf_counter() - t0
                row.update(peak_gb(dev))
                if task.startswith("grn"):
                    row["edges"] = int(a.varp["scprint_grn"].nnz)
                cfg = model.net.config
                tokens = n_genes + model.net.n_cell_tokens
                row["model_gflop"] = args.n_cells * forward_gflop(cfg, tokens, qk_only=task.startswith("grn"))
                row["achieved_gflops"] = row["model_gflop"] / row["wall_s"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def genome_wide(args) -> list[dict[str, Any]]:
    import sc_print as scp

    model = default_model()
    dev = args.device
    model.module.to(dev)
    genes = list(model.vocab.ids[: args.genome_genes] if args.genome_genes else model.vocab.ids)
    adata = synthetic_adata(genes, args.genome_cells, expressed=args.genome_expressed)
    rows = []
    for aggregation, filtration in args.genome_runs:
        if over_budget(args):
            rows.append({"aggregation": aggregation, "skipped": "time budget"})
            continue
        a = adata.copy()
        peak_reset(dev)
        sync(dev)
        t0 = time.perf_counter()
        scp.tl.grn(
            a, model=model, genes="genome_wide", max_len=args.genome_max_len, aggregation=aggregation,
            filtration=filtration, batch_size=args.batch_size, accelerator="gpu" if dev.startswith("cuda") else "cpu",
        )  # fmt: skip
        sync(dev)
        row = {
            "aggregation": aggregation, "filtration": filtration, "cells": adata.n_obs, "vocab_genes": len(genes),
            "network_genes": int(a.uns["scprint_grn"]["n_genes"]["all"]), "max_len": args.genome_max_len,
            "wall_s": time.perf_counter() - t0, "edges": int(a.varp["scprint_grn"].nnz), **peak_gb(dev),
        }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def pretraining(args) -> list[dict[str, Any]]:
    from sc_print.model import ScPrint

    vocab = default_model().vocab.ids
    adata = synthetic_adata(list(vocab[: args.train_genes]), args.train_cells, expressed=0.3)
    ScPrint.setup_anndata(adata)
    model = ScPrint(adata, size=args.train_preset, max_len=args.train_max_len)
    cuda = args.device.startswith("cuda")
    kw = {
        "batch_size": args.train_batch, "accelerator": "gpu" if cuda else "cpu", "devices": 1, "warmup_steps": 1,
        "enable_progress_bar": False, "precision": "bf16-mixed" if cuda else None, "weighted_sampling": False,
    }  # fmt: skip
    model.train(max_steps=2, **kw)  # warm-up: compile / allocator
    sync(args.device)
    t0 = time.perf_counter()
    model.train(max_steps=args.train_steps, **kw)
    sync(args.device)
    wall = time.perf_counter() - t0
    cells = args.train_steps * args.train_batch
    return [{
        "preset": args.train_preset, "steps": args.train_steps, "batch": args.train_batch, "max_len": args.train_max_len,
        "wall_s": wall, "cells_per_s": cells / wall, "precision": kw["precision"] or "32", **peak_gb(args.device),
    }]  # fmt: skip


# ---------------------------------------------------------------------------------------------------- driver
def over_budget(args) -> bool:
    return time.perf_counter() - args.t_start > args.budget_s


def configure(args) -> None:
    if args.dry_run:
        args.device = "cpu"
        args.kernel_shapes = [(37, 1)]
        args.attention_shape = (2, 2, 21)
        args.presets, args.task_genes, args.n_cells = ["tiny"], [30], 12
        args.genome_genes, args.genome_cells, args.genome_max_len, args.genome_expressed = 300, 16, 40, 0.3
        args.train_preset, args.train_genes, args.train_cells = "tiny", 60, 32
        args.train_steps, args.train_batch, args.train_max_len = 2, 8, 32
        args.repeats, args.batch_size = 0, 8
    else:
        args.kernel_shapes = [(2000, 4), (4000, 8), (23822, 4)]
        args.attention_shape = (16, 16, 2004)
        args.presets, args.task_genes = ["small", "medium"], [2000, 4000]
        args.genome_genes, args.genome_cells, args.genome_max_len, args.genome_expressed = 0, args.n_cells, 2000, 0.12
        args.train_preset, args.train_genes, args.train_cells = "small", 4000, 4096
        args.train_steps, args.train_batch, args.train_max_len = 30, 64, 1024
        args.repeats = 3
    args.genome_runs = [("mean_qk", "threshold"), ("mean_qk", "top_k"), ("mean_attention", "top_k")]
    if args.genome_only_qk:
        args.genome_runs = args.genome_runs[:1]


def environment(args) -> dict[str, Any]:
    import torch

    env = {
        "python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "device": args.device, "triton_interpret": os.environ.get("TRITON_INTERPRET"),
    }  # fmt: skip
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if not args.dry_run:
        env.update(matmul_gflops(args.device))
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["gpu_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 1024**3
    return env


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# GPU check of sc_print ({'dry run, CPU' if report['dry_run'] else report['env'].get('gpu', 'CPU')})",
        "",
    ]
    lines.append("Environment: " + ", ".join(f"{k} {v}" for k, v in report["env"].items() if v is not None) + ".")
    lines.append(f"Total wall time {report['wall_s']:.0f} s.")
    for section in SECTIONS:
        rows = report.get(section)
        if not rows:
            continue
        rows = rows if isinstance(rows, list) else [rows]
        keys = list(dict.fromkeys(k for row in rows for k in row))
        lines += ["", f"## {section}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for row in rows:
            cells = [f"{row[k]:.4g}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU (CI)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="gpu", help="report file stem")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--n-cells", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--budget-s", type=float, default=450.0)
    parser.add_argument("--tests-timeout", type=float, default=150.0)
    parser.add_argument("--genome-only-qk", action="store_true", help="genome-wide: mean_qk threshold only")
    parser.add_argument("--genome-cells", type=int, default=None, help="cells of the genome-wide network")
    parser.add_argument("--presets", default=None, help="tasks: comma-separated presets (default small,medium)")
    parser.add_argument("--task-genes", default=None, help="tasks: comma-separated gene counts (default 2000,4000)")
    parser.add_argument("--tasks", default=None, help="tasks: comma-separated subset of " + ",".join(TASKS))
    args = parser.parse_args()
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    genome_cells = args.genome_cells
    overrides = {"presets": args.presets, "task_genes": args.task_genes}
    configure(args)
    if genome_cells:
        args.genome_cells = genome_cells
    if overrides["presets"]:
        args.presets = overrides["presets"].split(",")
    if overrides["task_genes"]:
        args.task_genes = [int(g) for g in overrides["task_genes"].split(",")]
    args.task_names = args.tasks.split(",") if args.tasks else list(TASKS)
    args.t_start = time.perf_counter()
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    report: dict[str, Any] = {"dry_run": args.dry_run, "env": environment(args), "errors": {}}
    failed = False
    for section in SECTIONS:
        if section not in only:
            continue
        if over_budget(args):
            report[section] = {"skipped": "time budget"}
            continue
        t0 = time.perf_counter()
        try:
            report[section] = globals()[section](args)
        except Exception:  # noqa: BLE001 - one failing section must not lose the others' figures
            report["errors"][section] = traceback.format_exc()
            print(report["errors"][section], file=sys.stderr, flush=True)
            failed = True
        print(f"[{section}] {time.perf_counter() - t0:.1f} s", flush=True)
    report["wall_s"] = time.perf_counter() - args.t_start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / f"{args.name}.md").write_text(markdown(report))
    print(f"wrote {args.out / args.name}.json / .md in {report['wall_s']:.0f} s")
    bad = [row for row in report.get("kernels") or [] if not row.get("ok")]
    gpu = report.get("gpu_tests")
    return 1 if failed or bad or (isinstance(gpu, dict) and gpu.get("ok") is False) else 0


if __name__ == "__main__":
    sys.exit(main())
