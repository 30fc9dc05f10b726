from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from sc_print.data import (
    ORGANISMS,
    UNKNOWN_POSITION,
    GeneVocab,
    load_gene_table,
    locus_positions,
    map_gene_names,
    resolve_organism,
    strip_ensembl_version,
)

HUMAN, MOUSE = "NCBITaxon:9606", "NCBITaxon:10090"
DATA = Path(__file__).parents[2] / "shared" / "data"
TP53, GAPDH, ACTB = "ENSG00000141510", "ENSG00000111640", "ENSG00000075624"
XKR4 = "ENSMUSG00000051951"


# --- gene table -------------------------------------------------------------------------------------------


def test_gene_table_layout():
    table = load_gene_table()
    assert table.index.name == "gene_id"
    assert table.index.is_unique
    assert list(table.columns[:5]) == ["symbol", "organism", "chromosome", "start", "pos"]
    assert set(table["organism"].astype(str)) == set(ORGANISMS)
    assert table.loc[TP53, "symbol"] == "TP53"
    assert table.loc[TP53, "chromosome"] == "17"
    assert table.loc[TP53, "start"] == 7_661_778  # GENCODE v48 (GRCh38)
    assert table.loc[XKR4, "symbol"] == "Xkr4"  # mouse genes have their MGI symbols
    assert table.loc[TP53, "organism"] == HUMAN
    assert table.loc[XKR4, "organism"] == MOUSE
    assert not table.index.str.contains(r"\.").any()  # no version suffixes
    # human block first, sorted ids inside each organism
    organisms = table["organism"].astype(str).to_numpy()
    assert (organisms[: (organisms == HUMAN).sum()] == HUMAN).all()
    for org in ORGANISMS:
        ids = table.index[table["organism"] == org]
        assert ids.is_monotonic_increasing
    assert load_gene_table() is load_gene_table()  # cached


@pytest.mark.parametrize("organism", [HUMAN, MOUSE])
def test_gene_table_positions_follow_the_10kb_rule(organism):
    table = load_gene_table()
    rows = table[table["organism"] == organism]
    located = rows["pos"] != UNKNOWN_POSITION
    assert rows.loc[located, "pos"].min() == 1  # 1-based, restarting per organism
    assert (rows.loc[~located, "chromosome"] == "").all()
    recomputed = locus_positions(rows["chromosome"].astype(str), rows["start"])
    np.testing.assert_array_equal(recomputed, rows["pos"].to_numpy())


# --- 10 kb rule ---------------------------------------------------------------------------------------------


def test_locus_positions_toy_table():
    chromosome = ["1", "1", "1", "1", "2", "2", "10", None, "1"]
    start = [100, 5_000, 15_001, 40_000, 100, 10_100, 50, None, 25_001]
    pos = locus_positions(chromosome, start)
    # sorted: chr "1" (100, 5000, 15001, 25001, 40000), chr "10" (50), chr "2" (100, 10100)
    # chr1: 100 -> 1; 5000 (gap 4900) -> 1; 15001 (gap 10001 > 10 kb) -> 2; 25001 (gap 10000, not > 10 kb) -> 2;
    # 40000 (gap 14999) -> 3; chr10: 4; chr2: 100 -> 5, 10100 (gap exactly 10 kb) -> 5
    np.testing.assert_array_equal(pos, [1, 1, 2, 3, 5, 5, 4, UNKNOWN_POSITION, 2])


def test_locus_positions_tolerance_and_length_check():
    np.testing.assert_array_equal(locus_positions(["1", "1"], [0, 500], tolerance=100), [1, 2])
    with pytest.raises(ValueError, match="same length"):
        locus_positions(["1"], [0, 1])


# --- organisms and ids ----------------------------------------------------------------------------------------


def test_resolve_organism():
    assert resolve_organism("human") == HUMAN
    assert resolve_organism("Mus musculus") == MOUSE
    assert resolve_organism(MOUSE) == MOUSE
    with pytest.raises(ValueError, match=r"Unknown organism 'zebrafish'.*NCBITaxon:9606.*NCBITaxon:10090"):
        resolve_organism("zebrafish")


