"""Build ``src/sc_print/_resources/genes.parquet``, the gene table shipped with sc_print.

The table has one row per Ensembl gene id (human ``ENSG`` and mouse ``ENSMUSG``) with its symbol, organism,
chromosome, start and the locus-cluster index ``pos`` used by scPRINT's genomic-position encoding.

Sources (read from ``<repo>/../shared/data`` by default, never at run time by the package):

- ``scprint_gene_meta/biomart_pos.parquet``: Ensembl BioMart facts (id, HGNC symbol for human genes, biotype,
  chromosome, start, ``pos``) as shipped with the reference scPRINT.
- ``celltypist_sample/GENCODEv44_Gene_id2name.csv``: human id -> GENCODE v44 gene name, used where BioMart has
  no HGNC symbol.
- ``scanpy_builtin/scanpy_tests_10x_10k_subset_mouse_1000genes.h5ad``: the only id -> symbol pairs available for
  mouse genes (``var.gene_ids`` -> ``var_names``). ``Ensembl105_Human2Mouse_Genes.csv`` pairs symbols with
  symbols and ``scmerge_mesc_example`` has ids only, so neither can name a mouse id.

``pos`` is recomputed with the rule of the paper (:func:`sc_print.data.locus_positions`): per organism, genes with a locus are sorted by
``(chromosome as a string, start)``; a counter starting at 0 is incremented on the first gene, whenever the
chromosome changes and whenever the gap to the previous gene's start exceeds 10,000 bp. Positions are therefore
1-based and restart at 1 for each organism. Genes without a locus get ``pos = 0``, ``start = -1`` and
``chromosome = ""``. The recomputed column is compared with the ``pos`` column of the source.

Usage (with sc_print importable, e.g. after ``pip install -e .``)::

    python scripts/build_gene_table.py [--data-dir ../shared/data] [--out src/sc_print/_resources/genes.parquet]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from sc_print.data._vocab import GENE_POSITION_TOLERANCE, locus_positions

HUMAN = "NCBITaxon:9606"
MOUSE = "NCBITaxon:10090"
REPO = Path(__file__).resolve().parents[1]


def mouse_symbols(path: Path) -> pd.Series:
    """Mouse id -> symbol pairs from an AnnData with symbols as ``var_names`` and ids in ``var['gene_ids']``.

    ``var_names`` made unique by anndata (``Rp1`` and ``Rp1-1``) are turned back into the shared symbol.
    """
    var = ad.read_h5ad(path, backed="r").var
    names = pd.Index(var.index.astype(str))
    present = set(names)
    symbols = []
    for name in names:
        match = re.fullmatch(r"(.+)-(\d+)", name)
        symbols.append(match.group(1) if match and match.group(1) in present else name)
    out = pd.Series(symbols, index=var["gene_ids"].astype(str).to_numpy())
    return out[~out.index.duplicated()]


def build(data_dir: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """Assemble the gene table and the agreement of the recomputed ``pos`` with the source, per organism."""
    src = pd.read_parquet(data_dir / "scprint_gene_meta" / "biomart_pos.parquet")
    src.index = src.index.astype(str)
    organism = np.where(src.index.str.startswith("ENSMUSG"), MOUSE, HUMAN)

    symbol = src["hgnc_symbol"].where(src["hgnc_symbol"] != src.index)  # the source repeats the id when no symbol
    gencode = pd.read_csv(
        data_dir / "celltypist_sample" / "GENCODEv44_Gene_id2name.csv", header=None, names=["gene_id", "name"]
    ).drop_duplicates("gene_id")
    gencode = gencode.set_index("gene_id")["name"].reindex(src.index)
    symbol = symbol.fillna(gencode.where(gencode != gencode.index))
    mouse_file = data_dir / "scanpy_builtin" / "scanpy_tests_10x_10k_subset_mouse_1000genes.h5ad"
    if mouse_file.exists():
        mouse = mouse_symbols(mouse_file).reindex(src.index)
        symbol = symbol.where(organism == HUMAN, mouse)

    table = pd.DataFrame(
        {
            "symbol": symbol.fillna("").astype(str),
            "organism": organism,
            "chromosome": src["chromosome_name"],
            "start": src["start_position"],
            "biotype": src["gene_biotype"].fillna(""),
        },
        index=src.index,
    )
    table["pos"] = 0
    agreement: dict[str, float] = {}
    for org in (HUMAN, MOUSE):
        rows = table["organism"] == org
        table.loc[rows, "pos"] = locus_positions(
            table.loc[rows, "chromosome"], table.loc[rows, "start"], tolerance=GENE_POSITION_TOLERANCE
        )
        agreement[org] = float((table.loc[rows, "pos"] == src.loc[rows, "pos"]).mean())
    table["chromosome"] = table["chromosome"].fillna("").astype(str)
    table["start"] = table["start"].fillna(-1).astype(np.int64)
    table["pos"] = table["pos"].astype(np.int32)

    # human block first, then mouse; Ensembl-id order inside each block (the reference vocabulary order)
    table = table.iloc[np.lexsort((table.index.to_numpy(), (table["organism"] == MOUSE).to_numpy()))]
    table.index.name = "gene_id"
    for col in ("organism", "chromosome", "biotype"):
        table[col] = table[col].astype("category")
    return table[["symbol", "organism", "chromosome", "start", "pos", "biotype"]], agreement


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "sc_print" / "_resources" / "genes.parquet")
    args = parser.parse_args()

    table, agreement = build(args.data_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, compression="zstd", compression_level=19)

    for org, frac in agreement.items():
        rows = table["organism"] == org
        print(
            f"{org}: {int(rows.sum())} genes, {int((table.loc[rows, 'symbol'] != '').sum())} with a symbol, "
            f"{int((table.loc[rows, 'pos'] == 0).sum())} without a locus, max pos {int(table.loc[rows, 'pos'].max())}, "
            f"{table.loc[rows, 'pos'].nunique()} distinct positions; pos agrees with the source for {frac:.4%}"
        )
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
