"""Write and execute the quick-start notebook ``docs/notebooks/quickstart.ipynb`` (stored with its outputs).

It uses only the public API, the bundled example data and the embedded default model, so it runs offline::

    .venv/bin/pip install nbformat nbclient ipykernel
    .venv/bin/python scripts/build_tutorial.py
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "notebooks" / "quickstart.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "md",
        "# Quick start: embeddings, denoising and gene networks with sc_print\n\n"
        "This notebook runs the whole `sc_print` workflow on the example that ships with the package "
        "(CellBench Drop-seq: 210 cells of three lung-adenocarcinoma cell lines, raw UMI counts; Tian et al. "
        "2019) with the embedded default model, which never saw these cells. The default model is a small scPRINT trained on CPU on ~10k public cells: it is "
        'there so that everything runs offline; use the published weights (`sp.load_model("medium")`) for '
        "real analyses.",
    ),
    (
        "code",
        "import warnings\n\nimport decoupler as dc\nimport scanpy as sc\n\nimport sc_print as sp\n\n"
        "warnings.filterwarnings('ignore', category=FutureWarning)  # keep the output short\n\n"
        "adata = sp.datasets.example()\nadata",
    ),
    ("md", "## 1. Prepare: check the raw counts and map the genes onto the model vocabulary"),
    ("code", "sp.pp.prepare(adata)\nadata.uns['scprint_prepare']"),
    ("md", "## 2. Embed the cells and predict their labels"),
    (
        "code",
        "sp.tl.embed(adata)\n"
        "adata.obs[['scprint_pred_cell_type', 'scprint_conf_cell_type', 'scprint_pred_assay']].head()",
    ),
    (
        "code",
        "sc.pp.neighbors(adata, use_rep='X_scprint')\nsc.tl.umap(adata)\n"
        "sc.pl.umap(adata, color=['cell_line', 'scprint_pred_assay'], wspace=0.6)",
    ),
    ("md", "## 3. Denoise: expected counts at four times the sequencing depth"),
    (
        "code",
        "sp.tl.denoise(adata, genes='hvg', n_genes=1000, depth_mult=4.0)\nadata.layers['scprint_denoised']",
    ),
    ("md", "## 4. One gene network per cell line"),
    (
        "code",
        "sp.tl.grn(adata, groupby='cell_line', genes='hvg', n_genes=400)\n"
        "{group: adata.varp[key].nnz for group, key in adata.uns['scprint_grn']['varp_keys'].items()}",
    ),
    ("code", "sp.tl.hubs(adata, key='scprint_grn')\nax = sp.pl.hubs(adata, key='scprint_grn', n_top=8, show=False)"),
    ("md", "## 5. Hand a network to decoupler"),
    (
        "code",
        "key = adata.uns['scprint_grn']['varp_keys']['H1975']\n"
        "net = sp.get.network(adata, key=key, top_k=50)\nnet.head()",
    ),
    (
        "code",
        "norm = adata.copy()\nsc.pp.normalize_total(norm)\nsc.pp.log1p(norm)\n"
        "dc.mt.ulm(norm, net, tmin=5)\nnorm.obsm['score_ulm'].iloc[:5, :5]",
    ),
]


def main() -> int:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src) for kind, src in CELLS
    ]
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT)
    # the cell sources above use the repository's formatting (ruff format), as the pre-commit hook expects
    if importlib.util.find_spec("ruff") is not None:
        subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", str(OUT)], check=True)
    else:
        print("ruff is not installed (pip install -e '.[dev]'): the notebook's cells are left unformatted")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