def test_strip_ensembl_version():
    out = strip_ensembl_version(["ENSG00000141510.17", "ENSMUSG00000051951.5", "ENSG00000002586.20_PAR_Y", "TP53"])
    assert out.tolist() == [TP53, XKR4, "ENSG00000002586", "TP53"]


# --- map_gene_names -------------------------------------------------------------------------------------------


def test_map_ensembl_with_version_suffix():
    ids, info = map_gene_names([f"{TP53}.17", f"{GAPDH}.3", ACTB, "ENSG99999999999", "ENSG_NOT_AN_ID"])
    # a well-formed id of the organism maps to itself even when the table lacks it (retired ids keep their identity)
    assert ids.tolist() == [TP53, GAPDH, ACTB, "ENSG99999999999", ""]
    assert info["kind"] == "ensembl"
    assert info["organism"] == HUMAN
    assert info["n_mapped"] == 4
    assert info["n_not_in_table"] == 1
    assert info["unmapped"] == ["ENSG_NOT_AN_ID"]


def test_map_human_symbols_case_insensitive_and_duplicates():
    ids, info = map_gene_names(["TP53", "GAPDH", "actb", "Tp53", "NOT_A_GENE", ""])
    assert ids.tolist() == [TP53, GAPDH, ACTB, TP53, "", ""]
    assert info["kind"] == "symbol"
    assert info["organism"] == HUMAN
    assert info["n_mapped"] == 4
    assert info["n_duplicates"] == 1  # Tp53 -> the id of TP53
    assert info["unmapped"] == ["NOT_A_GENE", ""]


def test_map_mouse_ensembl_ids():
    ids, info = map_gene_names([XKR4, "ENSMUSG00000025900.3", TP53])
    assert ids.tolist() == [XKR4, "ENSMUSG00000025900", ""]  # a human id is not a mouse gene
    assert info["organism"] == MOUSE
    assert info["kind"] == "ensembl"


def test_map_mouse_symbols_detected():
    ids, info = map_gene_names(["Xkr4", "Rp1", "Sox17"])
    assert info["organism"] == MOUSE
    assert ids[0] == XKR4


def test_map_given_organism_and_kind():
    ids, info = map_gene_names(["TP53"], organism="human", id_kind="symbol")
    assert ids.tolist() == [TP53]
    # mouse organism forced: the human symbol does not map to a mouse id
    ids, info = map_gene_names(["TP53", XKR4], organism="mouse", id_kind="symbol")
    assert ids.tolist() == ["", XKR4]
    with pytest.raises(ValueError, match="Unknown organism"):
        map_gene_names(["TP53"], organism="NCBITaxon:7955")
    with pytest.raises(ValueError, match="id_kind"):
        map_gene_names(["TP53"], id_kind="entrez")


@pytest.mark.parametrize("organism", [HUMAN, MOUSE])
def test_map_symbol_with_several_ids_prefers_protein_coding_then_lowest_id(organism):
    table = load_gene_table()
    rows = table[(table["organism"] == organism) & (table["symbol"] != "")]
    counts = rows["symbol"].value_counts()
    shared = rows[rows["symbol"].isin(counts.index[counts > 1])]
    coding = shared.groupby("symbol", observed=True)["biotype"].agg(lambda b: (b == "protein_coding").any())
    mixed = [sym for sym, group in shared.groupby("symbol") if group["biotype"].eq("protein_coding").sum() == 1]
    symbol = mixed[0]
    group = shared[shared["symbol"] == symbol]
    ids, _ = map_gene_names([symbol], organism=organism)
    assert ids[0] == group.index[group["biotype"] == "protein_coding"][0]
    plain = coding.index[~coding.to_numpy(dtype=bool)][0]  # no protein-coding id: the lowest id
    ids, _ = map_gene_names([plain], organism=organism)
    assert ids[0] == sorted(shared.index[shared["symbol"] == plain])[0]


