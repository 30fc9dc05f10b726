"""The ``sc-print`` command line: run one ``sp.pp`` / ``sp.tl`` step on a ``.h5ad`` or ``.zarr`` file.

``sc-print TASK IN -o OUT`` reads ``IN`` lazily (``.obs``, ``.var`` and ``.uns`` in memory; the counts as anndata's
backed sparse dataset, read a block of rows at a time), runs the task, and writes ``OUT`` = a copy of ``IN`` plus the
slots the task wrote (with :func:`anndata.io.write_elem`, into a temporary file renamed onto ``OUT`` only when
everything succeeded). Bad input is one line on stderr and exit code 2; ``OUT`` is never half-written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from anndata import AnnData

#: exit code of bad input (argparse's own)
EXIT_USAGE = 2
SUFFIXES = (".h5ad", ".zarr")
#: the slots a task may write, per attribute
_MAPPINGS = ("obsm", "varm", "varp", "layers", "uns")

EXAMPLES = {
    "prepare": "sc-print prepare pbmc.h5ad -o pbmc.prepared.h5ad --layer counts",
    "embed": (
        "sc-print embed atlas.h5ad -o atlas.emb.h5ad\n"
        "  sc-print embed atlas.zarr -o atlas.emb.zarr --accelerator cpu --devices 2 --mode fixed --max-len 500\n"
        "  srun sc-print embed atlas.h5ad -o out.h5ad --accelerator gpu --devices 4 --num-nodes 2"
    ),
    "denoise": "sc-print denoise pbmc.h5ad -o pbmc.denoised.h5ad --genes hvg --n-genes 2000 --devices 2",
    "grn": "sc-print grn pbmc.h5ad -o pbmc.grn.h5ad --groupby cell_type --genes hvg --n-genes 500 --devices 2",
    "hubs": "sc-print hubs pbmc.grn.h5ad -o pbmc.hubs.h5ad --key scprint_grn",
}


class CliError(Exception):
    """Bad input to the command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the whole usage)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------------------------ files
def _kind(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        msg = f"{what} {path} must end in .h5ad or .zarr (got {suffix or 'no suffix'!r})."
        raise CliError(msg)
    return suffix


def check_paths(src: str, out: str, *, overwrite: bool) -> tuple[Path, Path]:
    """Validate ``IN`` and ``OUT`` before anything runs."""
    src_path, out_path = Path(src), Path(out)
    if not src_path.exists():
        msg = f"input {src_path} does not exist."
        raise CliError(msg)
    if _kind(src_path, "input") != _kind(out_path, "output"):
        msg = f"input {src_path} and output {out_path} must be the same format (.h5ad or .zarr)."
        raise CliError(msg)
    if out_path.resolve() == src_path.resolve():
        msg = f"output {out_path} is the input file; choose another path (the input is never modified)."
        raise CliError(msg)
    if out_path.exists() and not overwrite:
        msg = f"output {out_path} already exists; pass --overwrite to replace it."
        raise CliError(msg)
    if out_path.exists() and out_path.is_dir() != (out_path.suffix.lower() == ".zarr"):
        msg = f"output {out_path} exists and is not a {out_path.suffix} store; remove it or choose another path."
        raise CliError(msg)
    if not out_path.parent.exists():
        msg = f"the folder of output {out_path} does not exist."
        raise CliError(msg)
    return src_path, out_path


def _store(path: Path, mode: str) -> Any:
    if path.suffix.lower() == ".zarr":
        import zarr

        return zarr.open_group(str(path), mode=mode, use_consolidated=False if mode != "r" else None)
    import h5py

    return h5py.File(path, mode)


def _lazy(store: Any, key: str) -> Any:
    """A sparse element as anndata's backed dataset (rows read on demand); anything else read into memory."""
    from anndata.io import read_elem, sparse_dataset

    elem = store[key]
    if dict(elem.attrs).get("encoding-type") in ("csr_matrix", "csc_matrix"):
        return sparse_dataset(elem)
    return read_elem(elem)


def open_input(path: Path, *, layer: str | None, need: tuple[str, ...] = ()) -> AnnData:
    """``IN`` as an AnnData with ``.obs``/``.var``/``.uns`` in memory and lazy counts.

    ``.X``, ``layer`` and ``.raw.X`` stay on disk when sparse (anndata's backed datasets); the attributes in
    ``need`` (e.g. ``"varp"`` for ``hubs``) are read in full; the others are not read at all.
    """
    import anndata as ad
    from anndata.io import read_elem

    store = _store(path, "r")
    if "obs" not in store or "var" not in store:
        msg = f"{path} is not an AnnData store (no obs/var)."
        raise CliError(msg)
    obs, var = read_elem(store["obs"]), read_elem(store["var"])
    uns = read_elem(store["uns"]) if "uns" in store else {}
    layers = {}
    if layer is not None:
        if "layers" not in store or layer not in store["layers"]:
            found = list(store["layers"].keys()) if "layers" in store else []
            msg = f"layer {layer!r} not found in {path}; its layers: {found}."
            raise CliError(msg)
        layers[layer] = _lazy(store, f"layers/{layer}")
    X = _lazy(store, "X") if "X" in store else None
    extra = {attr: read_elem(store[attr]) for attr in need if attr in store}
    adata = ad.AnnData(X=X, obs=obs, var=var, uns=uns, layers=layers or None, **extra)
    if "raw" in store and "X" in store["raw"]:
        adata.raw = ad.AnnData(X=_lazy(store, "raw/X"), obs=obs, var=read_elem(store["raw/var"]))
    return adata


class _Snapshot:
    """What a task changed: the slots of the lazy AnnData before and after."""

    def __init__(self, adata: AnnData) -> None:
        self.obs, self.var = adata.obs.copy(), adata.var.copy()
        self.ids = {attr: {k: id(v) for k, v in getattr(adata, attr).items()} for attr in _MAPPINGS}

    def changed(self, adata: AnnData) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for attr in ("obs", "var"):
            before, after = getattr(self, attr), getattr(adata, attr)
            if list(before.columns) != list(after.columns) or not before.equals(after):
                out.append((attr, None))
        for attr in _MAPPINGS:
            before = self.ids[attr]
            out += [(attr, k) for k, v in getattr(adata, attr).items() if before.get(k) != id(v)]
        return out


def write_output(src: Path, out: Path, adata: AnnData, slots: list[tuple[str, str | None]]) -> None:
    """Copy ``src`` to a temporary path next to ``out``, write ``slots`` into it, then rename it onto ``out``."""
    from anndata.io import write_elem

    from ._io import atomic_target

    def fill(tmp: Path) -> None:
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, tmp)
        store = _store(tmp, "a")
        try:
            for attr, key in slots:
                value = getattr(adata, attr) if key is None else getattr(adata, attr)[key]
                name = attr if key is None else f"{attr}/{key}"
                if key is not None and name in store:
                    del store[name]
                write_elem(store, name, value)
        finally:
            if hasattr(store, "close"):
                store.close()
        if tmp.suffix.lower() == ".zarr":
            import zarr

            zarr.consolidate_metadata(str(tmp))

    if out.suffix.lower() != ".zarr":
        with atomic_target(out) as tmp:
            fill(tmp)
        return
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp.zarr")
    old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.old.zarr")
    try:
        fill(tmp)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _describe(adata: AnnData, attr: str, key: str | None) -> str:
    value = getattr(adata, attr) if key is None else getattr(adata, attr)[key]
    shape = getattr(value, "shape", None)
    what = f".{attr}" if key is None else f".{attr}[{key!r}]"
    return f"{what} {tuple(shape)}" if shape is not None else what


