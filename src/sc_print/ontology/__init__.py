"""Label hierarchies from the cellxgene-ontology-guide and the hierarchical classification loss."""

from __future__ import annotations

from ._hierarchy import UNKNOWN_CODE, UNKNOWN_LABEL, LabelHierarchy
from ._labels import ASSAY_NAMES, DISEASE_NAMES, ORGANISM_NAMES, PBMC_SORTED_CELL_TYPES, SEX_NAMES, to_ontology
from ._loss import hierarchical_classification_loss, hierarchical_probabilities
from ._ontology import (
    HIERARCHICAL_LABELS,
    LABEL_COLUMNS,
    LABEL_ONTOLOGIES,
    is_ontology_term,
    is_unknown,
    label_column,
    label_key,
    label_ontology,
    term_ancestors,
    term_id_from_name,
    term_name,
    term_names,
    term_ontology,
    unknown_mask,
)

__all__ = [
    "ASSAY_NAMES",
    "DISEASE_NAMES",
    "HIERARCHICAL_LABELS",
    "LABEL_COLUMNS",
    "LABEL_ONTOLOGIES",
    "ORGANISM_NAMES",
    "PBMC_SORTED_CELL_TYPES",
    "SEX_NAMES",
    "UNKNOWN_CODE",
    "UNKNOWN_LABEL",
    "LabelHierarchy",
    "hierarchical_classification_loss",
    "hierarchical_probabilities",
    "is_ontology_term",
    "is_unknown",
    "label_column",
    "label_key",
    "label_ontology",
    "term_ancestors",
    "term_id_from_name",
    "term_name",
    "term_names",
    "term_ontology",
    "to_ontology",
    "unknown_mask",
]
