"""Atlas scale: ``sc-print embed`` over backed h5ad files of 10^3 .. 10^6 cells, in 1 and 2 processes.

Data: the 2,896 real PBMCs of ``pbmc_10x_small_sets/frozen_pbmc_donorA_2896cells_raw.h5ad`` (raw UMI counts),
restricted to their 500 most variable genes (scanpy ``seurat_v3``) and **tiled** (the same cells repeated, with
new cell names) into files of 10^3, 10^4, 10^5 and 10^6 cells, written in anndata's h5ad CSR layout. The context
is fixed: ``--mode all`` over the 500 genes of the file (every cell sees the same 500 genes).

Each row runs the real command line, ``sc-print embed FILE -o OUT --mode all --accelerator cpu --devices D``, in a
fresh process, and polls ``VmHWM`` (the kernel's peak resident memory) of every process of the run. Cells per
second are measured over the embedding phase (from the first to the last update of its progress bar). Rows with
``cells_measured < n_obs`` are a measured prefix: the run is stopped after ``--prefix-s`` seconds of embedding
(the peak memory is measured on the big file; memory does not grow with the number of cells processed, since
the counts are read one block of rows at a time) and the time for 10^6 cells is extrapolated from the measured
rate plus the measured validation pass.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, data_file, display_path, machine_info, write_results

SIZES = (1_000, 10_000, 100_000, 1_000_000)
SOURCE = ("pbmc_10x_small_sets", "frozen_pbmc_donorA_2896cells_raw.h5ad")
N_GENES = 500
_PROGRESS = re.compile(r"sc_print embed[^\r\n]*?(\d+)/(\d+)")


def build_files(folder: Path, sizes: tuple[int, ...]) -> dict[int, Path]:
    """Tiled h5ad files (written once; reused when present)."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc
    from anndata.io import write_elem

    src = data_file(*SOURCE)
    base = ad.read_h5ad(src)
    hvg = sc.pp.highly_variable_genes(base, n_top_genes=N_GENES, flavor="seurat_v3", inplace=False)
    base = base[:, hvg["highly_variable"].to_numpy()].copy()
    X = base.X.tocsr().astype(np.float32)
    X.sort_indices()
    keep = np.flatnonzero(np.diff(X.indptr) > 0)  # cells with counts on these genes
    X = X[keep]
    out = {}
    folder.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        path = folder / f"tiled_{n}.h5ad"
        out[n] = path
        if path.is_file():
            continue
        tmp = path.with_suffix(".tmp.h5ad")
        reps = -(-n // X.shape[0])
        rows = np.arange(n) % X.shape[0]
        lengths = np.diff(X.indptr)[rows]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        with h5py.File(tmp, "w") as f:
            f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
            g = f.create_group("X")
            g.attrs["encoding-type"], g.attrs["encoding-version"] = "csr_matrix", "0.1.0"
            g.attrs["shape"] = (n, X.shape[1])
            data = g.create_dataset(
                "data", shape=(indptr[-1],), dtype=np.float32, chunks=(min(1 << 16, int(indptr[-1])),)
            )
            indices = g.create_dataset(
                "indices", shape=(indptr[-1],), dtype=np.int32, chunks=(min(1 << 16, int(indptr[-1])),)
            )
            g.create_dataset("indptr", data=indptr)
            pos = 0
            for r in range(reps):  # one copy of the base cells at a time
                take = min(X.shape[0], n - r * X.shape[0])
                nnz = int(X.indptr[take])
                data[pos : pos + nnz] = X.data[:nnz]
                indices[pos : pos + nnz] = X.indices[:nnz]
                pos += nnz
            obs = pd.DataFrame(index=pd.Index([f"cell{i}" for i in range(n)]))
            write_elem(f, "obs", obs)
            write_elem(f, "var", pd.DataFrame(index=base.var_names.astype(str)))
            write_elem(f, "uns", {})
        os.replace(tmp, path)
    return out


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def _hwm(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_cli(path: Path, out: Path, devices: int, *, prefix_s: float | None, batch_size: int) -> dict:
    """One ``sc-print embed`` run: peak memory per process, embedding rate, wall time."""
    cli = Path(sys.executable).with_name("sc-print")
    cmd = [str(cli), "embed", str(path), "-o", str(out), "--overwrite", "--mode", "all", "--accelerator", "cpu"]
    cmd += ["--devices", str(devices), "--batch-size", str(batch_size)]
    err_path = out.with_suffix(".stderr")
    t0 = time.perf_counter()
    with err_path.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        peaks: dict[int, float] = {}
        first = last = None
        done = total = 0
        stopped = False
        while proc.poll() is None:
            for p in _tree(proc.pid):
                hwm = _hwm(p)
                if hwm is not None:
                    peaks[p] = max(peaks.get(p, 0.0), hwm)
            text = err_path.read_text(errors="replace")
            found = _PROGRESS.findall(text)
            if found:
                now = time.perf_counter()
                d, t = map(int, found[-1])
                if first is None:
                    first = now
                if d != done:
                    done, total, last = d, t, now
            if prefix_s is not None and first is not None and time.perf_counter() - first > prefix_s:
                for p in reversed(_tree(proc.pid)):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                stopped = True
                break
            time.sleep(0.2)
        proc.wait()
    wall = time.perf_counter() - t0
    stderr = err_path.read_text(errors="replace")
    if not stopped and proc.returncode != 0:
        msg = f"sc-print failed ({proc.returncode}):\n{stderr[-2000:]}"
        raise RuntimeError(msg)
    stdout = proc.stdout.read() if proc.stdout else ""
    return {
        "peaks_mb": sorted(peaks.values(), reverse=True),
        "first_progress_s": None if first is None else first - t0,
        "progress": [done, total],
        "embed_s": None if first is None or last is None else last - first,
        "wall_s": wall,
        "stopped": stopped,
        "stdout": stdout[-1500:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "_work" / "scale")
    parser.add_argument("--prefix-s", type=float, default=60.0, help="seconds of embedding on the 10^5/10^6 files")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--full-up-to", type=int, default=10_000, help="larger files are a measured prefix")
    parser.add_argument("--previous", type=Path, default=None, help="JSON lines of rows already measured (kept)")
    args = parser.parse_args()
    t_start = time.perf_counter()
    machine = machine_info()
    machine["load_average_at_start"] = list(os.getloadavg())
    files = build_files(args.work, tuple(args.sizes))
    rows = []
    if args.previous is not None:
        lines = args.previous.read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.startswith('{"n_obs"')]
    width = None  # float32 values per cell in .obsm, from the first full run's summary
    for n, path in files.items():
        for devices in (1, 2):
            if any(r["n_obs"] == n and r["processes"] == devices for r in rows):
                continue
            full = n <= args.full_up_to
            out = args.work / f"out_{n}_{devices}.h5ad"
            # 2 processes report progress per block of 512 cells of rank 0: give the prefix twice the time
            prefix_s = None if full else args.prefix_s * devices
            r = run_cli(path, out, devices, prefix_s=prefix_s, batch_size=args.batch_size)
            done, total = r["progress"]
            widths = [int(w) for w in re.findall(r"\.obsm\['[^']+'\] \(\d+, (\d+)\)", r["stdout"])]
            width = (
                width
                or (sum(widths) if widths else None)
                or next((1000 * r["outputs_mb"] / 4 / r["n_obs"] * 1000 for r in rows if r.get("outputs_mb")), None)
            )
            # progress counts batches (1 process) or rank-0 cells (2 processes); cells embedded by all processes:
            cells = (done * args.batch_size if devices == 1 else done * devices) if not full else n
            cells = min(cells, n)
            embed_s = r["embed_s"] if r["embed_s"] else float("nan")
            rate = cells / embed_s if embed_s and embed_s > 0 else float("nan")
            setup_s = r["first_progress_s"] or float("nan")  # imports, model load, validation pass, launch
            row = {
                "n_obs": n,
                "processes": devices,
                "cells_measured": cells,
                "measured": "full" if full else f"prefix ({prefix_s:.0f} s of embedding)",
                "cells_per_s": rate,
                "peak_rss_mb_per_process": [round(p, 1) for p in r["peaks_mb"]],
                "peak_rss_mb_max": round(max(r["peaks_mb"]), 1) if r["peaks_mb"] else None,
                "setup_s": setup_s,
                "embed_s": embed_s,
                "wall_s": r["wall_s"],
                "embed_h_per_1e6_cells": 1e6 / rate / 3600,
                "outputs_mb": None if width is None else round(n * width * 4 / 1e6, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            out.unlink(missing_ok=True)
    small = {r["processes"]: r["peak_rss_mb_max"] for r in rows if r["n_obs"] == min(files)}
    big = {r["processes"]: r["peak_rss_mb_max"] for r in rows if r["n_obs"] == max(files)}
    summary = [
        {
            "processes": p,
            "peak_rss_mb_small": small[p],
            "peak_rss_mb_big": big[p],
            "ratio": big[p] / small[p],
            "within_2x": big[p] / small[p] <= 2.0,
        }
        for p in small
        if p in big
    ]
    notes = [
        f"Data: real PBMCs ({SOURCE[1]}, 500 most variable genes) tiled to {', '.join(map(str, files))} cells; "
        "the same cells repeat, so the rates are those of real count profiles, not of 10^6 distinct cells.",
        f"Files larger than {args.full_up_to} cells are a measured prefix: the run is stopped after "
        f"{args.prefix_s:.0f} s (1 process) or {2 * args.prefix_s:.0f} s (2 processes; progress is reported per block "
        "of 512 cells of rank 0) of embedding. Their peak memory is measured while streaming the big file; memory "
        "does not grow with the number of cells read (one block of rows at a time), but the outputs do: the "
        "embeddings and probabilities of every cell are held before writing (column 'outputs'), which a prefix "
        "does not reach. 'embedding h per 10^6 cells' is 10^6 / the measured rate (embedding only); add the "
        "set-up (imports, model load, validation pass over every cell of the file) once.",
        "Machine: 2 CPU cores shared with other jobs (load average "
        f"{machine['load_average_at_start'][0]:.1f} at the start): rates are lower bounds and noisy; 2 processes on "
        "2 shared cores are not expected to double the rate. The load changed during the run (the rate of one process "
        "went from 14 to 42 cells/s across rows): compare rows of the same size, not across sizes.",
        "Model: the embedded default model (real weights); context --mode all over the 500 genes of the file.",
        "Peak memory: VmHWM of each process (for 2 processes: the launching process and its 2 workers).",
    ]
    import pandas as pd

    write_results(
        RESULTS,
        "scale",
        started=t_start,
        machine=machine,
        model={"name": "default (embedded)", "note": "real weights"},
        data=[{"source": display_path(data_file(*SOURCE)), "n_genes": N_GENES, "sizes": list(files)}],
        settings={"batch_size": args.batch_size, "prefix_s": args.prefix_s, "mode": "all"},
        results=pd.DataFrame(rows),
        summary=pd.DataFrame(summary),
        notes=notes,
    )
    print(f"wrote {RESULTS / 'scale.json'}")


if __name__ == "__main__":
    main()
