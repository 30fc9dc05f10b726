"""Tests of sc_print.ontology: ontology look-ups, label hierarchies, hierarchical loss, curated mappings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import sc_print.ontology as so
from sc_print.ontology import (
    LabelHierarchy,
    _hierarchy,
    _loss,
    hierarchical_classification_loss,
    hierarchical_probabilities,
)

DATA = Path(__file__).parents[2] / "shared" / "data"

B_CELL, T_CELL, CD4_T = "CL:0000236", "CL:0000084", "CL:0000624"

# Hand-made ontology: R > A > {A1, A2}, R > B.  Present labels: A1, A2, A, B.
TOY_ANCESTORS = {"A1": ("A", "R"), "A2": ("A", "R"), "A": ("R",), "B": ("R",), "R": ()}


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> LabelHierarchy:
    monkeypatch.setattr(_hierarchy, "term_ancestors", lambda t: TOY_ANCESTORS.get(t, ()))
    return LabelHierarchy.from_labels("toy", ["A1", "A2", "A", "B", "A1", "unknown"], hierarchical=True)


# ---------------------------------------------------------------- label names and look-ups
def test_label_names_both_ways() -> None:
    assert so.label_key("cell_type_ontology_term_id") == "cell_type"
    assert so.label_key("self_reported_ethnicity_ontology_term_id") == "ethnicity"
    assert so.label_key("disease") == "disease"
    assert so.label_column("ethnicity") == "self_reported_ethnicity_ontology_term_id"
    assert so.label_column("organism_ontology_term_id") == "organism_ontology_term_id"
    for key, column in so.LABEL_COLUMNS.items():
        assert so.label_key(column) == key
        assert so.label_column(key) == column
    assert so.label_key("cell_line") == "cell_line"
    assert so.label_column("cell_line") == "cell_line"
    assert so.label_ontology("sex_ontology_term_id") == "PATO"
    assert so.label_ontology("cell_line") is None


def test_unknown_values() -> None:
    values = ["unknown", "", None, float("nan"), np.nan, pd.NA, "na", " Unknown ", "CL:0000236", "multiethnic"]
    np.testing.assert_array_equal(so.unknown_mask(values), [True] * 8 + [False, False])


def test_term_name_and_ancestors() -> None:
    assert so.term_name(B_CELL) == "B cell"
    assert so.term_name("PATO:0000461") == "normal"
    assert so.term_name("PATO:0000383") == "female"
    assert so.term_name("NCBITaxon:9606") == "Homo sapiens"
    assert so.term_name("NCBITaxon:10090") == "Mus musculus"
    assert so.term_name("HANCESTRO:0005") == "European ancestry"
    # not a term: the id comes back
    assert so.term_name("H1975") == "H1975"
    assert so.term_name("CL:9999999") == "CL:9999999"
    assert so.term_names([B_CELL, "unknown"]) == ["B cell", "unknown"]
    ancestors = so.term_ancestors(CD4_T)
    assert T_CELL in ancestors
    assert "CL:0000000" in ancestors  # "cell", the root
    assert CD4_T not in ancestors
    assert ancestors[0] == "CL:0000791"  # mature alpha-beta T cell, distance 1
    assert so.term_ancestors("H1975") == ()
    assert so.term_ancestors("NCBITaxon:9606") == ()  # organisms are flat (NCBITaxon is never parsed)
    assert so.term_ontology("AfPO:0000444") == "HANCESTRO"
    assert so.term_ontology("B cell") is None
    assert so.is_ontology_term(B_CELL)
    assert not so.is_ontology_term("CL:9999999")
    assert so.term_id_from_name("B cell", "CL") == B_CELL
    assert so.term_id_from_name("Homo sapiens", "NCBITaxon") == "NCBITaxon:9606"
    assert so.term_id_from_name("no such cell", "CL") is None
    with pytest.raises(ValueError, match="Unknown ontology"):
        so.term_id_from_name("B cell", "XYZ")


# ---------------------------------------------------------------- hierarchy construction
def test_toy_hierarchy(toy: LabelHierarchy) -> None:
    assert toy.label == "toy"
    assert toy.leaves == ["A1", "A2", "B"]
    assert toy.parents == ["A", "R"]
    np.testing.assert_array_equal(toy.parent_matrix, [[True, True, False], [True, True, True]])
    assert toy.parent_matrix.dtype == bool
    assert toy.descendants("A") == ["A1", "A2"]
    with pytest.raises(KeyError):
        toy.descendants("A1")
    np.testing.assert_array_equal(toy.encode(["A1", "A2", "B", "A", "R", "unknown", None]), [0, 1, 2, 3, 4, -1, -1])
    np.testing.assert_array_equal(toy.decode([0, 1, 2, 3, 4, -1]), ["A1", "A2", "B", "A", "R", "unknown"])
    assert toy.names == ["A1", "A2", "B"]  # no ontology names: ids


def test_real_cell_ontology_hierarchy() -> None:
    values = pd.Series([B_CELL, T_CELL, CD4_T, CD4_T, "unknown", None], dtype="category")
    h = LabelHierarchy.from_labels("cell_type_ontology_term_id", values)
    assert h.label == "cell_type"
    assert h.leaves == [B_CELL, CD4_T]  # T cell is an ancestor of CD4 T cell: a parent
    assert T_CELL in h.parents
    assert h.parents == sorted(h.parents)
    assert h.names == ["B cell", "CD4-positive, alpha-beta T cell"]
    t_row = h.parent_matrix[h.parents.index(T_CELL)]
    np.testing.assert_array_equal(t_row, [False, True])
    root_row = h.parent_matrix[h.parents.index("CL:0000000")]
    np.testing.assert_array_equal(root_row, [True, True])
    assert set(h.parents) == set(so.term_ancestors(B_CELL)) | set(so.term_ancestors(CD4_T))
    assert h.parent_matrix.any(1).all()  # every parent has a leaf descendant
    np.testing.assert_array_equal(h.encode(values), [0, 2 + h.parents.index(T_CELL), 1, 1, -1, -1])


def test_flat_labels_and_foreign_terms(caplog: pytest.LogCaptureFixture) -> None:
    sex = LabelHierarchy.from_labels("sex", ["PATO:0000384", "PATO:0000383", "unknown"])
    assert sex.leaves == ["PATO:0000383", "PATO:0000384"]
    assert sex.parents == []
    assert sex.names == ["female", "male"]
    assert sex.parent_matrix.shape == (0, 2)
    lines = LabelHierarchy.from_labels("cell_line", ["H2228", "H1975", "HCC827", "H1975"])
    assert lines.leaves == ["H1975", "H2228", "HCC827"]
    assert lines.n_parents == 0
    # "normal" (PATO) among MONDO diseases stays a leaf without parents
    disease = LabelHierarchy.from_labels("disease", ["PATO:0000461", "MONDO:0005148"])
    assert disease.leaves == ["MONDO:0005148", "PATO:0000461"]
    assert disease.n_parents > 0
    assert not disease.parent_matrix[:, 1].any()
    assert disease.parent_matrix[:, 0].all()
    ethnicity = LabelHierarchy.from_labels("ethnicity", ["multiethnic", "HANCESTRO:0005", "unknown"])
    assert ethnicity.leaves == ["HANCESTRO:0005", "multiethnic"]
    # readable names instead of ids: kept as leaves, with a warning
    with caplog.at_level(logging.WARNING, logger="sc_print"):
        named = LabelHierarchy.from_labels("cell_type", ["B cell", B_CELL])
    assert "not CL ontology ids" in caplog.text
    assert "B cell" in named.leaves
    with pytest.raises(ValueError, match="No known value"):
        LabelHierarchy.from_labels("cell_type", ["unknown", None])


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="distinct"):
        LabelHierarchy("x", ["a", "b"], ["a"], np.ones((1, 2), bool))
    with pytest.raises(ValueError, match="shape"):
        LabelHierarchy("x", ["a", "b"], ["p"], np.ones((2, 1), bool))
    with pytest.raises(ValueError, match="at least one leaf"):
        LabelHierarchy("x", [])


def test_encode_decode_errors(toy: LabelHierarchy) -> None:
    with pytest.raises(ValueError, match="not in this hierarchy"):
        toy.encode(["A1", "Z"])
    np.testing.assert_array_equal(toy.encode(["A1", "Z"], missing="unknown"), [0, -1])
    np.testing.assert_array_equal(toy.encode(np.array(["B", "A1"])), [2, 0])
    np.testing.assert_array_equal(toy.encode(pd.Categorical(["B", None, "A"])), [2, -1, 3])
    with pytest.raises(ValueError, match="Codes must lie"):
        toy.decode([5])


# ---------------------------------------------------------------- evaluation
def test_is_correct_with_parent_truths(toy: LabelHierarchy) -> None:
    pred = [0, 1, 2, 0, 2, 1, 0, 0]
    truth = ["A1", "A1", "B", "A", "A", "R", "unknown", None]
    np.testing.assert_array_equal(toy.is_correct(pred, truth), [True, False, True, True, False, True, False, False])
    with pytest.raises(ValueError, match="leaf indices"):
        toy.is_correct([3], ["A"])
    with pytest.raises(ValueError, match="shape"):
        toy.is_correct([0, 1], ["A"])


def test_is_correct_uses_ontology_for_unseen_truths() -> None:
    h = LabelHierarchy.from_labels("cell_type", [B_CELL, CD4_T, "CL:0000625"])  # CD8 ab T cell
    pred = np.array([1, 0, 2])  # CD4, B, CD8
    # "CD4-positive helper T cell" (CL:0000492) is not in the hierarchy and is finer than the predicted CD4 leaf;
    # "lymphocyte" (CL:0000542) is a parent of the hierarchy
    truth = ["CL:0000492", "CL:0000542", "CL:0000492"]
    np.testing.assert_array_equal(h.is_correct(pred, truth), [False, True, False])
    # an unseen coarse term that is an ontology ancestor of the predicted leaf
    h2 = LabelHierarchy.from_labels("cell_type", [B_CELL, CD4_T], hierarchical=False)
    np.testing.assert_array_equal(h2.is_correct([1, 0], [T_CELL, T_CELL]), [True, False])


# ---------------------------------------------------------------- serialisation
def test_dict_round_trip(toy: LabelHierarchy) -> None:
    h = LabelHierarchy.from_labels("cell_type", [B_CELL, T_CELL, CD4_T])
    for hierarchy in (toy, h):
        data = hierarchy.to_dict()
        text = json.dumps(data)
        back = LabelHierarchy.from_dict(json.loads(text))
        assert back == hierarchy
        np.testing.assert_array_equal(back.parent_matrix, hierarchy.parent_matrix)
    with pytest.raises(ValueError, match="missing"):
        LabelHierarchy.from_dict({"label": "x"})
    bad = toy.to_dict()
    bad["parent_leaves"][0] = [7]
    with pytest.raises(ValueError, match="outside"):
        LabelHierarchy.from_dict(bad)


def test_from_official() -> None:
    # layout of an official checkpoint: leaves first, then parents, then "unknown"; keys may be strings
    decoders = {"0": B_CELL, "1": CD4_T, "2": "CL:0000625", "3": T_CELL, "4": "CL:0000542", "5": "unknown"}
    hierarchy = {3: [1, 2], "4": [0, 1, 2]}
    h = LabelHierarchy.from_official(decoders, hierarchy, 3, label="cell_type_ontology_term_id")
    assert h.label == "cell_type"
    assert h.leaves == [B_CELL, CD4_T, "CL:0000625"]
    assert h.parents == [T_CELL, "CL:0000542"]
    np.testing.assert_array_equal(h.parent_matrix, [[False, True, True], [True, True, True]])
    np.testing.assert_array_equal(h.encode([T_CELL, "CL:0000625", "unknown"]), [3, 2, -1])
    decoders_back, hierarchy_back = h.to_official()
    assert decoders_back == {int(k): v for k, v in decoders.items()}
    assert hierarchy_back == {3: [1, 2], 4: [0, 1, 2]}
    assert LabelHierarchy.from_official(decoders_back, hierarchy_back, 3, label="cell_type") == h
    flat = LabelHierarchy.from_official({0: "PATO:0000383", 1: "PATO:0000384", 2: "unknown"}, {}, 2, label="sex")
    assert flat.leaves == ["PATO:0000383", "PATO:0000384"]
    assert flat.n_parents == 0
    with pytest.raises(ValueError, match="lacks leaf codes"):
        LabelHierarchy.from_official({0: B_CELL}, {}, 2)
    with pytest.raises(ValueError, match="parent codes"):
        LabelHierarchy.from_official(decoders, {1: [0]}, 3)
    with pytest.raises(ValueError, match="lacks parent codes"):
        LabelHierarchy.from_official({0: B_CELL, 1: CD4_T}, {2: [0, 1]}, 2)


# ---------------------------------------------------------------- loss
def _toy_matrix() -> torch.Tensor:
    # leaves A1, A2, B; parents A = {A1, A2}, R = {A1, A2, B}, E = {} (no descendant)
    return torch.tensor([[True, True, False], [True, True, True], [False, False, False]])


def test_loss_equals_bce_on_leaf_truths() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    codes = torch.tensor([0, 2, 1, 1, 0, 2])
    expected = F.binary_cross_entropy_with_logits(logits, F.one_hot(codes, 3).float())
    got = hierarchical_classification_loss(logits, codes, _toy_matrix())
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(hierarchical_classification_loss(logits, codes), expected)  # no hierarchy
    # unknown rows: weight 0, still counted in the mean (as the reference's weighted mean)
    codes_u = torch.tensor([0, -1, 1, -1, 0, 2])
    weight = (codes_u >= 0).float().unsqueeze(1).expand(6, 3)
    expected_u = F.binary_cross_entropy_with_logits(logits, F.one_hot(codes_u.clamp(min=0), 3).float(), weight=weight)
    torch.testing.assert_close(hierarchical_classification_loss(logits, codes_u, _toy_matrix()), expected_u)


def test_loss_parent_truth_trains_through_logsumexp() -> None:
    torch.manual_seed(1)
    logits = torch.randn(3, 3, requires_grad=True)
    codes = torch.tensor([2, 3, 4])  # leaf B, parent A, parent R
    loss = hierarchical_classification_loss(logits, codes, _toy_matrix())
    x = logits.detach()
    bce0 = F.softplus(x)  # BCE with target 0
    row0 = F.softplus(-x[0, 2]) + bce0[0, 0] + bce0[0, 1]
    row1 = bce0[1, 2] + F.softplus(-torch.logsumexp(x[1, :2], 0)) / 2**0.5
    row2 = F.softplus(-torch.logsumexp(x[2], 0)) / 3**0.5
    torch.testing.assert_close(loss, (row0 + row1 + row2) / 9)
    loss.backward()
    grad = logits.grad
    # row 1 (truth A): descendants A1, A2 get the logsumexp gradient, pushed up; B is pushed down as a negative
    softmax = torch.softmax(x[1, :2], 0)
    expected_desc = (torch.sigmoid(torch.logsumexp(x[1, :2], 0)) - 1) * softmax / 2**0.5 / 9
    torch.testing.assert_close(grad[1, :2], expected_desc)
    assert (grad[1, :2] < 0).all()
    torch.testing.assert_close(grad[1, 2], torch.sigmoid(x[1, 2]) / 9)
    # isolate the extra term: with B's logit at -1e4 its target-0 term has no gradient, only descendants move
    logits2 = x[1:2].clone().requires_grad_(True)
    matrix = torch.tensor([[True, True, False]])
    shift = torch.tensor([[0.0, 0.0, 1e4]])
    hierarchical_classification_loss(logits2 - shift, torch.tensor([3]), matrix).backward()
    assert logits2.grad[0, :2].abs().min() > 0
    torch.testing.assert_close(logits2.grad[0, 2], torch.tensor(0.0), atol=1e-6, rtol=0)


def test_loss_unknown_and_empty_parent_rows_have_zero_gradient() -> None:
    torch.manual_seed(2)
    logits = torch.randn(4, 3, requires_grad=True)
    codes = torch.tensor([-1, 0, 5, -1])  # 5 = parent E without descendants: treated as unknown
    loss = hierarchical_classification_loss(logits, codes, _toy_matrix())
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[[0, 2, 3]] == 0).all()
    assert (logits.grad[1] != 0).all()
    logits_all = torch.randn(2, 3, requires_grad=True)
    loss_all = hierarchical_classification_loss(logits_all, torch.tensor([-1, -1]), _toy_matrix())
    loss_all.backward()
    assert loss_all.item() == 0.0
    assert (logits_all.grad == 0).all()


def test_loss_validation_and_numpy_matrix(toy: LabelHierarchy) -> None:
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="parent_matrix"):
        hierarchical_classification_loss(logits, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="codes must lie"):
        hierarchical_classification_loss(logits, torch.tensor([0, -2]), toy.parent_matrix)
    with pytest.raises(ValueError, match="integer"):
        hierarchical_classification_loss(logits, torch.tensor([0.0, 1.0]), toy.parent_matrix)
    with pytest.raises(ValueError, match="shape"):
        hierarchical_classification_loss(logits, torch.tensor([0, 1]), np.ones((2, 4), bool))
    codes = torch.from_numpy(toy.encode(["A", "B"]))
    value = hierarchical_classification_loss(logits, codes, toy.parent_matrix)
    # all logits 0: row A = BCE(0, 0) on B + BCE(logsumexp(0, 0) = log 2, 1) / sqrt 2; row B = 3 * log 2
    expected = (np.log(2) + F.softplus(torch.tensor(-np.log(2))).item() / 2**0.5 + 3 * np.log(2)) / 6
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_hierarchical_probabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    logits = torch.randn(5, 3)
    matrix = _toy_matrix()
    leaf, noisy = hierarchical_probabilities(logits, matrix)
    p = torch.sigmoid(logits)
    torch.testing.assert_close(leaf, p)
    torch.testing.assert_close(noisy[:, 0], 1 - (1 - p[:, 0]) * (1 - p[:, 1]))
    torch.testing.assert_close(noisy[:, 1], 1 - (1 - p).prod(1))
    assert (noisy[:, 2] == 0).all()
    _, mx = hierarchical_probabilities(logits, matrix, method="max")
    torch.testing.assert_close(mx[:, 1], p.max(1).values)
    _, lse = hierarchical_probabilities(logits, matrix, method="logsumexp")
    torch.testing.assert_close(lse[:, 0], torch.sigmoid(torch.logsumexp(logits[:, :2], 1)))
    assert (mx[:, :2] <= lse[:, :2] + 1e-6).all()
    assert (lse[:, :2] <= noisy[:, :2] + 1e-6).all()
    assert (mx[:, 2] == 0).all()
    assert (lse[:, 2] == 0).all()
    # chunked reduction gives the same result
    monkeypatch.setattr(_loss, "_CHUNK_ELEMENTS", 5)
    torch.testing.assert_close(hierarchical_probabilities(logits, matrix, method="max")[1], mx)
    torch.testing.assert_close(hierarchical_probabilities(logits, matrix, method="logsumexp")[1], lse)
    leaf_only, none = hierarchical_probabilities(logits, None)
    assert none.shape == (5, 0)
    with pytest.raises(ValueError, match="method"):
        hierarchical_probabilities(logits, matrix, method="mean")  # type: ignore[arg-type]


# ---------------------------------------------------------------- curated mappings
PBMC_EXPECTED = {
    "nk": "natural killer cell",
    "bcells": "B cell",
    "memoryt": "memory T cell",
    "regulatoryt": "regulatory T cell",
    "thelper": "CD4-positive helper T cell",
    "cytotoxict": "CD8-positive, alpha-beta cytotoxic T cell",
    "monocytes": "CD14-positive monocyte",
    "naivet": "naive thymus-derived CD4-positive, alpha-beta T cell",
    "naivecytotoxic": "naive thymus-derived CD8-positive, alpha-beta T cell",
}

ASSAY_EXPECTED = {
    "10x_3p_v2_pbmc1k": "10x 3' v2",
    "10x_3p_v3_pbmc1k": "10x 3' v3",
    "10x_5p_pbmc8k_sub1k": "10x 5' v1",
    "CEL-seq2": "CEL-seq2",
    "Drop-seq": "Drop-seq",
    "Sort-seq": "SORT-seq",
    "10x": "10x 3' transcription profiling",
    "sc_Celseq2_5cl_p2": "CEL-seq2",
    "sc_dropseq": "Drop-seq",
    "RNAmix_sortseq": "SORT-seq",
}


def test_curated_pbmc_cell_types() -> None:
    assert set(so.PBMC_SORTED_CELL_TYPES) == set(PBMC_EXPECTED)
    for name, term in so.PBMC_SORTED_CELL_TYPES.items():
        assert so.term_name(term) == PBMC_EXPECTED[name], name
        assert so.term_id_from_name(PBMC_EXPECTED[name], "CL") == term
    ids = so.to_ontology("cell_type", list(PBMC_EXPECTED))
    assert [so.term_name(t) for t in ids] == list(PBMC_EXPECTED.values())
    # none of the nine is an ancestor of another: nine leaves
    h = LabelHierarchy.from_labels("cell_type", ids)
    assert sorted(h.leaves) == sorted(so.PBMC_SORTED_CELL_TYPES.values())


def test_curated_assays() -> None:
    ids = so.to_ontology("assay_ontology_term_id", list(ASSAY_EXPECTED))
    assert [so.term_name(t) for t in ids] == list(ASSAY_EXPECTED.values())
    for term in so.ASSAY_NAMES.values():
        assert so.term_ontology(term) == "EFO"
        assert so.is_ontology_term(term)


def test_to_ontology_resolution_order_and_errors() -> None:
    values = pd.Series(["nk", "B cell", "CL:0000084", None, "unknown", "NK"])
    np.testing.assert_array_equal(
        so.to_ontology("cell_type", values), ["CL:0000623", B_CELL, T_CELL, "unknown", "unknown", "CL:0000623"]
    )
    np.testing.assert_array_equal(so.to_ontology("sex", ["F", "male"]), ["PATO:0000383", "PATO:0000384"])
    np.testing.assert_array_equal(
        so.to_ontology("organism", ["human", "Mus musculus"]), ["NCBITaxon:9606", "NCBITaxon:10090"]
    )
    np.testing.assert_array_equal(
        so.to_ontology("disease", ["normal", "PATO:0000461", "type 2 diabetes mellitus"]),
        ["PATO:0000461", "PATO:0000461", "MONDO:0005148"],
    )
    np.testing.assert_array_equal(so.to_ontology("ethnicity", ["multiethnic"]), ["multiethnic"])
    with pytest.raises(ValueError, match=r"2 cell_type value\(s\).*\['foo', 'tcells'\]"):
        so.to_ontology("cell_type", ["foo", "tcells", "nk"])
    with pytest.raises(ValueError, match="cannot be mapped"):
        so.to_ontology("cell_type", ["MONDO:0005148"])  # an id of another ontology
    with pytest.raises(ValueError, match="no ontology"):
        so.to_ontology("cell_line", ["H1975"])


@pytest.mark.shared_data
def test_curated_mappings_cover_the_example_data() -> None:
    h5py = pytest.importorskip("h5py")
    from anndata.io import read_elem

    pbmc = DATA / "pbmc_10x_small_sets"
    bench = DATA / "cellbench_sc_mixology"
    if not pbmc.is_dir() or not bench.is_dir():
        pytest.skip("shared data not available")
    with h5py.File(pbmc / "sorted_pbmc_reference_2140cells_9types_raw.h5ad", "r") as f:
        sorted_obs = read_elem(f["obs"])
    with h5py.File(pbmc / "pbmc_3_10x_chemistries_2860cells_raw.h5ad", "r") as f:
        chem_obs = read_elem(f["obs"])
    cell_types = so.to_ontology("cell_type", sorted_obs["cell_type_sorted"])
    assert set(cell_types) == set(so.PBMC_SORTED_CELL_TYPES.values())
    assays = so.to_ontology("assay", chem_obs["batch"])
    assert set(assays) == {"EFO:0009899", "EFO:0009922", "EFO:0011025"}
    plates = pd.read_csv(bench / "sc_celseq2_5cl_p1.metadata.csv.gz", usecols=["batch"])["batch"]
    assert set(so.to_ontology("assay", plates)) == {"EFO:0010010"}
