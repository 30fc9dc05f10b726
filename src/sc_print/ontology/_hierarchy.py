"""Label hierarchies: leaves (the classifier's outputs) and their ontology parents."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ._ontology import (
    HIERARCHICAL_LABELS,
    NON_TERM_LABELS,
    is_ontology_term,
    is_unknown,
    label_key,
    label_ontology,
    term_ancestors,
    term_name,
    term_ontology,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

logger = logging.getLogger(__name__)

#: Code of an unknown label in :meth:`LabelHierarchy.encode`.
UNKNOWN_CODE = -1
#: Value written by :meth:`LabelHierarchy.decode` for :data:`UNKNOWN_CODE`.
UNKNOWN_LABEL = "unknown"


def _unique_values(values: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Factorise label values: (codes into uniques, -1 for missing; uniques as python objects)."""
    if isinstance(values, pd.Series | pd.Categorical | pd.Index):
        array = values
    else:
        array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
        if array.ndim != 1:
            msg = f"Label values must be one-dimensional, got shape {array.shape}."
            raise ValueError(msg)
    codes, uniques = pd.factorize(array, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object)


class LabelHierarchy:
    """Leaves and ontology parents of one label kind, as the scPRINT classifier heads use them.

    The classifier predicts ``n_leaves`` classes. Codes ``0..n_leaves-1`` are the leaves (sorted ids),
    codes ``n_leaves..n_leaves+n_parents-1`` are the parents (sorted ids) and ``-1`` is unknown.
    A cell labelled with a parent is trained through its leaf descendants (see
    :func:`~sc_print.ontology.hierarchical_classification_loss`) and a leaf prediction counts as correct
    for a parent truth when the leaf descends from it (:meth:`is_correct`).

    Build one with :meth:`from_labels` (a training set), :meth:`from_official` (an official scPRINT
    checkpoint) or :meth:`from_dict` (a saved sc_print model).

    Parameters
    ----------
    label
        Label kind (``"cell_type"``, ``"disease"``... or a custom name).
    leaves
        Leaf ids, in code order.
    parents
        Parent ids, in code order (after the leaves).
    parent_matrix
        ``bool`` array ``[n_parents, n_leaves]``: row ``p`` marks the leaf descendants of ``parents[p]``.
    """

    def __init__(
        self,
        label: str,
        leaves: Sequence[str],
        parents: Sequence[str] = (),
        parent_matrix: np.ndarray | None = None,
    ) -> None:
        leaves = [str(v) for v in leaves]
        parents = [str(v) for v in parents]
        if parent_matrix is None:
            parent_matrix = np.zeros((len(parents), len(leaves)), dtype=bool)
        parent_matrix = np.asarray(parent_matrix)
        if parent_matrix.shape != (len(parents), len(leaves)):
            msg = (
                f"parent_matrix must have shape (n_parents, n_leaves) = ({len(parents)}, {len(leaves)}), "
                f"got {parent_matrix.shape}."
            )
            raise ValueError(msg)
        if parent_matrix.dtype != bool and not np.isin(parent_matrix, (0, 1)).all():
            msg = "parent_matrix must be boolean (or hold only 0 and 1)."
            raise ValueError(msg)
        classes = leaves + parents
        if len(set(classes)) != len(classes):
            duplicated = sorted(pd.Index(classes)[pd.Index(classes).duplicated()].unique())
            msg = f"Leaves and parents must be distinct ids; duplicated: {duplicated[:10]}."
            raise ValueError(msg)
        if len(leaves) == 0:
            msg = f"A label hierarchy needs at least one leaf (label {label!r} has none)."
            raise ValueError(msg)
        self.label: str = str(label)
        self.leaves: list[str] = leaves
        self.parents: list[str] = parents
        #: ``bool`` array ``[n_parents, n_leaves]``: row ``p`` marks the leaf descendants of ``parents[p]``
        self.parent_matrix: np.ndarray = parent_matrix.astype(bool, copy=True)
        self._codes: dict[str, int] = {c: i for i, c in enumerate(classes)}
        self._names: list[str] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_labels(
        cls,
        label: str,
        values: Iterable[Any],
        *,
        hierarchical: bool | None = None,
    ) -> LabelHierarchy:
        """Build the hierarchy of the labels present in a training set (scDataLoader's rule).

        Every ontology ancestor of a present label is a parent, whether present or not; present labels
        that are an ancestor of another present label are therefore parents too. The leaves are the
        present labels that are nobody's ancestor. Unknown values (``None``, NaN, ``""``, ``"unknown"``,
        ``"na"``) are ignored. Values that are not ontology terms (cell-line names, ``"multiethnic"``) are
        leaves without parents.

        Parameters
        ----------
        label
            Label kind: a short key (``"cell_type"``), an official column name
            (``"cell_type_ontology_term_id"``) or a custom name.
        values
            Label of every training cell (ontology ids), any iterable or pandas object.
        hierarchical
            Use the ontology to find parents. ``None``: yes for ``cell_type``, ``disease``, ``assay``,
            ``ethnicity`` and ``tissue`` (as in scPRINT), no for ``sex``, ``organism`` and custom labels.
            Only terms of the label's own ontology get parents (``PATO:0000461`` "normal" among MONDO
            diseases stays a plain leaf).

        Returns
        -------
        The hierarchy, its ``label`` set to the short key.
        """
        key = label_key(label)
        if hierarchical is None:
            hierarchical = key in HIERARCHICAL_LABELS
        _, uniques = _unique_values(values)
        present = sorted({str(v) for v in uniques if not is_unknown(v)})
        if not present:
            msg = f"No known value for label {key!r}: every value is missing or 'unknown'."
            raise ValueError(msg)
        ontology = label_ontology(key)
        not_terms = [v for v in present if v not in NON_TERM_LABELS and not is_ontology_term(v)]
        if not_terms and ontology is not None:
            logger.warning(
                "%d value(s) of label %r are not %s ontology ids (e.g. %s); they become leaves without "
                "parents. Map readable names to ids with sc_print.ontology.to_ontology.",
                len(not_terms),
                key,
                ontology,
                not_terms[:3],
            )
        ancestors: dict[str, set[str]] = {}
        for value in present:
            own_ontology = ontology is None or term_ontology(value) == ontology
            ancestors[value] = set(term_ancestors(value)) if hierarchical and own_ontology else set()
        parent_set = set().union(*ancestors.values())
        leaves = [v for v in present if v not in parent_set]
        parents = sorted(parent_set)
        parent_index = {p: i for i, p in enumerate(parents)}
        matrix = np.zeros((len(parents), len(leaves)), dtype=bool)
        for j, leaf in enumerate(leaves):
            rows = [parent_index[a] for a in ancestors[leaf]]
            matrix[rows, j] = True
        return cls(key, leaves, parents, matrix)

    @classmethod
    def from_official(
        cls,
        label_decoders: Mapping[Any, str],
        labels_hierarchy: Mapping[Any, Sequence[int]],
        n_leaves: int,
        *,
        label: str = "",
    ) -> LabelHierarchy:
        """Rebuild the hierarchy of one class from an official scPRINT checkpoint's hyper-parameters.

        Parameters
        ----------
        label_decoders
            ``hparams["label_decoders"][label]``: code -> ontology id (leaves ``0..n_leaves-1``, then
            parents, plus an ``"unknown"`` entry). Keys may be ints or digit strings.
        labels_hierarchy
            ``hparams["labels_hierarchy"][label]``: parent code -> list of leaf codes (empty or missing
            for flat classes). Row ``code - n_leaves`` of the parent matrix, as in the reference.
        n_leaves
            Number of classifier outputs (``hparams["classes"][label]`` or ``label_counts``).
        label
            Label kind to record.

        Returns
        -------
        The hierarchy; leaves and parents keep the checkpoint's code order.
        """
        decoders = {int(k): str(v) for k, v in label_decoders.items()}
        hierarchy = {int(k): [int(i) for i in v] for k, v in (labels_hierarchy or {}).items()}
        n_leaves = int(n_leaves)
        missing = [i for i in range(n_leaves) if i not in decoders]
        if missing:
            msg = f"label_decoders lacks leaf codes {missing[:10]} (n_leaves={n_leaves}); check the checkpoint class."
            raise ValueError(msg)
        bad_parents = [k for k in hierarchy if k < n_leaves]
        bad_leaves = sorted({i for v in hierarchy.values() for i in v if not 0 <= i < n_leaves})
        if bad_parents or bad_leaves:
            msg = (
                f"labels_hierarchy must map parent codes >= n_leaves ({n_leaves}) to leaf codes < n_leaves; "
                f"got parent codes {bad_parents[:10]} and leaf codes {bad_leaves[:10]}."
            )
            raise ValueError(msg)
        n_parents = max(hierarchy) - n_leaves + 1 if hierarchy else 0
        missing = [n_leaves + r for r in range(n_parents) if n_leaves + r not in decoders]
        if missing:
            msg = f"label_decoders lacks parent codes {missing[:10]} used by labels_hierarchy."
            raise ValueError(msg)
        leaves = [decoders[i] for i in range(n_leaves)]
        parents = [decoders[n_leaves + r] for r in range(n_parents)]
        matrix = np.zeros((n_parents, n_leaves), dtype=bool)
        for code, leaf_codes in hierarchy.items():
            matrix[code - n_leaves, leaf_codes] = True
        return cls(label_key(label), leaves, parents, matrix)

    def to_official(self) -> tuple[dict[int, str], dict[int, list[int]]]:
        """The hierarchy in the official checkpoint layout (inverse of :meth:`from_official`).

        Returns
        -------
        ``label_decoders`` (code -> id, leaves, parents, then ``"unknown"``) and ``labels_hierarchy``
        (parent code -> leaf codes, every parent listed).
        """
        decoders = dict(enumerate(self.leaves + self.parents))
        if UNKNOWN_LABEL not in self._codes:
            decoders[len(decoders)] = UNKNOWN_LABEL
        hierarchy = {
            self.n_leaves + p: np.flatnonzero(row).astype(int).tolist() for p, row in enumerate(self.parent_matrix)
        }
        return decoders, hierarchy

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (strings, ints and lists only), read back by :meth:`from_dict`."""
        return {
            "label": self.label,
            "leaves": list(self.leaves),
            "parents": list(self.parents),
            "parent_leaves": [np.flatnonzero(row).astype(int).tolist() for row in self.parent_matrix],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelHierarchy:
        """Rebuild a hierarchy saved with :meth:`to_dict`.

        Parameters
        ----------
        data
            Mapping with ``label``, ``leaves``, ``parents`` and ``parent_leaves`` (leaf indices of each
            parent).

        Returns
        -------
        The hierarchy.
        """
        missing = [k for k in ("label", "leaves", "parents", "parent_leaves") if k not in data]
        if missing:
            msg = f"Not a saved LabelHierarchy: keys {missing} are missing."
            raise ValueError(msg)
        leaves, parents, rows = list(data["leaves"]), list(data["parents"]), list(data["parent_leaves"])
        if len(rows) != len(parents):
            msg = f"parent_leaves has {len(rows)} rows for {len(parents)} parents."
            raise ValueError(msg)
        matrix = np.zeros((len(parents), len(leaves)), dtype=bool)
        for p, row in enumerate(rows):
            idx = np.asarray(row, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= len(leaves)):
                msg = f"parent_leaves row {p} holds leaf indices outside 0..{len(leaves) - 1}."
                raise ValueError(msg)
            matrix[p, idx] = True
        return cls(str(data["label"]), leaves, parents, matrix)

    # ------------------------------------------------------------------ properties
    @property
    def n_leaves(self) -> int:
        """Number of leaves (classifier outputs)."""
        return len(self.leaves)

    @property
    def n_parents(self) -> int:
        """Number of parents."""
        return len(self.parents)

    @property
    def classes(self) -> list[str]:
        """The id of every code ``0..n_leaves+n_parents-1`` (leaves, then parents)."""
        return self.leaves + self.parents

    @property
    def names(self) -> list[str]:
        """Readable names of the leaves (the id when the ontology has no name for it)."""
        if self._names is None:
            self._names = [term_name(v) for v in self.leaves]
        return list(self._names)

    @property
    def parent_names(self) -> list[str]:
        """Readable names of the parents."""
        return [term_name(v) for v in self.parents]

    def descendants(self, parent: str) -> list[str]:
        """Leaf descendants of a parent id."""
        code = self._codes.get(parent, UNKNOWN_CODE)
        if code < self.n_leaves:
            msg = f"{parent!r} is not a parent of this {self.label!r} hierarchy."
            raise KeyError(msg)
        return [self.leaves[j] for j in np.flatnonzero(self.parent_matrix[code - self.n_leaves])]

    # ------------------------------------------------------------------ coding
    def encode(self, values: Iterable[Any], *, missing: Literal["raise", "unknown"] = "raise") -> np.ndarray:
        """Codes of label values: leaf index, ``n_leaves + parent index``, or ``-1`` for unknown.

        Parameters
        ----------
        values
            Label of each cell (ontology ids; unknown markers give ``-1``).
        missing
            What to do with a value that is neither unknown nor in the hierarchy: ``"raise"`` a
            ``ValueError`` or treat it as ``"unknown"`` (``-1``).

        Returns
        -------
        ``int64`` array of codes.
        """
        if missing not in ("raise", "unknown"):
            msg = f"missing must be 'raise' or 'unknown', got {missing!r}."
            raise ValueError(msg)
        codes, uniques = _unique_values(values)
        table = np.full(len(uniques) + 1, UNKNOWN_CODE, dtype=np.int64)  # last slot: pandas NA sentinel
        absent = []
        for i, value in enumerate(uniques):
            if is_unknown(value):
                continue
            code = self._codes.get(str(value))
            if code is None:
                absent.append(str(value))
            else:
                table[i] = code
        if absent and missing == "raise":
            msg = (
                f"{len(absent)} value(s) of label {self.label!r} are not in this hierarchy: {sorted(absent)[:10]}. "
                "Rebuild the hierarchy from data containing them, or pass missing='unknown'."
            )
            raise ValueError(msg)
        return table[codes]

    def decode(self, codes: Iterable[int] | np.ndarray) -> np.ndarray:
        """Ids of codes (``-1`` -> ``"unknown"``).

        Parameters
        ----------
        codes
            Codes from :meth:`encode` or leaf predictions (``argmax`` of the logits).

        Returns
        -------
        ``object`` array of ids.
        """
        codes = np.asarray(codes, dtype=np.int64)
        n_classes = self.n_leaves + self.n_parents
        if codes.size and (codes.min() < UNKNOWN_CODE or codes.max() >= n_classes):
            msg = f"Codes must lie in -1..{n_classes - 1} for this {self.label!r} hierarchy."
            raise ValueError(msg)
        table = np.asarray([*self.classes, UNKNOWN_LABEL], dtype=object)
        return table[codes]

    # ------------------------------------------------------------------ evaluation
    def is_correct(self, pred_leaf_codes: Iterable[int] | np.ndarray, truth_values: Iterable[Any]) -> np.ndarray:
        """Hierarchy-aware correctness of leaf predictions (scPRINT's accuracy rule).

        A prediction is correct when it equals the truth, or when the truth is a parent (coarser label)
        and the predicted leaf descends from it. A truth absent from the hierarchy but in the ontology is
        judged with the ontology (the predicted leaf equals it or descends from it).

        Parameters
        ----------
        pred_leaf_codes
            Predicted leaf index of each cell (``0..n_leaves-1``).
        truth_values
            True label (ontology id) of each cell.

        Returns
        -------
        ``bool`` array; unknown truths are ``False`` (exclude them with
        :func:`~sc_print.ontology.unknown_mask`, as the reference skips them).
        """
        pred = np.asarray(pred_leaf_codes, dtype=np.int64)
        codes, uniques = _unique_values(truth_values)
        if pred.shape != codes.shape:
            msg = f"pred_leaf_codes has shape {pred.shape} but truth_values has {codes.shape[0]} values."
            raise ValueError(msg)
        if pred.size and (pred.min() < 0 or pred.max() >= self.n_leaves):
            msg = f"pred_leaf_codes must be leaf indices in 0..{self.n_leaves - 1}."
            raise ValueError(msg)
        # ok[u, leaf]: leaf counts as correct for truth uniques[u]; last row = pandas NA sentinel.
        ok = np.zeros((len(uniques) + 1, self.n_leaves), dtype=bool)
        for u, value in enumerate(uniques):
            if is_unknown(value):
                continue
            value = str(value)
            code = self._codes.get(value)
            if code is None:
                ok[u] = [leaf == value or value in term_ancestors(leaf) for leaf in self.leaves]
            elif code < self.n_leaves:
                ok[u, code] = True
            else:
                ok[u] = self.parent_matrix[code - self.n_leaves]
        return ok[codes, pred]

    # ------------------------------------------------------------------ dunder
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelHierarchy):
            return NotImplemented
        return (
            self.label == other.label
            and self.leaves == other.leaves
            and self.parents == other.parents
            and np.array_equal(self.parent_matrix, other.parent_matrix)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LabelHierarchy(label={self.label!r}, n_leaves={self.n_leaves}, n_parents={self.n_parents})"
