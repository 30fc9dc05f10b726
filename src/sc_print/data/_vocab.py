"""Gene table shipped with sc_print, gene vocabularies and gene-name mapping.

The gene table (``sc_print/_resources/genes.parquet``, built by ``scripts/build_gene_table.py``) holds one row
per Ensembl gene id (human ``ENSG``, mouse ``ENSMUSG``): ``symbol``, ``organism``, ``chromosome``, ``start``,
``pos`` (1-based locus-cluster index, 10 kb rule, restarting per organism; 0 when the gene has no locus) and
``biotype``.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from importlib.resources import as_file, files
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

logger = logging.getLogger(__name__)

HUMAN = "NCBITaxon:9606"
MOUSE = "NCBITaxon:10090"
#: Organisms covered by the shipped gene table, with a readable name.
ORGANISMS: dict[str, str] = {HUMAN: "human", MOUSE: "mouse"}
#: Ensembl gene-id prefix of each organism.
ENSEMBL_PREFIX: dict[str, str] = {HUMAN: "ENSG", MOUSE: "ENSMUSG"}
#: Position given to a gene whose locus is unknown (real positions are 1-based).
UNKNOWN_POSITION = 0
#: Genes whose starts are at most this many base pairs apart share a genomic position (scPRINT's rule).
GENE_POSITION_TOLERANCE = 10_000

_ALIASES: dict[str, str] = {
    "human": HUMAN,
    "homo sapiens": HUMAN,
    "homo_sapiens": HUMAN,
    "hsapiens": HUMAN,
    "9606": HUMAN,
    "mouse": MOUSE,
    "mus musculus": MOUSE,
    "mus_musculus": MOUSE,
    "mmusculus": MOUSE,
    "10090": MOUSE,
}
# Ensembl gene id, optionally with a version suffix (ENSG00000141510.17) and a GENCODE PAR tag (_PAR_Y).
_ENSEMBL_RE = re.compile(r"^(ENS[A-Z]*G\d{11})(?:\.\d+)?(?:_PAR_Y)?$")


@cache
def load_gene_table() -> pd.DataFrame:
    """Load the gene table shipped with sc_print.

    The result is cached: treat it as read-only (copy it before modifying it).

    Returns
    -------
    DataFrame indexed by Ensembl gene id (``gene_id``) with columns ``symbol`` (``""`` when unknown),
    ``organism`` (``"NCBITaxon:9606"`` or ``"NCBITaxon:10090"``), ``chromosome`` (``""`` when unknown),
    ``start`` (``-1`` when unknown), ``pos`` (1-based locus-cluster index, 0 when unknown) and ``biotype``.
    Rows are ordered human then mouse, by Ensembl id inside each organism.
    """
    with as_file(files("sc_print") / "_resources" / "genes.parquet") as path:
        return pd.read_parquet(path)


def resolve_organism(organism: str) -> str:
    """Return the NCBITaxon id of ``organism``.

    Parameters
    ----------
    organism
        An NCBITaxon id (``"NCBITaxon:9606"``) or a common name (``"human"``, ``"mouse"``, ``"Mus musculus"``).

    Returns
    -------
    The NCBITaxon id.

    Raises
    ------
    ValueError
        When the organism is not covered by the gene table.
    """
    if organism in ORGANISMS:
        return organism
    key = str(organism).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    supported = ", ".join(f"{taxon!r} ({name!r})" for taxon, name in ORGANISMS.items())
    msg = f"Unknown organism {organism!r}; sc_print supports {supported}."
    raise ValueError(msg)


def locus_positions(
    chromosome: Sequence[str | None] | pd.Series,
    start: Sequence[float | None] | pd.Series,
    *,
    tolerance: int = GENE_POSITION_TOLERANCE,
) -> np.ndarray:
    """Genomic locus-cluster index of each gene of one organism (scPRINT's 10 kb rule).

    Genes with a locus are sorted by ``(chromosome as a string, start)``; a counter starting at 0 is
    incremented on the first gene, whenever the chromosome changes and whenever the gap to the previous gene's
    start exceeds ``tolerance`` base pairs. Neighbouring genes therefore share a position.

    Parameters
    ----------
    chromosome
        Chromosome (or contig) of each gene; missing (``None``/NaN/``""``) when unknown.
    start
        Start coordinate of each gene; missing (NaN or negative) when unknown.
    tolerance
        Largest gap, in base pairs, between the starts of two consecutive genes sharing a position.

    Returns
    -------
    Int64 array aligned with the input: 1-based positions, :data:`UNKNOWN_POSITION` for genes without a locus.
    """
    chrom = pd.Series(list(chromosome), dtype=object)
    begin = pd.to_numeric(pd.Series(list(start), dtype=object), errors="coerce")
    if len(chrom) != len(begin):
        msg = f"`chromosome` ({len(chrom)}) and `start` ({len(begin)}) must have the same length."
        raise ValueError(msg)
    known = (chrom.notna() & (chrom.astype(str) != "") & begin.notna() & (begin >= 0)).to_numpy()
    frame = pd.DataFrame({"chromosome": chrom[known].astype(str), "start": begin[known].astype(np.int64)})
    frame = frame.sort_values(["chromosome", "start"], kind="stable")
    sorted_chrom = frame["chromosome"].to_numpy()
    sorted_start = frame["start"].to_numpy()
    new_locus = np.ones(len(frame), dtype=bool)
    new_locus[1:] = (sorted_chrom[1:] != sorted_chrom[:-1]) | (np.diff(sorted_start) > tolerance)
    pos = np.full(len(chrom), UNKNOWN_POSITION, dtype=np.int64)
    pos[frame.index.to_numpy()] = np.cumsum(new_locus)
    return pos


def strip_ensembl_version(names: Iterable[str]) -> np.ndarray:
    """Strip version suffixes from Ensembl gene ids (``ENSG00000141510.17`` -> ``ENSG00000141510``).

    Names that are not Ensembl gene ids are returned unchanged.

    Parameters
    ----------
    names
        Gene names or ids.

    Returns
    -------
    Array of str, same length as ``names``.
    """
    values = pd.Series(list(names), dtype=object).fillna("").astype(str)
    stripped = values.str.extract(_ENSEMBL_RE, expand=False)
    return stripped.fillna(values).to_numpy(dtype=str)


def _is_ensembl(names: np.ndarray) -> np.ndarray:
    return pd.Series(names, dtype=str).str.fullmatch(_ENSEMBL_RE.pattern).to_numpy(dtype=bool)


@cache
def _symbol_maps(organism: str) -> tuple[dict[str, str], dict[str, str]]:
    """Symbol -> id (exact case) and upper-case symbol -> id for one organism; first id in sorted order."""
    table = load_gene_table()
    rows = table[(table["organism"] == organism) & (table["symbol"] != "")]
    ids = rows.index.to_numpy(dtype=str)
    symbols = rows["symbol"].to_numpy(dtype=str)
    order = np.argsort(ids, kind="stable")
    exact: dict[str, str] = {}
    upper: dict[str, str] = {}
    for gene_id, symbol in zip(ids[order], symbols[order], strict=True):
        exact.setdefault(symbol, gene_id)
        upper.setdefault(symbol.upper(), gene_id)
    return exact, upper


@cache
def _organism_ids(organism: str) -> pd.Index:
    table = load_gene_table()
    return table.index[table["organism"] == organism]


def _detect_kind(names: np.ndarray) -> Literal["ensembl", "symbol"]:
    present = names[names != ""]
    if len(present) and _is_ensembl(present).mean() > 0.5:
        return "ensembl"
    return "symbol"


def _detect_organism(names: np.ndarray, kind: str) -> str:
    present = names[names != ""]
    if kind == "ensembl":
        counts = {org: int(np.char.startswith(present, prefix + "0").sum()) for org, prefix in ENSEMBL_PREFIX.items()}
    else:
        # case-sensitive overlap with each organism's symbols; human symbols are upper case, mouse Title case
        counts = {org: sum(name in _symbol_maps(org)[0] for name in present) for org in ORGANISMS}
        if not any(counts.values()):
            upper = int(sum(name == name.upper() for name in present))
            counts = {HUMAN: upper, MOUSE: len(present) - upper}
    return max(counts, key=lambda org: counts[org])


def map_gene_names(
    names: Iterable[str],
    *,
    organism: str | None = None,
    id_kind: Literal["auto", "ensembl", "symbol"] = "auto",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Map gene names (Ensembl ids or symbols) onto the Ensembl ids of the shipped gene table.

    Ensembl version suffixes are stripped. Symbols are matched case-sensitively first, then case-insensitively;
    a symbol shared by several ids maps to the first id in sorted order (as the reference does). Names that
    look like Ensembl ids are also accepted in a list of symbols.

    Parameters
    ----------
    names
        Gene names, e.g. ``adata.var_names``.
    organism
        NCBITaxon id or common name (``"human"``, ``"mouse"``); detected when ``None`` from the Ensembl prefixes
        (``ENSG`` / ``ENSMUSG``) or from the overlap of the symbols with each organism's symbols and their case.
    id_kind
        ``"ensembl"``, ``"symbol"`` or ``"auto"`` (Ensembl when most names are Ensembl gene ids).

    Returns
    -------
    ensembl_ids
        Array of str aligned with ``names``: the Ensembl id, ``""`` when the name does not map.
    info
        ``{"kind", "organism", "n_genes", "n_mapped", "n_duplicates", "unmapped"}``: the kind of names and the
        organism used, how many names were given and mapped, how many mapped names repeat an id already taken
        by an earlier name, and the list of names that did not map.
    """
    raw = pd.Series(list(names), dtype=object).fillna("").astype(str).to_numpy(dtype=str)
    if id_kind not in ("auto", "ensembl", "symbol"):
        msg = f"`id_kind` must be 'auto', 'ensembl' or 'symbol', not {id_kind!r}."
        raise ValueError(msg)
    stripped = strip_ensembl_version(raw)
    kind = _detect_kind(stripped) if id_kind == "auto" else id_kind
    org = resolve_organism(organism) if organism is not None else _detect_organism(stripped, kind)

    ids = np.full(len(raw), "", dtype=object)
    known = _organism_ids(org)
    looks_ensembl = _is_ensembl(stripped)
    by_id = looks_ensembl & pd.Index(stripped).isin(known)
    ids[by_id] = stripped[by_id]
    if kind == "symbol":
        exact, upper = _symbol_maps(org)
        for i in np.flatnonzero(~by_id & (raw != "")):
            name = raw[i]
            ids[i] = exact.get(name) or upper.get(name.upper(), "")
    ids = ids.astype(str)

    mapped = ids != ""
    n_duplicates = int(pd.Series(ids[mapped]).duplicated().sum())
    info: dict[str, Any] = {
        "kind": kind,
        "organism": org,
        "n_genes": len(raw),
        "n_mapped": int(mapped.sum()),
        "n_duplicates": n_duplicates,
        "unmapped": raw[~mapped].tolist(),
    }
    return ids, info


class GeneVocab:
    """Ordered vocabulary of Ensembl gene ids; the token index of a gene is its position in the list.

    Parameters
    ----------
    ids
        Ensembl gene ids (no version suffix), unique.
    positions
        Genomic locus-cluster index of each gene; looked up in the gene table when ``None``
        (:data:`UNKNOWN_POSITION` for genes that are not in the table or have no locus).
    organisms
        NCBITaxon ids covered by the vocabulary; derived from the gene table (or the id prefixes) when ``None``.

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
        table = load_gene_table()
        if positions is None:
            pos = table["pos"].reindex(index).fillna(UNKNOWN_POSITION).to_numpy(dtype=np.int64)
        else:
            pos = np.asarray(positions, dtype=np.int64)
            if pos.shape != (len(index),):
                msg = f"`positions` has shape {pos.shape}; expected ({len(index)},), one per gene id."
                raise ValueError(msg)
        self.positions: np.ndarray = pos
        if organisms is None:
            found = table["organism"].reindex(index).astype(object)
            for org, prefix in ENSEMBL_PREFIX.items():
                found[found.isna() & index.str.startswith(prefix + "0")] = org
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
        """Rebuild a vocabulary from :meth:`to_dict` output."""
        return cls(state["ids"], state.get("positions"), organisms=state.get("organisms"))
