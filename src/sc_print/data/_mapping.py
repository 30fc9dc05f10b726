"""Gene names (Ensembl ids or symbols, human or mouse) -> Ensembl ids of the shipped gene table, species-safe."""

from __future__ import annotations

import logging
import warnings
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from . import _genes
from ._genes import HUMAN, ORGANISMS, ensembl_organism, is_ensembl, resolve_organism, strip_ensembl_version

if TYPE_CHECKING:
    from collections.abc import Iterable

logger = logging.getLogger(__name__)

#: A gene list counts as a mix of organisms when the second organism has at least this many names of its own ...
MIX_MIN_GENES = 20
#: ... and at least this fraction of the names that belong to one organism only.
MIX_MIN_FRACTION = 0.05


class _Symbols(NamedTuple):
    exact: dict[str, str]  # current symbol -> id
    upper: dict[str, str]  # upper-case current symbol -> id
    previous: dict[str, str]  # previous symbol -> id
    previous_upper: dict[str, str]
    names: frozenset[str]  # every current and previous symbol (exact case)


@cache
def _symbols(organism: str) -> _Symbols:
    """Symbol maps of one organism. A symbol shared by several ids maps to a protein-coding one, then the lowest id."""
    table = _genes.load_gene_table()
    rows = table[table["organism"] == organism]
    named = rows[rows["symbol"] != ""]
    order = np.lexsort((named.index.to_numpy(dtype=str), (named["biotype"] != "protein_coding").to_numpy()))
    exact: dict[str, str] = {}
    upper: dict[str, str] = {}
    for gene_id, symbol in zip(
        named.index.to_numpy(dtype=str)[order], named["symbol"].to_numpy(dtype=str)[order], strict=True
    ):
        exact.setdefault(symbol, gene_id)
        upper.setdefault(symbol.upper(), gene_id)
    previous: dict[str, str] = {}
    previous_upper: dict[str, str] = {}
    if "previous_symbols" in rows.columns:
        old = rows.loc[rows["previous_symbols"] != "", "previous_symbols"]
        for gene_id, joined in zip(old.index.to_numpy(dtype=str), old.to_numpy(dtype=str), strict=True):
            for symbol in joined.split("|"):
                if symbol not in exact:
                    previous.setdefault(symbol, gene_id)
                    if symbol.upper() not in upper:
                        previous_upper.setdefault(symbol.upper(), gene_id)
    return _Symbols(exact, upper, previous, previous_upper, frozenset(exact) | frozenset(previous))


def _clear_caches() -> None:
    """Forget the symbol maps (after the gene table changed, e.g. in tests)."""
    _symbols.cache_clear()


def _own_names(names: np.ndarray, ens_org: np.ndarray) -> dict[str, np.ndarray]:
    """Per organism, the names that belong to it only: its Ensembl ids and symbols no other organism has."""
    is_symbol = ens_org == ""
    series = pd.Series(names, dtype=object)
    member = {org: is_symbol & series.isin(_symbols(org).names).to_numpy(dtype=bool) for org in ORGANISMS}
    own = {}
    for org in ORGANISMS:
        others = np.zeros(len(names), dtype=bool)
        for other in ORGANISMS:
            if other != org:
                others |= member[other]
        own[org] = (ens_org == org) | (member[org] & ~others)
    return own


def _examples(names: np.ndarray, mask: np.ndarray, n: int = 3) -> list[str]:
    return names[mask][:n].tolist()


def _pick_organism(names: np.ndarray, counts: dict[str, int]) -> str:
    if any(counts.values()):
        return max(counts, key=lambda org: counts[org])
    # no name is a symbol of exactly one organism: compare case-insensitive overlaps, then the case convention
    present = names[names != ""]
    folded = {org: sum(name.upper() in _symbols(org).upper for name in present) for org in ORGANISMS}
    if any(folded.values()) and len(set(folded.values())) > 1:
        return max(folded, key=lambda org: folded[org])
    n_upper = int(sum(name == name.upper() for name in present))
    return HUMAN if n_upper * 2 >= len(present) else _genes.MOUSE


def _describe(counts: dict[str, int], own: dict[str, np.ndarray], names: np.ndarray) -> str:
    return " and ".join(
        f"{counts[org]} {ORGANISMS[org]} (e.g. {_examples(names, own[org])})" for org in ORGANISMS if counts[org]
    )


