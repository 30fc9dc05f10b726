"""Ontology look-ups (names, ancestors) and label-name conventions.

Everything here reads the ontologies shipped inside the ``cellxgene-ontology-guide`` wheel, so it works
offline. NCBITaxon is the exception: its file takes tens of seconds and several GB of memory to parse,
so organism names come from a small fixed table and organisms have no hierarchy.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable

logger = logging.getLogger(__name__)

#: Short label keys used across sc_print, mapped to the official CELLxGENE ``.obs`` column names.
LABEL_COLUMNS: dict[str, str] = {
    "cell_type": "cell_type_ontology_term_id",
    "disease": "disease_ontology_term_id",
    "assay": "assay_ontology_term_id",
    "ethnicity": "self_reported_ethnicity_ontology_term_id",
    "sex": "sex_ontology_term_id",
    "organism": "organism_ontology_term_id",
    "tissue": "tissue_ontology_term_id",
}

#: Ontology of each label kind (the guide's ontology name; HANCESTRO also covers imported AfPO terms).
LABEL_ONTOLOGIES: dict[str, str] = {
    "cell_type": "CL",
    "disease": "MONDO",
    "assay": "EFO",
    "ethnicity": "HANCESTRO",
    "sex": "PATO",
    "organism": "NCBITaxon",
    "tissue": "UBERON",
}

#: Label kinds trained hierarchically by default (as in scPRINT; sex and organism are flat).
HIERARCHICAL_LABELS: frozenset[str] = frozenset({"cell_type", "disease", "assay", "ethnicity", "tissue"})

#: Values (compared case-insensitively after stripping) that mean "no label".
UNKNOWN_VALUES: frozenset[str] = frozenset({"", "unknown", "na", "nan", "none", "<na>"})

#: Non-ontology values that are real labels in CELLxGENE (kept as leaves without parents, no warning).
NON_TERM_LABELS: frozenset[str] = frozenset({"multiethnic"})

# Verified once against the guide's NCBITaxon file; loading that file at run time costs ~3 GB of memory.
_NCBITAXON_NAMES: dict[str, str] = {
    "NCBITaxon:9606": "Homo sapiens",
    "NCBITaxon:10090": "Mus musculus",
    "NCBITaxon:10116": "Rattus norvegicus",
    "NCBITaxon:7955": "Danio rerio",
    "NCBITaxon:7227": "Drosophila melanogaster",
    "NCBITaxon:6239": "Caenorhabditis elegans",
    "NCBITaxon:9544": "Macaca mulatta",
    "NCBITaxon:9541": "Macaca fascicularis",
    "NCBITaxon:9598": "Pan troglodytes",
    "NCBITaxon:9483": "Callithrix jacchus",
    "NCBITaxon:9823": "Sus scrofa",
    "NCBITaxon:9913": "Bos taurus",
}
# Ontologies never handed to the guide (too large to parse on demand).
_NOT_LOADED: frozenset[str] = frozenset({"NCBITaxon"})

_COLUMN_TO_KEY: dict[str, str] = {column: key for key, column in LABEL_COLUMNS.items()}
_COLUMN_TO_KEY["self_reported_ethnicity"] = "ethnicity"
_PREFIX_RE = re.compile(r"^([A-Za-z]+)[:_][A-Za-z0-9]+$")


def label_key(name: str) -> str:
    """Short label key (``"cell_type"``) of a label given by its key or its official column name.

    Parameters
    ----------
    name
        ``"cell_type"`` or ``"cell_type_ontology_term_id"`` (likewise for ``disease``, ``assay``,
        ``ethnicity``/``self_reported_ethnicity_ontology_term_id``, ``sex``, ``organism``, ``tissue``).

    Returns
    -------
    The short key. Names that are neither (custom labels such as ``"cell_line"``) are returned unchanged.
    """
    return _COLUMN_TO_KEY.get(name, name)


def label_column(name: str) -> str:
    """Official CELLxGENE ``.obs`` column of a label given by its short key or its column name.

    Parameters
    ----------
    name
        ``"cell_type"`` or ``"cell_type_ontology_term_id"`` and so on.

    Returns
    -------
    The official column name (``"cell_type_ontology_term_id"``). Custom labels are returned unchanged.
    """
    return LABEL_COLUMNS.get(label_key(name), name)


def label_ontology(name: str) -> str | None:
    """Ontology (``"CL"``, ``"MONDO"``...) of a label kind, or ``None`` for custom labels."""
    return LABEL_ONTOLOGIES.get(label_key(name))


def is_unknown(value: Any) -> bool:
    """Whether a label value means "no label": ``None``, NaN, ``pd.NA``, ``""``, ``"unknown"``, ``"na"``.

    Parameters
    ----------
    value
        One label value.

    Returns
    -------
    ``True`` when the value carries no label.
    """
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() in UNKNOWN_VALUES
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def unknown_mask(values: Iterable[Any]) -> np.ndarray:
    """Boolean mask of the values that carry no label (see :func:`is_unknown`).

    Parameters
    ----------
    values
        Label values (list, array, pandas Series or Categorical).

    Returns
    -------
    ``bool`` array, ``True`` where the value is unknown.
    """
    return np.fromiter((is_unknown(v) for v in values), dtype=bool)


@functools.cache
def _parser() -> Any:
    from cellxgene_ontology_guide.ontology_parser import OntologyParser

    return OntologyParser()


def term_ontology(term_id: str) -> str | None:
    """Ontology name (``"CL"``, ``"HANCESTRO"`` for ``AfPO:`` ids...) of an id, ``None`` when not an id.

    Parameters
    ----------
    term_id
        Candidate ontology term id such as ``"CL:0000236"``.

    Returns
    -------
    The ontology the guide files the term under, or ``None`` when ``term_id`` does not look like an id of a
    known ontology (for example a cell-line name).
    """
    if not isinstance(term_id, str):
        return None
    match = _PREFIX_RE.match(term_id)
    if match is None:
        return None
    prefix = match.group(1)
    if prefix in _NOT_LOADED:
        return prefix
    schema = _parser().cxg_schema
    if prefix in schema.supported_ontologies:
        return prefix
    return schema.imported_ontologies.get(prefix)


@functools.cache
def _term_record(term_id: str) -> dict[str, Any] | None:
    ontology = term_ontology(term_id)
    if ontology is None or ontology in _NOT_LOADED:
        return None
    return _parser().cxg_schema.ontology(ontology).get(term_id)


def is_ontology_term(term_id: str) -> bool:
    """Whether ``term_id`` is a term of an ontology the guide ships (deprecated terms included).

    Parameters
    ----------
    term_id
        Candidate id.

    Returns
    -------
    ``True`` for a known term. NCBITaxon ids are checked against sc_print's fixed organism table.
    """
    if term_ontology(term_id) in _NOT_LOADED:
        return term_id in _NCBITAXON_NAMES
    return _term_record(term_id) is not None


@functools.cache
def term_name(term_id: str) -> str:
    """Readable name of an ontology term (``"CL:0000236"`` -> ``"B cell"``).

    Parameters
    ----------
    term_id
        Ontology term id. Anything else (``"unknown"``, a cell-line name, an id unknown to the guide) is
        returned unchanged.

    Returns
    -------
    The term's label, or ``term_id`` itself when it has none.
    """
    if term_id in _NCBITAXON_NAMES:
        return _NCBITAXON_NAMES[term_id]
    record = _term_record(term_id)
    if record is None:
        return term_id
    return str(record["label"])


def term_names(term_ids: Iterable[str]) -> list[str]:
    """Readable names of several terms (see :func:`term_name`)."""
    return [term_name(t) for t in term_ids]


@functools.cache
def term_ancestors(term_id: str) -> tuple[str, ...]:
    """All ontology ancestors of a term (transitive, the term itself excluded), nearest first.

    Parameters
    ----------
    term_id
        Ontology term id.

    Returns
    -------
    Ancestor ids sorted by distance then id; empty for roots, deprecated terms, NCBITaxon ids and values
    that are not ontology terms.
    """
    record = _term_record(term_id)
    if record is None:
        return ()
    ancestors: dict[str, int] = record.get("ancestors", {})
    return tuple(sorted(ancestors, key=lambda a: (ancestors[a], a)))


@functools.cache
def _label_to_id(ontology: str) -> dict[str, str]:
    # Non-deprecated terms win over deprecated ones sharing a label.
    terms = _parser().cxg_schema.ontology(ontology)
    table: dict[str, str] = {}
    for deprecated_pass in (True, False):
        for tid, record in terms.items():
            if bool(record.get("deprecated", False)) == deprecated_pass:
                table[record["label"]] = tid
    return table


def term_id_from_name(name: str, ontology: str) -> str | None:
    """Ontology id of a term given its exact readable name (``"B cell"``, ``"CL"`` -> ``"CL:0000236"``).

    Parameters
    ----------
    name
        Exact term label, as printed by :func:`term_name`.
    ontology
        Ontology to search (``"CL"``, ``"MONDO"``, ``"EFO"``, ``"HANCESTRO"``, ``"PATO"``, ``"UBERON"``,
        ``"NCBITaxon"``).

    Returns
    -------
    The id, or ``None`` when no term has that name. Non-deprecated terms are preferred.
    """
    if ontology in _NOT_LOADED:
        return next((tid for tid, label in _NCBITAXON_NAMES.items() if label == name), None)
    if ontology not in _parser().cxg_schema.supported_ontologies:
        msg = f"Unknown ontology {ontology!r}; use one of {sorted(_parser().cxg_schema.supported_ontologies)}."
        raise ValueError(msg)
    return _label_to_id(ontology).get(name)
