"""From AnnData rows to model inputs: gene vocabulary, tokenisation, downsampling noise, sampling."""

from ._noise import downsample_profile
from ._sampler import label_weights
from ._tokenize import CONTEXT_MODES, GeneMapper, Tokens, select_genes, tokenize, tokenize_rows
from ._vocab import (
    GENE_POSITION_TOLERANCE,
    ORGANISMS,
    UNKNOWN_POSITION,
    GeneVocab,
    load_gene_table,
    locus_positions,
    map_gene_names,
    resolve_organism,
    strip_ensembl_version,
)

__all__ = [
    "CONTEXT_MODES",
    "GENE_POSITION_TOLERANCE",
    "ORGANISMS",
    "UNKNOWN_POSITION",
    "GeneMapper",
    "GeneVocab",
    "Tokens",
    "downsample_profile",
    "label_weights",
    "load_gene_table",
    "locus_positions",
    "map_gene_names",
    "resolve_organism",
    "select_genes",
    "strip_ensembl_version",
    "tokenize",
    "tokenize_rows",
]