# ------------------------------------------------------------------------------------------------ tasks
def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": args.model,
        "layer": args.layer,
        "batch_size": args.batch_size,
        "accelerator": args.accelerator,
        "devices": args.devices,
        "num_nodes": args.num_nodes,
        "strategy": args.strategy,
        "dtype": args.dtype,
        "rng": args.seed,
    }


def _task(args: argparse.Namespace) -> tuple[Callable[..., Any], dict[str, Any], tuple[str, ...]]:
    import sc_print as sp

    if args.command == "prepare":
        return sp.pp.prepare, {"model": args.model, "layer": args.layer}, ()
    if args.command == "hubs":
        return sp.tl.hubs, {"key": args.key}, ("varp",)
    options = {k: v for k, v in _run_options(args).items() if v is not None}
    if args.command == "embed":
        return sp.tl.embed, {**options, "mode": args.mode, "max_len": args.max_len}, ()
    if args.command == "denoise":
        genes = args.genes if args.genes in ("expressed", "hvg", "all") else args.genes.split(",")
        return sp.tl.denoise, {**options, "genes": genes, "n_genes": args.n_genes}, ()
    genes = args.genes if args.genes in ("hvg", "expressed", "genome_wide") else args.genes.split(",")
    extra = {"groupby": args.groupby, "genes": genes, "n_genes": args.n_genes, "n_cells": args.n_cells}
    return sp.tl.grn, {**options, **extra}, ()


