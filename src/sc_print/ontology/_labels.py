"""Curated mappings from the label values of sc_print's example data to ontology ids."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._ontology import (
    is_ontology_term,
    is_unknown,
    label_key,
    label_ontology,
    term_id_from_name,
    term_ontology,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

#: FACS-sorted PBMC populations of Zheng et al. 2017 (``obs["cell_type_sorted"]`` of the sorted PBMC
#: reference) -> Cell Ontology. Every id was checked against its CL label (see the tests).
PBMC_SORTED_CELL_TYPES: dict[str, str] = {
    "nk": "CL:0000623",  # natural killer cell
    "bcells": "CL:0000236",  # B cell
    "memoryt": "CL:0000813",  # memory T cell
    "regulatoryt": "CL:0000815",  # regulatory T cell
    "thelper": "CL:0000492",  # CD4-positive helper T cell
    "cytotoxict": "CL:0000794",  # CD8-positive, alpha-beta cytotoxic T cell
    "monocytes": "CL:0001054",  # CD14-positive monocyte
    "naivet": "CL:0000895",  # naive thymus-derived CD4-positive, alpha-beta T cell
    "naivecytotoxic": "CL:0000900",  # naive thymus-derived CD8-positive, alpha-beta T cell
}

#: Sequencing technologies of the example data -> EFO. Keys are matched ignoring case and punctuation.
ASSAY_NAMES: dict[str, str] = {
    # 10x PBMC chemistries (obs["batch"] of the three-chemistry PBMC set)
    "10x_3p_v2_pbmc1k": "EFO:0009899",  # 10x 3' v2
    "10x_3p_v3_pbmc1k": "EFO:0009922",  # 10x 3' v3
    "10x_5p_pbmc8k_sub1k": "EFO:0011025",  # 10x 5' v1
    "10x_3p_v2": "EFO:0009899",
    "10x_3p_v3": "EFO:0009922",
    "10x_5p_v1": "EFO:0011025",
    # CellBench (Tian et al. 2019) technologies, dataset names and plate batches
    "CEL-seq2": "EFO:0010010",  # CEL-seq2
    "Drop-seq": "EFO:0008722",  # Drop-seq
    "Sort-seq": "EFO:0030074",  # SORT-seq
    # CellBench's "10X Chromium" runs: 3' chemistry, version not recorded in the data
    "10x": "EFO:0030003",  # 10x 3' transcription profiling
    "10X Chromium": "EFO:0030003",
    "sc_celseq2": "EFO:0010010",
    "sc_celseq2_5cl_p1": "EFO:0010010",
    "sc_celseq2_5cl_p2": "EFO:0010010",
    "sc_celseq2_5cl_p3": "EFO:0010010",
    "RNAmix_celseq2": "EFO:0010010",
    "sc_dropseq": "EFO:0008722",
    "RNAmix_sortseq": "EFO:0030074",
    "sc_10x": "EFO:0030003",
    "sc_10x_5cl": "EFO:0030003",
}

#: Common spellings of sex values -> PATO.
SEX_NAMES: dict[str, str] = {
    "female": "PATO:0000383",
    "f": "PATO:0000383",
    "male": "PATO:0000384",
    "m": "PATO:0000384",
}

#: Healthy-donor spellings of the disease label -> PATO "normal".
DISEASE_NAMES: dict[str, str] = {"normal": "PATO:0000461", "healthy": "PATO:0000461"}

#: Common organism names -> NCBITaxon.
ORGANISM_NAMES: dict[str, str] = {
    "human": "NCBITaxon:9606",
    "homo sapiens": "NCBITaxon:9606",
    "hsapiens": "NCBITaxon:9606",
    "mouse": "NCBITaxon:10090",
    "mus musculus": "NCBITaxon:10090",
    "mmusculus": "NCBITaxon:10090",
}

#: Label values accepted as ids although they are not terms of the label's ontology.
_EXTRA_IDS: dict[str, frozenset[str]] = {
    "disease": frozenset({"PATO:0000461"}),  # normal
    "ethnicity": frozenset({"multiethnic"}),
}

_CURATED: dict[str, dict[str, str]] = {
    "cell_type": PBMC_SORTED_CELL_TYPES,
    "assay": ASSAY_NAMES,
    "disease": DISEASE_NAMES,
    "sex": SEX_NAMES,
    "organism": ORGANISM_NAMES,
}


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _curated_table(key: str) -> dict[str, str]:
    table: dict[str, str] = {}
    for name, term in _CURATED.get(key, {}).items():
        norm = _normalise(name)
        if table.get(norm, term) != term:
            msg = f"Curated {key!r} names collide after normalisation: {name!r}."
            raise RuntimeError(msg)
        table[norm] = term
    return table


def _is_label_id(key: str, ontology: str, value: str) -> bool:
    if value in _EXTRA_IDS.get(key, frozenset()):
        return True
    return term_ontology(value) == ontology and is_ontology_term(value)


def to_ontology(label: str, values: Iterable[Any]) -> np.ndarray:
    """Map label values (curated names, exact ontology names or ids) to ontology ids.

    Each value is resolved, in order, as: an unknown marker (``None``, NaN, ``""``, ``"unknown"``...) ->
    ``"unknown"``; an id of the label's ontology -> itself; a curated name of sc_print's example data
    (:data:`PBMC_SORTED_CELL_TYPES`, :data:`ASSAY_NAMES`, :data:`DISEASE_NAMES`, :data:`SEX_NAMES`,
    :data:`ORGANISM_NAMES`;
    case and punctuation ignored) -> its id; an exact ontology term name (``"B cell"``) -> its id.

    Parameters
    ----------
    label
        Label kind: ``"cell_type"``, ``"disease"``, ``"assay"``, ``"ethnicity"``, ``"sex"``, ``"organism"``,
        ``"tissue"`` or the official column name.
    values
        Label values of the cells.

    Returns
    -------
    ``object`` array of ontology ids, one per value.

    Raises
    ------
    ValueError
        When the label has no ontology or some values cannot be resolved (all of them are listed).
    """
    key = label_key(label)
    ontology = label_ontology(key)
    if ontology is None:
        msg = (
            f"Label {label!r} has no ontology; use one of cell_type, disease, assay, ethnicity, sex, organism, tissue."
        )
        raise ValueError(msg)
    array = values if isinstance(values, pd.Series | pd.Categorical | pd.Index) else np.asarray(list(values), object)
    codes, uniques = pd.factorize(array, use_na_sentinel=True)
    curated = _curated_table(key)
    resolved = np.empty(len(uniques) + 1, dtype=object)  # last slot: pandas NA sentinel
    resolved[-1] = "unknown"
    unresolved = []
    for i, value in enumerate(np.asarray(uniques, dtype=object)):
        if is_unknown(value):
            resolved[i] = "unknown"
            continue
        text = str(value).strip()
        if _is_label_id(key, ontology, text):
            resolved[i] = text
        elif _normalise(text) in curated:
            resolved[i] = curated[_normalise(text)]
        elif (found := term_id_from_name(text, ontology)) is not None:
            resolved[i] = found
        else:
            unresolved.append(text)
    if unresolved:
        msg = (
            f"{len(unresolved)} {key} value(s) cannot be mapped to {ontology} ids: {sorted(unresolved)[:20]}. "
            f"Use {ontology} ids or exact {ontology} term names, or map them yourself before training."
        )
        raise ValueError(msg)
    return resolved[np.asarray(codes)]
