"""Render the benchmark results (``benchmarks/results/*.json``) as markdown.

Writes ``benchmarks/results/summary.md`` (the short report), ``docs/benchmarks.md`` (the short report plus every
table, setting and caveat) and rewrites the block between ``<!-- RESULTS:START -->`` and ``<!-- RESULTS:END -->``
of ``README.md`` with the short report. Every number comes from the result files; nothing is typed in here.
The speed results of ``benchmarks/speed.py`` (``speed.md`` / ``speed.json``) are included when present.

Run: ``python benchmarks/make_report.py`` (``run_all.sh`` runs it last).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
START, END = "<!-- RESULTS:START -->", "<!-- RESULTS:END -->"
QUALITY = (
    "grn_quality",
    "denoise",
    "embedding",
    "classification",
    "annotation",
    "annotation_diagnosis",
    "spatial",
    "perturb",
)
SCPRINT = "scPRINT"


# ---------------------------------------------------------------------------------------------------- helpers
def load(results: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for name in QUALITY:
        path = results / f"{name}.json"
        if path.is_file():
            out[name] = json.loads(path.read_text())
    if "perturb" in out and (results / "perturb_speed.json").is_file():  # the separate speed run of perturb.py
        out["perturb"]["speed_run"] = json.loads((results / "perturb_speed.json").read_text())
    return out


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pm(mean: Any, sd: Any, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if sd is not None and not math.isnan(sd) else fmt(mean, digits)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return "\n".join(lines)


def model_line(model: dict[str, Any] | None) -> str:
    if not model:
        return "model: none"
    card = model.get("card") or {}
    trained = ""
    if card.get("training_steps") is not None:
        trained = (
            f"; pretrained for {fmt(card['training_steps'])} steps (batch {fmt(card.get('batch_size'))}, "
            f"{fmt(card.get('max_len'))} genes per cell) on {fmt(card.get('train_cells'))} cells of "
            f"{len(card.get('train_datasets') or [])} public data sets on CPU"
        )
    return (
        f"model `{model['name']}` ({model['n_parameters'] / 1e6:.1f} M parameters: d_model {model['d_model']}, "
        f"{model['nlayers']} layers, {model['nhead']} heads, {fmt(model['n_genes'])} genes; "
        f"sha256 `{str(model['sha256'])[:12]}…`{trained})"
    )


def machine_line(machine: dict[str, Any]) -> str:
    load_avg = machine.get("load_average_at_start")
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU"
    shared = ""
    if load_avg:
        busy = load_avg[0] > 1.0
        shared = f" (load average {load_avg[0]:.1f} at start" + (
            ": the CPU was shared with other jobs, so times are upper bounds)" if busy else ")"
        )
    return (
        f"{machine['cpu']}, {machine['usable_cores']} cores{gpu}, {machine['memory_gb']} GB RAM, "
        f"torch {machine['torch']}{shared}"
    )


def _same(records: dict[str, dict[str, Any]], key: str) -> bool:
    values = {
        json.dumps((r.get(key) or {}).get("sha256") if key == "model" else r.get(key, {}).get("cpu"))
        for r in records.values()
    }
    return len(values) <= 1


def _summary(record: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(record.get("summary") or [])


def _results(record: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(record.get("results") or [])


# ---------------------------------------------------------------------------------------------------- sections
GRN_LABEL = {
    ("scPRINT", "query_is_source"): "scPRINT (query → target)",
    ("scPRINT", "key_is_source"): "scPRINT (key → target)",
    ("Spearman |rho|", "symmetric"): "Spearman \\|ρ\\|",
    ("GENIE3", "regulator_is_source"): "GENIE3",
}


def _grn_label(method: str, orientation: str) -> str:
    return GRN_LABEL.get((method, orientation), f"{method} ({orientation})")


def grn_tables(record: dict[str, Any]) -> tuple[str, str]:
    s = _summary(record)
    pbmc = s[s["family"] == "pbmc_sorted"]
    sergio = s[s["family"] == "sergio"]
    settings = record["settings"]
    parts = []
    if len(pbmc):
        n_types = int(pbmc["n_groups"].max())
        parts.append(
            f"**Gene networks vs OmniPath** (FACS-sorted PBMC, one network per cell type, mean ± SD over {n_types} "
            f"cell types, ≤{settings['n_cells']} cells × {settings['n_genes']} variable genes each; random = 1). "
            "GENIE3 may only use TFs as regulators, which alone lifts its all-pairs scores (and makes every hub a "
            "TF); the TF-source columns compare every method on the same pairs:\n\n"
        )
        parts.append(
            table(
                [
                    "method",
                    "EPR, TF-source pairs",
                    "AUPRC / prevalence, TF-source pairs",
                    "EPR, all pairs",
                    "AUPRC / prevalence, all pairs",
                    "TF-hub enrichment",
                ],
                [
                    [
                        _grn_label(r["method"], r["orientation"]),
                        pm(r["epr_tf_mean"], r["epr_tf_sd"]),
                        pm(r["auprc_ratio_tf_mean"], r["auprc_ratio_tf_sd"]),
                        pm(r["epr_all_mean"], r["epr_all_sd"]),
                        pm(r["auprc_ratio_all_mean"], r["auprc_ratio_all_sd"]),
                        ("(by construction) " if r["method"] == "GENIE3" else "")
                        + pm(r["tf_hub_enrichment_mean"], r["tf_hub_enrichment_sd"]),
                    ]
                    for _, r in pbmc.iterrows()
                ],
            )
        )
    if len(sergio):
        n_sets = int(sergio["n_groups"].max())
        parts.append(
            f"\n\n**Gene networks vs SERGIO's exact ground truth** (mean ± SD over {n_sets} simulated 100-gene "
            f"sets, 137 true edges each, ≤{settings['sergio_cells']} cells; random = 1):\n\n"
        )
        parts.append(
            table(
                ["method", "EPR", "AUPRC / prevalence"],
                [
                    [
                        _grn_label(r["method"], r["orientation"]),
                        pm(r["epr_all_mean"], r["epr_all_sd"]),
                        pm(r["auprc_ratio_all_mean"], r["auprc_ratio_all_sd"]),
                    ]
                    for _, r in sergio.iterrows()
                ],
            )
        )
    short = "".join(parts)
    # detail: per cell type
    res = _results(record)
    detail = ""
    if len(res):
        pb = res[res["dataset"] == "pbmc_sorted"]
        if len(pb):
            detail += "\nPer cell type (PBMC vs OmniPath):\n\n" + table(
                [
                    "cell type",
                    "cells",
                    "genes (in OmniPath)",
                    "TFs",
                    "method",
                    "EPR TF-src",
                    "AUPRC/prev TF-src",
                    "EPR all",
                    "AUPRC/prev all",
                    "AUPRC all",
                    "prevalence all",
                    "TF-hub",
                    "seconds",
                ],
                [
                    [
                        r["group"],
                        int(r["n_cells"]),
                        f"{int(r['n_genes'])} ({int(r['n_scored_genes'])})",
                        int(r["n_tfs"]),
                        _grn_label(r["method"], r["orientation"]),
                        r["epr_tf"],
                        r["auprc_ratio_tf"],
                        r["epr_all"],
                        r["auprc_ratio_all"],
                        fmt(r["auprc_all"], 4),
                        fmt(r["prevalence_all"], 4),
                        r["tf_hub_enrichment"],
                        r["seconds"],
                    ]
                    for _, r in pb.iterrows()
                ],
            )
        se = res[res["dataset"].str.startswith("sergio")]
        if len(se):
            detail += "\n\nPer SERGIO set:\n\n" + table(
                ["set", "cells", "method", "EPR", "AUPRC/prev", "AUPRC", "prevalence", "seconds"],
                [
                    [
                        r["dataset"].removeprefix("sergio_"),
                        int(r["n_cells"]),
                        _grn_label(r["method"], r["orientation"]),
                        r["epr_all"],
                        r["auprc_ratio_all"],
                        fmt(r["auprc_all"], 4),
                        fmt(r["prevalence_all"], 4),
                        r["seconds"],
                    ]
                    for _, r in se.iterrows()
                ],
            )
    return short, detail


def denoise_tables(record: dict[str, Any]) -> tuple[str, str]:
    s = _summary(record)
    st = record["settings"]
    short = (
        f"**Denoising** (paper protocol: {int(100 * st['drop'])}% downsampling of the FACS-sorted PBMC counts, "
        "Spearman correlation to the original counts over the genes each cell expresses; "
        f"{record['data'][0].get('evaluated_cells')} cells × {record['data'][0].get('genes_scored')} genes):\n\n"
    )
    short += table(
        ["cells", "method", "Spearman ρ", "gain vs noisy input", "cells improved"],
        [
            [
                r["subset"],
                r["method"],
                fmt(r["spearman_mean"], 3),
                "–"
                if r["method"] == "noisy input"
                else f"{r['gain_vs_noisy_mean']:+.3f} ({r['gain_vs_noisy_pct']:+.0f}%)",
                "–" if r["method"] == "noisy input" else f"{100 * r['fraction_cells_improved']:.0f}%",
            ]
            for _, r in s.iterrows()
        ],
    )
    detail = "\nTimings (s): " + ", ".join(f"{k} {v}" for k, v in (st.get("seconds") or {}).items())
    return short, detail


def spatial_tables(record: dict[str, Any]) -> tuple[str, str]:
    s = _summary(record)
    st = record["settings"]
    den, nic = s[s["task"] == "denoising"], s[s["task"] == "niches"]
    sections = ", ".join(str(d.get("section")) for d in record.get("data", []))
    short = (
        f"**Spatial** (her2st HER2+ breast cancer ST sections {sections}, each on its own). Denoising: "
        f"{int(100 * st['drop'])}% downsampling, Spearman ρ to the original counts over the genes each spot "
        "expresses:\n\n"
    )
    short += table(
        ["section", "method", "spots × genes", "Spearman ρ", "gain vs noisy input", "spots improved"],
        [
            [
                r["section"],
                r["method"],
                f"{int(r['n_spots'])} × {int(r['n_genes'])}",
                fmt(r["spearman_mean"], 3),
                "–" if r["method"] == "noisy input" else f"{r['gain_vs_noisy_mean']:+.3f}",
                "–" if r["method"] == "noisy input" else f"{100 * r['fraction_spots_improved']:.0f}%",
            ]
            for _, r in den.iterrows()
        ],
    )
    short += (
        "\n\nNiches vs the pathologist regions (k = number of regions; mean ± sd over "
        f"{st.get('n_seeds')} Gaussian-mixture seeds; \"determined\" drops the 'undetermined' spots):\n\n"
    )
    short += table(
        ["section", "method", "ARI", "NMI", "ARI (determined)", "NMI (determined)", "failed seeds"],
        [
            [
                r["section"],
                r["method"],
                pm(r["ARI_mean"], r["ARI_std"]),
                pm(r["NMI_mean"], r["NMI_std"]),
                pm(r["ARI_determined_mean"], r["ARI_determined_std"]),
                pm(r["NMI_determined_mean"], r["NMI_determined_std"]),
                fmt(int(r.get("failed_seeds") or 0)),
            ]
            for _, r in nic.iterrows()
        ],
    )
    detail = "\nTimings (s): " + ", ".join(f"{k} {v}" for k, v in (st.get("seconds") or {}).items())
    return short, detail


def embedding_tables(record: dict[str, Any]) -> tuple[str, str]:
    res = _results(record)
    short = (
        "**Embedding** (scib-metrics on CellBench cell-line mixtures, label = cell line; unscaled scores, "
        "higher is better):\n\n"
    )
    short += table(
        ["setting (batch)", "cells", "method", "bio conservation", "batch correction", "total"],
        [
            [
                f"{r['setting']} ({r['batch_key']})",
                int(r["n_cells"]),
                r["method"],
                r["Bio conservation"],
                r["Batch correction"],
                r["Total"],
            ]
            for _, r in res.iterrows()
        ],
    )
    metric_cols = [c for c in res.columns if c not in ("setting", "n_cells", "batch_key", "method")]
    detail = "\nAll scib-metrics scores:\n\n" + table(
        ["setting", "method", *metric_cols],
        [[r["setting"], r["method"], *[r[c] for c in metric_cols]] for _, r in res.iterrows()],
    )
    return short, detail


def classification_tables(record: dict[str, Any]) -> tuple[str, str]:
    s = _summary(record)
    if s.empty:
        return "**Classification**: " + " ".join(record.get("notes") or []), ""
    r = s.iloc[0]
    short = (
        f"**Zero-shot cell-type classification** (FACS-sorted PBMC reference, {int(r['n_cells']):,} cells, "
        f"{int(r['n_populations'])} sorted populations, held out from training):\n\n"
    )
    short += table(
        [
            "accuracy (ontology-aware)",
            "macro-F1 (ontology-aware)",
            "exact accuracy",
            "accuracy incl. coarser answers",
            "majority-class accuracy",
        ],
        [
            [
                r["accuracy_ontology"],
                r["macro_f1_ontology"],
                r["accuracy_exact"],
                r.get("accuracy_consistent"),
                r["majority_class_accuracy"],
            ]
        ],
    )
    res = _results(record)
    detail = "\nPer sorted population:\n\n" + table(
        [
            "population",
            "term",
            "cells",
            "accuracy (ontology)",
            "exact",
            "incl. coarser",
            "F1 (ontology)",
            "most predicted",
            "a model leaf",
        ],
        [
            [
                p["population"],
                p["term"],
                int(p["n_cells"]),
                p["accuracy_ontology"],
                p["accuracy_exact"],
                p.get("accuracy_consistent"),
                p["f1_ontology"],
                p["most_predicted"],
                bool(p["in_model_leaves"]),
            ]
            for _, p in res.iterrows()
        ],
    )
    return short, detail


def annotation_tables(record: dict[str, Any]) -> tuple[str, str]:
    """Annotation by fine-tuning (``benchmarks/annotation.py``): scPRINT vs PCA + LR and scANVI on the same splits."""
    res = _results(record)
    short = (
        "**Annotation by fine-tuning** (`ScPrint.finetune` with its defaults vs PCA + logistic regression and scANVI, "
        "same reference/query splits; fine-tune = `ScPrint.finetune` alone, wall time = training + prediction of "
        "all the split's queries, on a 2-core CPU):\n\n"
    )
    short += table(
        ["split", "query", "cells (ref / query)", "method", "accuracy", "macro-F1", "fine-tune (s)", "wall time (s)"],
        [
            [
                r["split"],
                r["query"],
                f"{int(r['n_reference'])} / {int(r['n_query'])}",
                r["method"],
                r["accuracy"],
                r["macro_f1"],
                "–" if pd.isna(r.get("finetune_s")) else r["finetune_s"],
                r["wall_time_s"],
            ]
            for _, r in res.iterrows()
        ],
    )
    emb = _summary(record)
    detail = ""
    if not emb.empty:
        detail = "\n\nscib-metrics after fine-tuning (CellBench technology split, unscaled):\n\n" + table(
            ["method", "bio conservation", "batch correction", "total"],
            [[r["method"], r["Bio conservation"], r["Batch correction"], r["Total"]] for _, r in emb.iterrows()],
        )
    return short + detail, ""


def annotation_diagnosis_tables(record: dict[str, Any]) -> tuple[str, str]:
    """Where a classifier on the model loses (``benchmarks/annotation_diagnosis.py``): one classifier, several views."""
    res = _results(record)
    short = (
        "**Where a classifier on the model's outputs loses accuracy** (the same logistic regression on different "
        "views of the same cells and splits: expression of the 2,000 HVGs, expression of exactly the genes the "
        "model sees, the frozen zero-shot model's outputs):\n\n"
    )
    short += table(
        ["split", "query", "view", "accuracy", "macro-F1"],
        [[r["split"], r["query"], r["method"], r["accuracy"], r["macro_f1"]] for _, r in res.iterrows()],
    )
    return short, ""


def perturb_tables(record: dict[str, Any]) -> tuple[str, str]:
    """In-silico perturbation (``benchmarks/perturb.py``): regulators against matched random-gene controls."""
    s, res = _summary(record), _results(record)
    st = record["settings"]
    short = (
        "**In-silico perturbation** (`sp.tl.perturb`, FACS-sorted PBMC, held out; expectations stated before the "
        f"run; context {st.get('max_len')} genes, markers as readout genes; {st.get('n_controls')} controls of "
        "matched expression each; marker log2FC of the denoised expression, rank 0 = most decreased / 100 = most "
        "increased gene; Δ dist. = change of the embedding's distance to the target centroid, negative = closer; "
        f"load average {(record['machine'].get('load_average_at_start') or ['?'])[0]} on 2 cores):\n\n"
    )
    short += table(
        [
            "perturbation",
            "marker log2FC",
            "controls (mean ± sd)",
            "marker rank %",
            "expected sign",
            "beats controls",
            "Δ dist. to target",
            "controls",
            "closer than controls",
            "label changed",
        ],
        [
            [
                r["design"],
                fmt(r["marker_log2fc"], 4),
                pm(r["control_marker_log2fc_mean"], r["control_marker_log2fc_sd"], 4),
                fmt(r["marker_rank_pct"], 0),
                "yes" if r["expected_sign"] else "**no**",
                r["beats_controls"],
                fmt(r["toward_target"], 3),
                fmt(r["control_toward_target_mean"], 3),
                r["closer_than_controls"],
                f"{100 * r['frac_label_changed']:.0f}%",
            ]
            for _, r in s.iterrows()
        ],
    )
    n_ctl = st.get("n_controls")
    short += (
        f"\n\nCaveats: with {n_ctl} controls, beating all of them happens with probability 1/{n_ctl + 1} under the "
        "null; the effects are tiny (|log2FC| < 0.02: the small default model barely responds to single regulators) "
        "and are model predictions, with no perturbation data here to check them against. The controls move the "
        "markers in the same direction as the regulators, so the sign alone is no evidence: only the comparison with "
        "the controls is."
        if isinstance(n_ctl, int)
        else ""
    )
    speed = record.get("speed_run")
    if speed:
        row = speed["results"][0]
        short += (
            f"\n\nSpeed: {row['n_cells']:,} cells, 1 perturbation ({row['perturbation']}, {row['n_cells_changed']} "
            f"cells changed), default options (context {row['max_len']}): {row['seconds']:.0f} s "
            f"({row['cells_per_s']:.2f} cells/s) on a 2-core CPU shared with other jobs (load average "
            f"{(speed['machine'].get('load_average_at_start') or ['?'])[0]} at the start)."
        )
    detail = "\nEvery perturbation (regulators and controls):\n\n" + table(
        list(res.columns), [[fmt(v, 4) if isinstance(v, float) else v for v in r] for r in res.itertuples(index=False)]
    )
    return short, detail


def speed_section(results: Path) -> str:
    md, js = results / "speed.md", results / "speed.json"
    if md.is_file() and (not js.is_file() or md.stat().st_mtime >= js.stat().st_mtime - 5):
        return "**Speed and memory** (`benchmarks/speed.py`):\n\n" + md.read_text().strip()
    if not js.is_file():
        return ""
    data = json.loads(js.read_text())
    rows = []
    for r in data.get("rows", []):
        ours, ref = r.get("sc_print", {}), r.get("reference") or {}
        rows.append(
            [
                r.get("task"),
                r.get("n_genes"),
                ours.get("wall_s"),
                ours.get("peak_rss_gb"),
                ref.get("wall_s_1000_cells"),
                ref.get("peak_rss_gb"),
                r.get("speedup"),
            ]
        )
    return (
        "**Speed and memory** (`benchmarks/speed.py`, "
        + str(data.get("data", ""))
        + "):\n\n"
        + table(
            [
                "task",
                "genes",
                "sc_print time (s)",
                "sc_print peak RSS (GB)",
                "reference time (s)",
                "reference peak RSS (GB)",
                "speed-up",
            ],
            rows,
        )
    )


def scale_section(results: Path) -> str:
    """``sc-print embed`` at 10^3..10^6 cells, 1 and 2 processes (``benchmarks/scale.py``), when present."""
    path = results / "scale.json"
    if not path.is_file():
        return ""
    data = json.loads(path.read_text())
    rows = [
        [
            f"{r['n_obs']:,}",
            r["processes"],
            "full" if r["measured"] == "full" else f"prefix, {r['cells_measured']:,} cells",
            fmt(r["cells_per_s"], 1),
            " / ".join(f"{x:.0f}" for x in r["peak_rss_mb_per_process"]),
            fmt(r["setup_s"], 0),
            fmt(r["embed_h_per_1e6_cells"], 1),
            fmt(r.get("outputs_mb"), 0),
        ]
        for r in data["results"]
    ]
    ratios = "; ".join(
        f"{s['processes']} process{'es' if s['processes'] > 1 else ''}: {s['peak_rss_mb_big']:.0f} MB vs "
        f"{s['peak_rss_mb_small']:.0f} MB ({s['ratio']:.2f}x)"
        for s in data.get("summary", [])
    )
    notes = " ".join(data.get("notes", []))
    return (
        "**Atlas scale** (`benchmarks/scale.py`: `sc-print embed --mode all` over backed h5ad files; "
        f"{data['machine'].get('cpu', 'CPU')}): \n\n"
        + table(
            [
                "cells in file",
                "processes",
                "measured",
                "cells/s",
                "peak RSS per process (MB)",
                "set-up (s)",
                "embedding h per 10^6 cells",
                "outputs for the file (MB)",
            ],
            rows,
        )
        + f"\n\nPeak memory on the 10^6-cell file vs the 10^3-cell file: {ratios}. {notes}"
    )


# ---------------------------------------------------------------------------------------------------- verdicts
def pretrain_section(results: Path) -> str:
    """The 300-step pretraining curve of ``scripts/pretrain_pbmc.py`` (when present)."""
    path = results / "pretrain_pbmc.json"
    if not path.is_file():
        return ""
    run = json.loads(path.read_text())
    curve = run["heldout_curve"]
    rows = [[str(p["step"]), fmt(p["heldout_denoise_loss"], 3)] for p in curve]
    return (
        f"**Pretraining on CPU** (`scripts/pretrain_pbmc.py`; {run['model']}; {run['data']}; "
        f"{run['steps']} steps in {run['wall_s'] / 60:.0f} min, {run['s_per_step']:.1f} s/step including the "
        "held-out evaluations): held-out denoising ZINB loss by step\n\n" + table(["step", "held-out loss"], rows)
    )


def suite_time_section(results: Path) -> str:
    """Wall time of the last ``run_all.sh`` (``results/run_all_times.tsv``), step by step."""
    path = results / "run_all_times.tsv"
    if not path.is_file():
        return ""
    times = pd.read_csv(path, sep="\t")
    times = times[times["step"] != "report"]
    if times.empty:
        return ""
    steps = ", ".join(f"{r.step} {r.seconds / 60:.1f}" for r in times.itertuples())
    return (
        f"**Suite wall time**: the last `bash benchmarks/run_all.sh` (model `{times['model'].iloc[0]}`, "
        f"{times['cores'].iloc[0]} CPU cores, finished {times['finished'].iloc[-1]}) took "
        f"{times['seconds'].sum() / 60:.1f} min before the report ({steps} min)."
    )


def _cmp(ours: float, theirs: dict[str, float]) -> str:
    """``best``, ``level with`` the competitors of the same score, or ``loses to`` those with a higher one."""
    beaten = [k for k, v in theirs.items() if v is not None and not math.isnan(v) and v > ours]
    level = [k for k, v in theirs.items() if v is not None and not math.isnan(v) and v == ours]
    if not beaten:
        return "**level with " + ", ".join(level) + "**" if level else "**best**"
    return "**loses to " + ", ".join(beaten) + "**"


def verdicts(records: dict[str, dict[str, Any]]) -> list[str]:
    """One plain sentence per benchmark: where scPRINT wins and where it loses (from the numbers only)."""
    out = []
    if "grn_quality" in records:
        s = _summary(records["grn_quality"])
        for family, metric, label in (
            ("pbmc_sorted", "epr_tf_mean", "GRN vs OmniPath (EPR, TF-source pairs)"),
            ("pbmc_sorted", "auprc_ratio_all_mean", "GRN vs OmniPath (AUPRC/prevalence, all pairs)"),
            ("sergio", "epr_all_mean", "GRN vs SERGIO truth (EPR)"),
        ):
            sub = s[s["family"] == family]
            if sub.empty:
                continue
            ours = sub[sub["method"] == SCPRINT]
            best = ours.loc[ours[metric].idxmax()]
            others = {r["method"]: r[metric] for _, r in sub[sub["method"] != SCPRINT].iterrows()}
            out.append(
                f"{label}: scPRINT {best[metric]:.2f} (best orientation: {best['orientation']}) vs "
                + ", ".join(f"{k} {v:.2f}" for k, v in others.items())
                + f"; random = 1: {_cmp(best[metric], others)}."
            )
    if "denoise" in records:
        s = _summary(records["denoise"])
        for subset in s["subset"].unique():
            sub = s[s["subset"] == subset].set_index("method")
            ours = sub.loc[SCPRINT, "spearman_mean"]
            others = {m: sub.loc[m, "spearman_mean"] for m in sub.index if m != SCPRINT}
            out.append(
                f"Denoising, {subset}: scPRINT ρ {ours:.3f} vs "
                + ", ".join(f"{k} {v:.3f}" for k, v in others.items())
                + f": {_cmp(ours, others)}."
            )
    if "embedding" in records:
        res = _results(records["embedding"])
        for setting in res["setting"].unique():
            sub = res[res["setting"] == setting].set_index("method")
            ours_rows = sub[sub.index.str.startswith(SCPRINT)]
            best = ours_rows["Total"].idxmax()
            others = {m: sub.loc[m, "Total"] for m in sub.index if not m.startswith(SCPRINT)}
            sentence = (
                f"Embedding, {setting}: {best} total {sub.loc[best, 'Total']:.3f} vs "
                + ", ".join(f"{k} {v:.3f}" for k, v in others.items())
                + f": {_cmp(sub.loc[best, 'Total'], others)}."
            )
            bio = {m: sub.loc[m, "Bio conservation"] for m in others}
            ours_batch = sub.loc[best, "Batch correction"]
            weak_bio = sub.loc[best, "Bio conservation"] < 0.75 * max(bio.values())
            if weak_bio and "KMeans NMI" in sub and any(ours_batch > sub.loc[m, "Batch correction"] for m in others):
                sentence += (
                    f" Its batch-correction score ({ours_batch:.2f}) is not a win: with bio conservation "
                    f"{sub.loc[best, 'Bio conservation']:.2f} (vs "
                    + ", ".join(f"{k} {v:.2f}" for k, v in bio.items())
                    + f") and KMeans NMI {sub.loc[best, 'KMeans NMI']:.2f} against the cell lines, the embedding mixes "
                    "cell lines as much as batches."
                )
            out.append(sentence)
    if "classification" in records:
        s = _summary(records["classification"])
        if not s.empty:
            r = s.iloc[0]
            out.append(
                f"Zero-shot classification: ontology-aware accuracy {r['accuracy_ontology']:.3f} vs "
                f"{r['majority_class_accuracy']:.3f} for always answering the largest population: "
                + (
                    "**above the majority baseline**."
                    if r["accuracy_ontology"] > r["majority_class_accuracy"]
                    else "**below the majority baseline**."
                )
            )
    if "annotation" in records:
        res = _results(records["annotation"])
        default = "scPRINT fine-tuned"
        for (split, query), sub in res.groupby(["split", "query"], sort=False):
            sub = sub.set_index("method")
            if default not in sub.index:
                continue
            ours = sub.loc[default, "accuracy"]
            others = {m: sub.loc[m, "accuracy"] for m in sub.index if not m.startswith("scPRINT")}
            out.append(
                f"Annotation by fine-tuning, {split} → {query}: scPRINT fine-tuned (defaults, "
                f"{sub.loc[default, 'finetune_s']:.0f} s) accuracy {ours:.3f} vs "
                + ", ".join(f"{k} {v:.3f}" for k, v in others.items())
                + f": {_cmp(ours, others)}."
            )
        emb = _summary(records["annotation"])
        if not emb.empty and default in set(emb["method"]):
            emb = emb.set_index("method")
            others = {m: emb.loc[m, "Total"] for m in emb.index if not m.startswith("scPRINT fine-tuned")}
            out.append(
                f"Embedding after fine-tuning (CellBench technologies, scib total): {emb.loc[default, 'Total']:.3f} vs "
                + ", ".join(f"{k} {v:.3f}" for k, v in others.items())
                + f": {_cmp(emb.loc[default, 'Total'], others)}."
            )
    if "spatial" in records:
        s = _summary(records["spatial"])
        for section in s["section"].dropna().unique():
            den = s[(s["task"] == "denoising") & (s["section"] == section)].set_index("method")
            if SCPRINT in den.index:
                ours = den.loc[SCPRINT, "spearman_mean"]
                others = {m: den.loc[m, "spearman_mean"] for m in den.index if m != SCPRINT}
                out.append(
                    f"Spatial denoising, her2st {section}: scPRINT ρ {ours:.3f} vs "
                    + ", ".join(f"{k} {v:.3f}" for k, v in others.items())
                    + f": {_cmp(ours, others)}."
                )
            nic = s[(s["task"] == "niches") & (s["section"] == section)].set_index("method")
            mine = [m for m in nic.index if m.startswith(SCPRINT)]
            if mine:
                best = max(mine, key=lambda m: nic.loc[m, "ARI_mean"])
                others = {m: nic.loc[m, "ARI_mean"] for m in nic.index if m not in mine}
                out.append(
                    f"Spatial niches, her2st {section}: {best} ARI {nic.loc[best, 'ARI_mean']:.3f} vs "
                    + ", ".join(
                        f"{k} {v:.3f}" if v is not None and not math.isnan(v) else f"{k} – (every mixture failed)"
                        for k, v in others.items()
                    )
                    + f": {_cmp(nic.loc[best, 'ARI_mean'], others)}."
                )
    if "perturb" in records:
        for _, r in _summary(records["perturb"]).iterrows():
            won, n_ctl = (int(v) for v in r["beats_controls"].split("/"))
            sd = r["control_marker_log2fc_sd"] or float("nan")
            z = (r["marker_log2fc"] - r["control_marker_log2fc_mean"]) / sd if sd == sd and sd > 0 else float("nan")
            if not r["expected_sign"]:
                markers = "**opposite to the expectation**"
            elif won == n_ctl:
                markers = f"**expected direction, beyond all {n_ctl} controls** (z = {z:+.1f} against them)"
            else:
                markers = f"**expected direction, but not beyond the controls** ({won}/{n_ctl}, z = {z:+.1f})"
            cells = "closer to" if r["toward_target"] < 0 else "farther from"
            out.append(
                f"In-silico {r['design']}: marker log2FC {r['marker_log2fc']:+.4f} vs controls "
                f"{r['control_marker_log2fc_mean']:+.4f}: {markers}; the cells moved {cells} the target centroid "
                f"(Δ {r['toward_target']:+.3f} vs controls {r['control_toward_target_mean']:+.3f}); effects are small "
                "(|log2FC| < 0.02)."
            )
    return out


# ---------------------------------------------------------------------------------------------------- report
def header(records: dict[str, dict[str, Any]]) -> list[str]:
    first = next(iter(records.values()))
    lines = [
        f"_Generated by `benchmarks/make_report.py` from `benchmarks/results/` "
        f"(run `bash benchmarks/run_all.sh` to regenerate; quality benchmarks "
        f"{sum(r['wall_time_s'] for r in records.values()) / 60:.0f} min of wall time, the whole suite's time is "
        "at the end)._",
        "",
    ]
    if _same(records, "model"):
        lines.append(f"- **Model:** {model_line(first.get('model'))}.")
    else:
        lines += [f"- **Model ({name}):** {model_line(r.get('model'))}." for name, r in records.items()]
    if _same(records, "machine"):
        lines.append(f"- **Machine:** {machine_line(first['machine'])}; every run on CPU.")
    else:
        lines += [f"- **Machine ({name}):** {machine_line(r['machine'])}." for name, r in records.items()]
    files = sorted({d["file"] for r in records.values() for d in r.get("data", []) if "file" in d})
    lines.append("- **Data** (read from `../shared/data`, not redistributed): " + data_line(files) + ".")
    return lines


def data_line(files: Sequence[str]) -> str:
    """Data files grouped by their folder of ``shared/data`` (SERGIO sets by their DS code)."""
    groups: dict[str, list[str]] = {}
    for f in files:
        parts = f.removeprefix("shared/data/").split("/")
        folder = parts[0]
        if folder == "sergio" and len(parts) > 2:
            name = parts[2].rsplit("_", 1)[-1]
        else:
            name = parts[-1].removesuffix(".count.csv.gz")
        groups.setdefault(folder, []).append(name)
    return "; ".join(f"`{folder}/` ({', '.join(sorted(names))})" for folder, names in groups.items())


def limits(records: dict[str, dict[str, Any]]) -> str:
    model = next(iter(records.values())).get("model") or {}
    card = model.get("card") or {}
    steps = card.get("training_steps")
    return (
        "**Limits.** These numbers describe the small model embedded in the package"
        + (f" ({model.get('n_parameters', 0) / 1e6:.1f} M parameters" if model else "")
        + (f", {fmt(steps)} CPU training steps on {fmt(card.get('train_cells'))} cells" if steps is not None else "")
        + (")" if model else "")
        + ", not the published scPRINT models (trained on 50 M cells with ESM2 gene embeddings): it has learned "
        "gene tokens from a few thousand cells and no protein-language prior, so its gene networks and denoising "
        "rest on little data, and its cell-type classifier only knows pseudo-labels transferred from the sorted "
        "reference. The data sets are small (hundreds to a few thousand cells) and were subsampled to keep the "
        'whole suite under an hour on 2 CPU cores. Use the published weights (`sp.load_model("medium")`) for '
        "scientific conclusions; these tables show what the offline model can and cannot do."
    )


def short_report(records: dict[str, dict[str, Any]], results: Path) -> tuple[str, dict[str, str]]:
    blocks, details = [], {}
    renderers = {
        "grn_quality": grn_tables,
        "denoise": denoise_tables,
        "embedding": embedding_tables,
        "classification": classification_tables,
        "annotation": annotation_tables,
        "annotation_diagnosis": annotation_diagnosis_tables,
        "spatial": spatial_tables,
        "perturb": perturb_tables,
    }
    for name in QUALITY:
        if name in records:
            short, detail = renderers[name](records[name])
            blocks.append(short)
            details[name] = detail
    speed = speed_section(results)
    pretrain = pretrain_section(results)
    text = "\n".join(header(records)) + "\n\n" + limits(records) + "\n\n"
    text += "**Where scPRINT (small embedded model) wins and loses:**\n\n"
    text += "\n".join(f"- {v}" for v in verdicts(records)) + "\n\n"
    text += "\n\n".join(blocks)
    if speed:
        text += "\n\n" + speed
    scale = scale_section(results)
    if scale:
        text += "\n\n" + scale
    if pretrain:
        text += "\n\n" + pretrain
    suite = suite_time_section(results)
    if suite:
        text += "\n\n" + suite
    text += "\n\nMethods, per-group tables and caveats: [docs/benchmarks.md](docs/benchmarks.md).\n"
    return text, details


def full_report(records: dict[str, dict[str, Any]], short: str, details: dict[str, str]) -> str:
    titles = {
        "grn_quality": "Gene networks",
        "denoise": "Denoising",
        "embedding": "Embedding",
        "classification": "Classification",
        "annotation": "Annotation by fine-tuning",
        "annotation_diagnosis": "Where a classifier on the model's outputs loses",
        "spatial": "Spatial (her2st)",
        "perturb": "In-silico perturbation",
    }
    parts = [
        "# Benchmarks\n",
        "Quality benchmarks of `sc_print` with its embedded default model, against standard baselines. Everything "
        "on this page is generated by `benchmarks/make_report.py` from the result files that the scripts in "
        "`benchmarks/` write (`bash benchmarks/run_all.sh` reruns them all and regenerates this page and the README "
        "table). Each script's docstring states its protocol in full.\n",
        "## Summary\n",
        short.replace("](docs/benchmarks.md)", "](#details)"),
        "## Details\n",
    ]
    for name, record in records.items():
        parts.append(f"### {titles[name]}\n")
        parts.append(
            f"Script: `benchmarks/{name}.py`; wall time {record['wall_time_s'] / 60:.1f} min; "
            f"created {record['created']}.\n"
        )
        parts.append("Data:\n")
        parts += ["- " + ", ".join(f"{k}: {fmt(v)}" for k, v in d.items()) for d in record.get("data", [])]
        parts.append("\nCaveats:\n")
        parts += [f"- {n}" for n in record.get("notes", [])]
        parts.append(details.get(name, ""))
        settings = {k: v for k, v in record["settings"].items() if k not in ("out",)}
        parts.append("\nSettings: `" + json.dumps(settings, default=str) + "`\n")
    first = next(iter(records.values()))
    parts.append("### Machine and model records\n")
    parts.append(
        "```json\n" + json.dumps({"machine": first["machine"], "model": first.get("model")}, indent=1) + "\n```\n"
    )
    return "\n".join(parts)


def replace_block(readme: Path, text: str) -> None:
    content = readme.read_text()
    if START not in content or END not in content:
        msg = f"{readme} has no {START} ... {END} block to fill."
        raise SystemExit(msg)
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + text.strip() + "\n" + END + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    records = load(args.results)
    if not records:
        msg = f"No result files in {args.results}; run the benchmark scripts first (bash benchmarks/run_all.sh)."
        raise SystemExit(msg)
    short, details = short_report(records, args.results)
    (args.results / "summary.md").write_text(short)
    args.docs.write_text(full_report(records, short, details))
    replace_block(args.readme, short)
    scale, scale_doc = scale_section(args.results), args.docs.with_name("scale.md")
    if scale and scale_doc.is_file() and "<!-- SCALE:START -->" in scale_doc.read_text():
        head, rest = scale_doc.read_text().split("<!-- SCALE:START -->", 1)
        scale_doc.write_text(
            head + "<!-- SCALE:START -->\n" + scale + "\n<!-- SCALE:END -->" + rest.split("<!-- SCALE:END -->", 1)[1]
        )
    print(short)


if __name__ == "__main__":
    main()
