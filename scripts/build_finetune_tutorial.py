"""Write and execute the fine-tuning tutorial ``docs/notebooks/finetune.ipynb`` (stored with its outputs).

Public API, the bundled example data and the embedded default model only, so it runs offline::

    .venv/bin/python scripts/build_finetune_tutorial.py
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "notebooks" / "finetune.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "md",
        "# Fine-tuning and reference mapping\n\n"
        "`ScPrint.finetune` adapts a trained scPRINT model to your own labels: it adds a classifier head for each "
        "label column, keeps the self-supervised denoising and bottleneck losses on so that the embedding adapts "
        'to the new cells, calibrates when to answer `"unknown"` on held-out cells, and returns a **new** '
        "model (the base model is not changed). Here the embedded default model is fine-tuned on a labelled "
        "reference of two lung-adenocarcinoma cell lines (the bundled CellBench Drop-seq example) and used to map "
        "a query that also holds a third line the reference never had. Everything runs offline on a CPU in a few "
        "minutes; the default model is a small demonstration model.",
    ),
    (
        "code",
        "import warnings\n\nimport numpy as np\nimport pandas as pd\n\nimport sc_print as sp\n\n"
        'warnings.filterwarnings("ignore")  # keep the output short\n\n'
        "adata = sp.datasets.example()\n"
        'adata.obs["cell_line"].value_counts()',
    ),
    (
        "md",
        "**Reference and query.** The reference holds 70% of the H1975 and H2228 cells (stratified, seeded); "
        "the query holds the other 30% and every HCC827 cell, a population the reference does not have.",
    ),
    (
        "code",
        "rng = np.random.default_rng(0)\n"
        'line = adata.obs["cell_line"].astype(str).to_numpy()\n'
        "in_ref = np.zeros(adata.n_obs, dtype=bool)\n"
        'for name in ("H1975", "H2228"):\n'
        "    idx = np.flatnonzero(line == name)\n"
        "    in_ref[rng.choice(idx, int(0.7 * len(idx)), replace=False)] = True\n"
        "reference, query = adata[in_ref].copy(), adata[~in_ref].copy()\n"
        'print(reference.obs["cell_line"].value_counts().to_dict(), query.obs["cell_line"].value_counts().to_dict())',
    ),
    (
        "md",
        "**Fine-tune.** `labels_keys` names the label column(s); free-text labels get a flat classifier, Cell "
        'Ontology ids a hierarchical one. By default the whole network is trained (`train="all"`; '
        '`"last_layers"` and `"heads"` freeze more of it) after a *probe*: the new head is first fitted on '
        "the outputs of the frozen base model, without which a new head barely learns in a short run. The new "
        'head reads the label token and an attention pool of the cell\'s output gene tokens (`head="pooled"`, '
        'the default; `head="token"` reads the label token alone, as scPRINT\'s own classifiers do), plus a '
        "linear read-out of the expression of the genes the cell is shown (`expression_readout=True`, the "
        "default): the probe fits that read-out first as a logistic regression (L-BFGS, to convergence) and "
        "keeps it fixed afterwards, so the classifier never starts below what a logistic regression on the "
        "same genes does; `expression_readout=False` keeps the classifier on the transformer outputs alone. "
        "The rest of the head is still trained to classify on its own (deep supervision, `deep_scale=1.0`), "
        "so that the cell embedding learns the labels instead of leaving them to the read-out. Each training "
        'cell is shown as its 256 most expressed genes (`context="top_expr"`): a random draw of a few hundred '
        "of a cell's thousands of expressed genes mostly holds weakly expressed, noisy genes. The model "
        "records this context and `sp.tl.embed` uses it by default. `max_steps` is lowered from 150 so that "
        "the notebook runs in a few minutes; 20% of the reference is held out to calibrate abstention.",
    ),
    (
        "code",
        'base = sp.load_model("default")\n'
        "ft = base.finetune(\n"
        '    reference, labels_keys="cell_line", max_steps=80, heldout_fraction=0.2, seed=0,\n'
        ")\n"
        'print(list(base.net.config.labels), "->", list(ft.net.config.labels), "| context", ft.metadata_["context"])\n'
        '{k: v for k, v in ft.metadata_["finetune"].items()\n'
        ' if k in ("base_model", "data", "steps", "train", "probe", "wall_time_s")}',
    ),
    (
        "md",
        "**Calibration.** The held-out reference cells give a reliability table (accuracy per confidence bin), "
        "the confidence threshold `min_confidence` that `sp.tl.embed` applies by default, and a novelty "
        "threshold: a cell whose label token lies farther from its predicted class than the held-out cells "
        'did is also labelled `"unknown"`, however confident the softmax is.',
    ),
    (
        "code",
        'cal = ft.calibration("cell_line")\n'
        'print("min_confidence", cal["min_confidence"], "| held-out accuracy", round(cal["accuracy"], 3), '
        '"| novelty threshold", round(cal["max_novelty"], 1))\n'
        'pd.DataFrame(cal["bins"]).round(3)',
    ),
    (
        "md",
        "**Map the query.** `sp.tl.embed` with the fine-tuned model (in the context it was trained with) writes "
        "the predictions in the reference's own label names, the confidence and the probabilities; cells below "
        'the calibrated threshold or unlike the calibration cells are `"unknown"`. HCC827 is a line the '
        'reference never had: the crosstab shows whether it is sent to `"unknown"` or given a reference label.',
    ),
    (
        "code",
        'sp.tl.embed(query, model=ft)\npd.crosstab(query.obs["cell_line"], query.obs["scprint_pred_cell_line"])',
    ),
    (
        "code",
        'query.uns["scprint_embed"]["abstention"]["cell_line"]',
    ),
    (
        "md",
        "**Save and reload.** The lineage (base model name and checksum, data, classes, steps, losses) and the "
        "calibration are saved with the weights.",
    ),
    (
        "code",
        "import tempfile\n\n"
        "with tempfile.TemporaryDirectory() as tmp:\n"
        "    ft.save(tmp)\n"
        "    again = sp.load_model(tmp)\n"
        'again.metadata_["finetune"]["base_model"], again.calibration("cell_line")["min_confidence"]',
    ),
]


def main() -> int:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src) for kind, src in CELLS
    ]
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT)
    if importlib.util.find_spec("ruff") is not None:
        subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", str(OUT)], check=True)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
