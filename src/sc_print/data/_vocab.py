"""Gene vocabularies: the ordered Ensembl ids of a model and their genomic positions.

A model's vocabulary and positions are fixed when the model is built and saved with it: loading a model passes
the stored positions to :class:`GeneVocab`, which keeps them; only a *new* vocabulary looks positions up in the
shipped gene table. The gene table and the name mapping live in ``_genes`` and ``_mapping`` and are re-exported
here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._genes import (
    ENSEMBL_PREFIX,
    GENE_POSITION_TOLERANCE,
    HUMAN,
    MOUSE,
    ORGANISMS,
    UNKNOWN_POSITION,
    ensembl_organism,
    load_gene_table,
    locus_positions,
    resolve_organism,
    strip_ensembl_version,
)
from ._mapping import map_gene_names

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "ENSEMBL_PREFIX",
    "GENE_POSITION_TOLERANCE",
    "HUMAN",
    "MOUSE",
    "ORGANISMS",
    "UNKNOWN_POSITION",
    "GeneVocab",
    "load_gene_table",
    "locus_positions",
    "map_gene_names",
    "resolve_organism",
    "strip_ensembl_version",
]


class GeneVocab:
    """Ordered vocabulary of Ensembl gene ids; the token index of a gene is its position in the list.

    Parameters
    ----------
    ids
        Ensembl gene ids (no version suffix), unique.
    positions
        Genomic locus-cluster index of each gene, kept as given (copied). ``None`` builds the positions of a
        *new* vocabulary from the current gene table (:data:`UNKNOWN_POSITION` for genes that are not in the
        table or have no locus). A model stores its positions and passes them back at load time, so a later
        gene table never changes a saved model's inputs.
    organisms
        NCBITaxon ids covered by the vocabulary; derived from the Ensembl id prefixes (``ENSG``, ``ENSMUSG``)
        when ``None``.

    Examples
    --------
    >>> vocab = GeneVocab.from_gene_table(organisms=("NCBITaxon:9606",))
    >>> vocab.index(["ENSG00000141510", "not-a-gene"])
    array([..., -1])
    """

    def __init__(
        self,
        ids: Sequence[str] | np.ndarray,
        positions: Sequence[int] | np.ndarray | None = None,
        *,
        organisms: Sequence[str] | None = None,
    ) -> None:
        index = pd.Index(np.asarray(ids, dtype=str), dtype=object)
        if index.has_duplicates:
            dups = index[index.duplicated()].unique()[:5].tolist()
            msg = f"Gene ids of a vocabulary must be unique; duplicated: {dups}."
            raise ValueError(msg)
        self._index = index
        self.ids: np.ndarray = index.to_numpy(dtype=str)
        if positions is None:
            table = load_gene_table()
            pos = table["pos"].reindex(index).fillna(UNKNOWN_POSITION).to_numpy(dtype=np.int64)
        else:
            pos = np.array(positions, dtype=np.int64)
            if pos.shape != (len(index),):
                msg = f"`positions` has shape {pos.shape}; expected ({len(index)},), one per gene id."
                raise ValueError(msg)
        self.positions: np.ndarray = pos
        if organisms is None:
            found = ensembl_organism(self.ids)
            organisms = [org for org in ORGANISMS if (found == org).any()]
        self.organisms: tuple[str, ...] = tuple(resolve_organism(org) for org in organisms)

    @classmethod
    def from_gene_table(
        cls,
        organisms: Sequence[str] = (HUMAN,),
        *,
        biotypes: Sequence[str] | None = None,
    ) -> GeneVocab:
        """Vocabulary of every gene of the shipped gene table for ``organisms``.

        Parameters
        ----------
        organisms
            NCBITaxon ids or common names; genes come in organism blocks in this order, by Ensembl id inside
            each block (the reference's vocabulary order).
        biotypes
            Keep only these Ensembl biotypes (e.g. ``("protein_coding",)``); all genes when ``None``.

        Returns
        -------
        The vocabulary, with positions from the gene table.
        """
        orgs = [resolve_organism(org) for org in organisms]
        table = load_gene_table()
        blocks = []
        for org in orgs:
            block = table[table["organism"] == org]
            if biotypes is not None:
                block = block[block["biotype"].isin(list(biotypes))]
            blocks.append(block.sort_index())
        genes = pd.concat(blocks) if blocks else table.iloc[:0]
        return cls(genes.index.to_numpy(dtype=str), genes["pos"].to_numpy(dtype=np.int64), organisms=orgs)

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids.tolist())

    def __contains__(self, gene_id: object) -> bool:
        return gene_id in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GeneVocab):
            return NotImplemented
        return np.array_equal(self.ids, other.ids) and np.array_equal(self.positions, other.positions)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        names = ", ".join(ORGANISMS.get(org, org) for org in self.organisms)
        return f"GeneVocab({len(self)} genes; {names or 'no organism'})"

    def index(self, ids: str | Iterable[str]) -> np.ndarray:
        """Token index of each gene id.

        Parameters
        ----------
        ids
            One Ensembl id or several (no version suffix; map user names first with :func:`map_gene_names`).

        Returns
        -------
        Integer array (int64), ``-1`` for ids that are not in the vocabulary.
        """
        query = [ids] if isinstance(ids, str) else list(ids)
        return self._index.get_indexer(pd.Index(np.asarray(query, dtype=str), dtype=object)).astype(np.int64)

    @property
    def symbols(self) -> np.ndarray:
        """Symbol of each gene from the gene table (``""`` when unknown)."""
        return load_gene_table()["symbol"].reindex(self._index).fillna("").to_numpy(dtype=str)

    def to_dict(self) -> dict[str, list]:
        """JSON-serialisable form (``ids``, ``positions``, ``organisms``), read back by :meth:`from_dict`."""
        return {"ids": self.ids.tolist(), "positions": self.positions.tolist(), "organisms": list(self.organisms)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> GeneVocab:
        """Rebuild a vocabulary from :meth:`to_dict` output (its positions are required, never looked up).

        Parameters
        ----------
        state
            ``{"ids", "positions", "organisms"}`` as written by :meth:`to_dict`.

        Returns
        -------
        The vocabulary.

        Raises
        ------
        KeyError
            When ``state`` has no ``ids`` or no ``positions``.
        """
        missing = [key for key in ("ids", "positions") if state.get(key) is None]
        if missing:
            msg = f"A saved vocabulary needs {missing}; got keys {sorted(state)}. Save it with `GeneVocab.to_dict`."
            raise KeyError(msg)
        return cls(state["ids"], state["positions"], organisms=state.get("organisms"))