def run_task(args: argparse.Namespace) -> int:
    """Run one task on a file (every check before the model runs; the output written last, atomically)."""
    from ._distributed import global_rank

    t0 = time.perf_counter()
    src, out = check_paths(args.input, args.output, overwrite=args.overwrite)
    fn, options, need = _task(args)
    adata = open_input(src, layer=getattr(args, "layer", None), need=need)
    print(f"sc-print {args.command}: {src} ({adata.n_obs} cells x {adata.n_vars} genes, counts read lazily)")
    before = _Snapshot(adata)
    fn(adata, **options)
    slots = before.changed(adata)
    if global_rank() != 0:  # another process of an externally launched job: rank 0 writes
        return 0
    write_output(src, out, adata, slots)
    print(f"wrote {out}:")
    for attr, key in slots:
        print("  " + _describe(adata, attr, key))
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def list_models() -> int:
    """Print the registry of published weights and whether each is cached."""
    from ._settings import settings
    from .hub import available_models

    table = available_models()
    print(f"default model: {settings.default_model} (embedded); cache: {settings.cache_dir}")
    for name, row in table.iterrows():
        size = "?" if row["size_mb"] is None or row["size_mb"] != row["size_mb"] else f"{row['size_mb']:.0f} MB"
        state = "cached" if row["cached"] else "not downloaded"
        print(f"  {name:<12} {size:>8}  {state:<15} {row['description']}")
    return 0


# ------------------------------------------------------------------------------------------------ parser
def build_parser(prog: str = "sc-print") -> argparse.ArgumentParser:
    """The argument parser of ``sc-print`` (one subcommand per task)."""
    parser = _Parser(
        prog=prog,
        description="scPRINT on AnnData files: prepare, embed, denoise, grn, hubs; models; demo.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  " + "\n  ".join(v.split("\n")[0] for v in EXAMPLES.values()),
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="TASK")

    def task(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=f"{help_text}. Reads IN lazily, writes OUT = IN plus the new slots.",
            epilog=f"Example:\n  {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("input", metavar="IN", help="input .h5ad or .zarr (never modified)")
        p.add_argument("-o", "--output", metavar="OUT", required=True, help="output (.h5ad or .zarr, like IN)")
        p.add_argument("--overwrite", action="store_true", help="replace OUT when it exists")
        return p

    def run_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default=None, help="registry name or checkpoint path (default: embedded model)")
        p.add_argument("--layer", default=None, help="layer with the raw counts (default: .X, else .raw.X)")
        p.add_argument("--batch-size", type=int, default=None, help="cells per forward pass")
        p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda", "mps"])
        p.add_argument("--devices", type=int, default=1, help="processes per node (GPUs, or CPU processes)")
        p.add_argument("--num-nodes", type=int, default=1, help="nodes (under SLURM or torchrun)")
        p.add_argument("--strategy", default="auto", choices=["auto", "ddp", "ddp_spawn", "ddp_fork"])
        p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="autocast dtype")
        p.add_argument("--seed", type=int, default=0, help="seed of the random gene contexts")

    p = task("prepare", "validate the counts and map the genes onto the model vocabulary")
    p.add_argument("--model", default=None, help="registry name or checkpoint path (default: embedded model)")
    p.add_argument("--layer", default=None, help="layer with the raw counts")
    p = task("embed", "cell embeddings and label predictions")
    run_args(p)
    p.add_argument(
        "--mode",
        default=None,
        choices=["random_expr", "top_expr", "fixed", "all"],
        help="gene context (default: the model's, random_expr for pretrained models)",
    )
    p.add_argument("--max-len", type=int, default=None, help="context length (default: the model's, 2000)")
    p = task("denoise", "expected counts at a higher depth")
    run_args(p)
    p.add_argument("--genes", default="expressed", help="expressed, hvg, all or comma-separated var names")
    p.add_argument("--n-genes", type=int, default=2000, help="context length / number of variable genes")
    p = task("grn", "gene networks from attention, one per group")
    run_args(p)
    p.add_argument("--groupby", default=None, help=".obs column: one network per category")
    p.add_argument("--genes", default="hvg", help="hvg, expressed, genome_wide or comma-separated var names")
    p.add_argument("--n-genes", type=int, default=2000, help="genes per network")
    p.add_argument("--n-cells", type=int, default=None, help="cells per group (default: all)")
    p = task("hubs", "hub genes of the networks of a grn run")
    p.add_argument("--key", default="scprint_grn", help=".uns key of the grn run")
    sub.add_parser("models", help="published weights and their cache state")
    p_demo = sub.add_parser("demo", help="prepare -> embed -> grn -> hubs on bundled data")
    p_demo.add_argument("--n-genes", type=int, default=400, help="genes per network (HVGs of each cell line)")
    p_demo.add_argument("--out", default=None, help="write the annotated AnnData to this .h5ad")
    p_demo.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    return parser


def main(argv: list[str] | None = None, *, prog: str = "sc-print") -> int:
    """Entry point of the ``sc-print`` console script; returns the exit code (2 for bad input)."""
    args = build_parser(prog).parse_args(argv)
    try:
        if args.command == "models":
            return list_models()
        if args.command == "demo":
            from ._demo import demo

            demo(n_genes=args.n_genes, out=args.out, overwrite=args.overwrite)
            return 0
        return run_task(args)
    except (CliError, FileNotFoundError, FileExistsError, KeyError, ValueError, TypeError, IndexError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
        return EXIT_USAGE


def console() -> None:
    """``sc-print`` (the console script)."""
    sys.exit(main())