def map_gene_names(
    names: Iterable[str],
    *,
    organism: str | None = None,
    id_kind: Literal["auto", "ensembl", "symbol"] = "auto",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Map gene names (Ensembl ids or symbols) onto the Ensembl ids of one organism, never across organisms.

    Ensembl version suffixes (``ENSG00000141510.17``) and GENCODE ``_PAR_Y`` tags are stripped; an Ensembl id of
    the organism maps to itself, also when it is not in the shipped gene table (a retired id keeps its identity,
    it only has no symbol). A symbol maps, in this order, by its exact current symbol, its exact previous
    symbol (where the gene table has one), then ignoring case, always within the organism: a name that is a
    symbol of another organism only (``Gapdh`` for human) is never mapped by ignoring case. A symbol shared by
    several ids maps to a protein-coding id, then the lowest id.

    Species safety: every name that belongs to one organism only (its Ensembl ids, the symbols that no other
    organism has) is counted. When ``organism`` is ``None`` the organism with most such names is used, and a
    mix (the second organism has at least 20 such names and at least 5% of them) raises. With ``organism`` given, names of another organism stay unmapped
    and a mix warns; when (almost: fewer than the thresholds above) no name belongs to the given organism but names belong to another one (e.g.
    mouse genes written in upper case, given with ``organism="mouse"``), the upper-case names are matched
    ignoring case, with a warning. Title-case mouse symbols therefore never map onto human genes.

    Parameters
    ----------
    names
        Gene names, e.g. ``adata.var_names``.
    organism
        NCBITaxon id or common name (``"human"``, ``"mouse"``); detected when ``None``.
    id_kind
        ``"ensembl"`` (symbols are not mapped), ``"symbol"`` or ``"auto"`` (Ensembl when most names are
        Ensembl gene ids). Ensembl ids are mapped in every case.

    Returns
    -------
    ensembl_ids
        Array of str aligned with ``names``: the Ensembl id, ``""`` when the name does not map.
    info
        ``{"kind", "organism", "n_genes", "n_mapped", "n_duplicates", "n_previous_symbols", "n_not_in_table",
        "other_organisms", "unmapped"}``: the kind of names and the organism used, how many names were given
        and mapped, how many mapped names repeat an id already taken by an earlier name, how many mapped
        through a previous symbol, how many mapped ids are not in the gene table (retired ids), the number of
        names of each other organism (``{taxon: count}``, left unmapped), and the names that did not map.

    Raises
    ------
    ValueError
        Unknown ``organism`` or ``id_kind``; with ``organism=None``, a mix of organisms (the message names both
        organisms with their counts and examples).
    """
    raw = pd.Series(list(names), dtype=object).fillna("").astype(str).to_numpy(dtype=str)
    if id_kind not in ("auto", "ensembl", "symbol"):
        msg = f"`id_kind` must be 'auto', 'ensembl' or 'symbol', not {id_kind!r}."
        raise ValueError(msg)
    stripped = strip_ensembl_version(raw)
    looks_ensembl = is_ensembl(stripped)
    present = raw != ""
    kind = id_kind
    if id_kind == "auto":
        kind = "ensembl" if present.any() and looks_ensembl[present].mean() > 0.5 else "symbol"
    ens_org = ensembl_organism(stripped)
    own = _own_names(raw if kind == "symbol" else np.where(ens_org != "", stripped, ""), ens_org)
    counts = {org: int(mask.sum()) for org, mask in own.items()}

    explicit = organism is not None
    org = resolve_organism(organism) if explicit else _pick_organism(raw, counts)
    others = {other: n for other, n in counts.items() if other != org and n}
    n_own_total = sum(counts.values())
    mixed = {other: n for other, n in others.items() if n >= MIX_MIN_GENES and n >= MIX_MIN_FRACTION * n_own_total}
    if mixed and not explicit:
        msg = (
            f"The gene names mix organisms: {_describe(counts, own, raw)} names belong to one organism only. "
            "sc_print never merges genes of different organisms: pass `organism=` to keep one organism's genes "
            "(the others stay unmapped), or split the object by organism."
        )
        raise ValueError(msg)
    # names of another organism are never mapped onto this one, except upper-case names when the user named an
    # organism that (almost) no name belongs to: mouse genes written in upper case, as some pipelines do
    foreign = np.zeros(len(raw), dtype=bool)
    for other in others:
        foreign |= own[other]
    few_own = counts[org] < max(MIX_MIN_GENES, MIX_MIN_FRACTION * n_own_total)
    fold_all = explicit and few_own and sum(others.values()) >= MIX_MIN_GENES and kind == "symbol"
    folded = foreign & (ens_org == "") & (np.char.upper(raw) == raw) if fold_all else np.zeros(len(raw), dtype=bool)
    blocked = foreign & ~folded
    if fold_all:
        warnings.warn(
            f"organism={organism!r} was given, but the names that belong to one organism only are "
            f"{_describe(counts, own, raw)}: {int(folded.sum())} upper-case names are matched to "
            f"{ORGANISMS[org]} symbols ignoring case, {int(blocked.sum())} others stay unmapped. Check `organism=`.",
            UserWarning,
            stacklevel=2,
        )
    elif mixed:
        warnings.warn(
            f"The gene names mix organisms: {_describe(counts, own, raw)} names belong to one organism only; "
            f"only the {ORGANISMS[org]} genes are mapped (organism={organism!r}), the "
            f"{sum(mixed.values())} others stay unmapped.",
            UserWarning,
            stacklevel=2,
        )
    elif others:
        logger.info("%s names of another organism are left unmapped.", _describe(counts, own, raw))

    ids = np.full(len(raw), "", dtype=object)
    by_id = ens_org == org
    ids[by_id] = stripped[by_id]
    n_previous = 0
    if kind == "symbol":
        maps = _symbols(org)
        for i in np.flatnonzero(~looks_ensembl & present & ~blocked):
            name = raw[i]
            gene_id = maps.exact.get(name)
            if gene_id is None and name in maps.previous:
                gene_id = maps.previous[name]
                n_previous += 1
            if gene_id is None:
                key = name.upper()
                gene_id = maps.upper.get(key) or maps.previous_upper.get(key, "")
            ids[i] = gene_id
    ids = ids.astype(str)

    mapped = ids != ""
    in_table = pd.Index(ids[mapped]).isin(_genes.load_gene_table().index)
    info: dict[str, Any] = {
        "kind": kind,
        "organism": org,
        "n_genes": len(raw),
        "n_mapped": int(mapped.sum()),
        "n_duplicates": int(pd.Series(ids[mapped]).duplicated().sum()),
        "n_previous_symbols": n_previous,
        "n_not_in_table": int((~in_table).sum()),
        "other_organisms": {other: int((own[other] & blocked).sum()) for other in others},
        "unmapped": raw[~mapped].tolist(),
    }
    return ids, info
