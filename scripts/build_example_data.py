"""Build ``src/sc_print/_resources/example_cellbench.h5ad``, the example dataset bundled with sc_print.

Source: CellBench ``sc_dropseq`` (Tian et al. 2019, Nat Methods 16:479; GEO GSE118767) from the
``LuyiTian/sc_mixology`` repository (MIT licence), as found in ``cellbench_sc_mixology`` of the development
data (``<repo>/../shared/data`` by default; never read by the package at run time): Drop-seq raw UMI counts
of three lung-adenocarcinoma cell lines (H1975, H2228, HCC827), Ensembl gene ids. It is also one of the two
whole datasets held out from the training of the embedded default model.

Output: every cell that demuxlet calls a singlet (``demuxlet_cls == "SNG"``) and passes the dataset's own QC
(``outliers == FALSE``); all genes except the ERCC spike-ins; raw counts as CSR float32; ``obs["cell_line"]``
(demuxlet call), ``obs["technology"]`` and ``obs["assay_ontology_term_id"]``; gzip-compressed (< 4 MB).
The first version of this example was a subset of FACS-sorted PBMCs, but that file reached us through a
GPL-3 repository, so it is not redistributed here.

Usage (with sc_print importable)::

    python scripts/build_example_data.py [--data-dir ../shared/data] [--out src/sc_print/_resources/example_cellbench.h5ad]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path("cellbench_sc_mixology")
DATASET = "sc_dropseq"
ASSAY = "EFO:0008722"  # Drop-seq
MAX_BYTES = 4 * 1024 * 1024


def build(data_dir: Path) -> ad.AnnData:
    counts = pd.read_csv(data_dir / SOURCE / f"{DATASET}.count.csv.gz", index_col=0)  # genes x cells
    meta = pd.read_csv(data_dir / SOURCE / f"{DATASET}.metadata.csv.gz", index_col=0)
    meta = meta.loc[meta.index.intersection(counts.columns)]
    keep = (meta["demuxlet_cls"] == "SNG") & ~meta["outliers"].astype(str).str.upper().eq("TRUE")
    meta = meta[keep]
    genes = counts.index[~counts.index.str.startswith("ERCC")]
    X = sparse.csr_matrix(counts.loc[genes, meta.index].to_numpy(dtype=np.float32).T)
    X.sort_indices()
    obs = pd.DataFrame(
        {
            "cell_line": pd.Categorical(meta["cell_line_demuxlet"].astype(str)),
            "technology": pd.Categorical(["Drop-seq"] * len(meta)),
            "assay_ontology_term_id": pd.Categorical([ASSAY] * len(meta)),
        },
        index=meta.index.astype(str),
    )
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes.astype(str)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "sc_print" / "_resources" / "example_cellbench.h5ad")
    args = parser.parse_args()
    adata = build(args.data_dir)
    adata.write_h5ad(args.out, compression="gzip", compression_opts=9)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({adata.n_obs} cells x {adata.n_vars} genes, {size / 1e6:.2f} MB)")
    print(adata.obs["cell_line"].value_counts().to_string())
    if size > MAX_BYTES:
        msg = f"{args.out} is {size} bytes, above the {MAX_BYTES}-byte budget of the bundled example."
        raise SystemExit(msg)


if __name__ == "__main__":
    main()