# --- GeneVocab ------------------------------------------------------------------------------------------------


def test_vocab_from_gene_table():
    table = load_gene_table()
    vocab = GeneVocab.from_gene_table()
    assert len(vocab) == int((table["organism"] == HUMAN).sum())
    assert vocab.organisms == (HUMAN,)
    assert vocab.ids.dtype.kind == "U"
    np.testing.assert_array_equal(vocab.positions, table.loc[vocab.ids, "pos"].to_numpy())
    idx = vocab.index([TP53, XKR4, "nope"])
    assert idx[0] >= 0
    assert vocab.ids[idx[0]] == TP53
    assert idx[1:].tolist() == [-1, -1]
    assert vocab.index(TP53).tolist() == [idx[0]]
    assert TP53 in vocab
    assert XKR4 not in vocab


def test_vocab_two_organisms_blocks_and_biotypes():
    vocab = GeneVocab.from_gene_table(organisms=("mouse", "human"), biotypes=("protein_coding",))
    assert vocab.organisms == (MOUSE, HUMAN)
    is_mouse = np.char.startswith(vocab.ids, "ENSMUSG")
    n_mouse = int(is_mouse.sum())
    assert is_mouse[:n_mouse].all()
    assert not is_mouse[n_mouse:].any()
    biotypes = load_gene_table().loc[vocab.ids, "biotype"]
    assert (biotypes == "protein_coding").all()


def test_vocab_from_ids_positions_symbols():
    vocab = GeneVocab([XKR4, TP53, "ENSG_NOT_IN_TABLE"])
    table = load_gene_table()
    assert vocab.positions.tolist() == [table.loc[XKR4, "pos"], table.loc[TP53, "pos"], UNKNOWN_POSITION]
    assert vocab.symbols.tolist() == ["Xkr4", "TP53", ""]
    assert set(vocab.organisms) == {HUMAN, MOUSE}
    assert list(vocab) == [XKR4, TP53, "ENSG_NOT_IN_TABLE"]
    custom = GeneVocab([TP53, GAPDH], positions=[7, 9])
    assert custom.positions.tolist() == [7, 9]
    assert GeneVocab.from_dict(custom.to_dict()) == custom
    assert custom != GeneVocab([TP53, GAPDH])
    with pytest.raises(KeyError, match="positions"):
        GeneVocab.from_dict({"ids": [TP53, GAPDH]})  # a saved vocabulary never looks its positions up


def test_vocab_rejects_bad_input():
    with pytest.raises(ValueError, match="unique"):
        GeneVocab([TP53, TP53])
    with pytest.raises(ValueError, match="positions"):
        GeneVocab([TP53, GAPDH], positions=[1])


# --- real data ------------------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_human_symbols_map():
    path = DATA / "pbmc_10x_small_sets" / "sorted_pbmc_reference_2140cells_9types_raw.h5ad"
    if not path.exists():
        pytest.skip("shared data not available")
    names = ad.read_h5ad(path, backed="r").var_names
    ids, info = map_gene_names(names)
    assert info["kind"] == "symbol"
    assert info["organism"] == HUMAN
    assert info["n_mapped"] / len(names) > 0.85
    assert ids[names.get_loc("CD3E")] == "ENSG00000198851"


@pytest.mark.shared_data
def test_real_mouse_ensembl_ids_map():
    path = DATA / "scmerge_mesc_example" / "scmerge_example_sce_mesc.h5ad"
    if not path.exists():
        pytest.skip("shared data not available")
    names = ad.read_h5ad(path, backed="r").var_names
    ids, info = map_gene_names(names)
    assert info["kind"] == "ensembl"
    assert info["organism"] == MOUSE
    assert info["n_mapped"] / len(names) > 0.9
    assert pd.Index(ids[ids != ""]).str.startswith("ENSMUSG").all()
