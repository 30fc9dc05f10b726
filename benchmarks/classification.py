"""Zero-shot cell-type classification on the FACS-sorted PBMC reference (held out from the default model).

``sp.tl.embed`` predicts a Cell Ontology leaf for every cell with the model's cell-type classifier; the truth is
the sorted population mapped to Cell Ontology (``sc_print.ontology.PBMC_SORTED_CELL_TYPES``). Scores:

- exact accuracy: predicted leaf == true term;
- ontology-aware accuracy (scPRINT's rule, ``LabelHierarchy.is_correct``): a prediction also counts as correct
  when the true term is a coarser ancestor of the predicted leaf;
- "consistent" accuracy: also accepts a predicted leaf that is an ancestor of the true term (a correct but
  coarser answer, e.g. "naive T cell" for a naive CD4 T cell when the classifier has no finer leaf);
- ontology-aware macro-F1 over the sorted populations: a correct prediction takes the true population, a wrong
  one the sorted population it names (or "other" when it names none); per-population F1 averaged with equal
  weights;
- the majority-class accuracy of the data set, as the trivial reference.

Run: ``python benchmarks/classification.py [--model default]``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from _common import (
    base_parser,
    data_record,
    load_pbmc_sorted,
    start_run,
    timed,
)
from sklearn.metrics import confusion_matrix, f1_score

import sc_print as sc_print_pkg
from sc_print._keys import Key
from sc_print.ontology import PBMC_SORTED_CELL_TYPES, term_ancestors

logger = logging.getLogger("benchmarks.classification")
LABEL = "cell_type"


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--max-len", type=int, default=512, help="scPRINT context: random expressed genes per cell")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    run = start_run(args, "classification")
    model = run.model
    adata, path = load_pbmc_sorted()
    data = [data_record(path, adata, truth="obs['cell_type_sorted'] (FACS sort) -> Cell Ontology")]
    hierarchy = getattr(model, "hierarchies", {}).get(LABEL)
    if hierarchy is None:
        notes = [f"The model has no {LABEL!r} classifier: no zero-shot classification is possible."]
        empty = pd.DataFrame()
        run.write(
            data=data,
            results=empty,
            summary=empty,
            notes=notes,
        )
        return
    times: dict[str, float] = {}
    sc_print_pkg.pp.prepare(adata, model=model)
    with timed("scPRINT embed + classify", times):
        sc_print_pkg.tl.embed(
            adata, model=model, labels=[LABEL], max_len=args.max_len, batch_size=args.batch_size, rng=args.seed
        )
    pred = adata.obs[Key.obs.pred_id(LABEL)].astype(str).to_numpy()
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    population = adata.obs["cell_type_sorted"].astype(str).to_numpy()
    codes = pd.Index(hierarchy.leaves).get_indexer(pred)
    correct = hierarchy.is_correct(codes, truth)
    exact = pred == truth
    # coarser but consistent: the predicted leaf is an ancestor of the true term (e.g. "naive T cell" for a
    # naive CD4 T cell when the classifier has no finer leaf)
    consistent = correct | np.array([p in term_ancestors(t) for p, t in zip(pred, truth, strict=True)])
    # ontology-aware label of each prediction among the sorted populations
    name_of = {term: name for name, term in PBMC_SORTED_CELL_TYPES.items()}
    effective = np.where(correct, population, [name_of.get(p, "other") for p in pred])
    classes = sorted(PBMC_SORTED_CELL_TYPES)
    macro_f1 = f1_score(population, effective, labels=classes, average="macro", zero_division=0)
    per_class = f1_score(population, effective, labels=classes, average=None, zero_division=0)
    majority = float(pd.Series(population).value_counts(normalize=True).iloc[0])
    rows = []
    for k, cls in enumerate(classes):
        cells = population == cls
        rows.append(
            {
                "population": cls,
                "term": PBMC_SORTED_CELL_TYPES[cls],
                "n_cells": int(cells.sum()),
                "accuracy_ontology": float(correct[cells].mean()),
                "accuracy_exact": float(exact[cells].mean()),
                "accuracy_consistent": float(consistent[cells].mean()),
                "f1_ontology": float(per_class[k]),
                "most_predicted": str(pd.Series(adata.obs[Key.obs.pred(LABEL)].astype(str)[cells]).mode().iloc[0]),
                "in_model_leaves": PBMC_SORTED_CELL_TYPES[cls] in hierarchy.leaves,
            }
        )
    results = pd.DataFrame(rows)
    summary = pd.DataFrame(
        [
            {
                "n_cells": int(adata.n_obs),
                "n_populations": len(classes),
                "accuracy_ontology": float(correct.mean()),
                "accuracy_exact": float(exact.mean()),
                "accuracy_consistent": float(consistent.mean()),
                "macro_f1_ontology": float(macro_f1),
                "majority_class_accuracy": majority,
                "chance_accuracy_uniform": 1.0 / len(classes),
                "n_model_leaves": int(hierarchy.n_leaves),
            }
        ]
    )
    labels_seen = [*classes, "other"]
    confusion = pd.DataFrame(
        confusion_matrix(population, effective, labels=labels_seen), index=labels_seen, columns=labels_seen
    )
    args.out.mkdir(parents=True, exist_ok=True)
    confusion.to_csv(args.out / "classification_confusion.csv")
    logger.info("\n%s\n%s", summary.to_string(), results.to_string())
    missing = [c for c in classes if PBMC_SORTED_CELL_TYPES[c] not in hierarchy.leaves]
    notes = [
        "The sorted PBMC reference was held out from the default model's training; its cell-type classifier was "
        "trained on pseudo-labels transferred from this reference onto other PBMC sets (see the model card)."
        if args.model == "default"
        else "Custom model: check that the sorted PBMC reference was not in its training data.",
        f"Context: {args.max_len} random expressed genes per cell (seed {args.seed}).",
    ]
    if missing:
        notes.append(f"Populations the classifier cannot predict exactly (not among its leaves): {missing}.")
    run.settings["seconds"] = times
    run.write(
        data=data,
        results=results,
        summary=summary,
        notes=notes,
    )


if __name__ == "__main__":
    main()
