"""Write and execute the spatial tutorial ``docs/notebooks/spatial.ipynb`` (stored with its outputs).

It reads the her2st H1 section (Andersson et al. 2021) from ``$SC_PRINT_BENCH_DATA`` or ``<repo>/../shared/data``
and uses the embedded default model, so it runs offline (about 4 min on 2 CPU cores). The docs build does not
re-run it (the data are not shipped): the notebook's metadata sets ``mystnb.execution_mode = "off"``::

    .venv/bin/pip install -e ".[spatial,doc]" nbclient nbformat
    .venv/bin/python scripts/build_spatial_tutorial.py
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "notebooks" / "spatial.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "md",
        "# Spatial transcriptomics: niches, niche networks and spatially variable regulons\n\n"
        "One section (H1, 613 spots) of the HER2+ breast cancer Spatial Transcriptomics study of Andersson et al. "
        "(2021, raw counts, 7 pathologist regions per spot), analysed with the embedded default model: "
        "scPRINT embeddings → spatial niches (squidpy) → one gene network per niche → TF regulon activities "
        "(decoupler ULM) → spatially variable regulons (squidpy Moran's I). It needs the `spatial` extra "
        '(`pip install "sc-print[spatial]"`). The default model is a small CPU-trained scPRINT: use the published '
        'weights (`sp.load_model("medium")`) for real analyses.',
    ),
    (
        "code",
        "import os\nimport warnings\nfrom pathlib import Path\n\nimport anndata as ad\nimport pandas as pd\n"
        "from sklearn.metrics import adjusted_rand_score\n\nimport sc_print as sp\n\n"
        "warnings.filterwarnings('ignore', category=FutureWarning)  # keep the output short\n"
        "warnings.filterwarnings('ignore', category=UserWarning)\n\n"
        "data = Path(os.environ.get('SC_PRINT_BENCH_DATA', '../shared/data'))\n"
        "adata = ad.read_h5ad(data / 'her2st_breast_st' / 'her2st_H1_613spots_raw.h5ad')\nadata",
    ),
    ("md", "## 1. Prepare and embed the spots"),
    ("code", "sp.pp.prepare(adata)\nsp.tl.embed(adata, max_len=1000)\nadata.obsm['X_scprint'].shape"),
    (
        "md",
        "## 2. Niches\n\n`sp.tl.niches` clusters each spot's embedding together with its mean over the 1- to 3-hop "
        "spatial neighbours (squidpy's CellCharter flavour of `calculate_niche`, seeded Gaussian mixture).",
    ),
    (
        "code",
        "sp.tl.niches(adata, n_niches=7)\n"
        "print('ARI vs pathologist regions:', round(adjusted_rand_score(adata.obs['label'], adata.obs['scprint_niche']), 3))\n"
        "pd.crosstab(adata.obs['label'], adata.obs['scprint_niche'])",
    ),
    ("code", "axes = sp.pl.spatial(adata, color=['label', 'scprint_niche'], show=False)"),
    (
        "md",
        "## 3. One gene network per niche, and their hubs\n\nTwo niches here to keep the notebook short; "
        "`groups=None` computes every niche.",
    ),
    (
        "code",
        "sp.tl.grn(adata, groupby='scprint_niche', groups=['0', '1'], genes='hvg', n_genes=300, n_cells=60)\n"
        "keys = adata.uns['scprint_grn']['varp_keys']\n"
        "sp.tl.hubs(adata, key='scprint_grn')\n"
        "sp.tl.diff_hubs(adata, key_a=keys['0'], key_b=keys['1'], inplace=False).head(8)",
    ),
    (
        "md",
        "## 4. Regulon activities and spatially variable regulons\n\nThe TF regulons of niche 0's network "
        "(`sp.get.network(..., tf_only=True, top_k=50)`) scored in every spot by decoupler's ULM on log-normalised "
        "counts, then Moran's I over the spatial graph with its Benjamini-Hochberg FDR.",
    ),
    (
        "code",
        "sp.tl.regulon_activity(adata, key='scprint_grn', group='0', top_k=50)\n"
        "sp.tl.spatial_regulons(adata)\nmoran = adata.uns['scprint_spatial_regulons']\nmoran.head(10)",
    ),
    ("code", "axes = sp.pl.spatial(adata, color=list(moran['regulon'][:3]), cmap='viridis', show=False)"),
    ("code", "axes = sp.pl.spatial(adata, color=['ERBB2', 'scprint_niche'], show=False)"),
]


def main() -> int:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["mystnb"] = {"execution_mode": "off"}  # needs ../shared/data: the docs build shows stored outputs
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src) for kind, src in CELLS
    ]
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT)
    if importlib.util.find_spec("ruff") is not None:
        subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", str(OUT)], check=True)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
