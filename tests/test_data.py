"""Tests of the tokenisation, the downsampling noise and the label-weighted sampling of ``sc_print.data``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from sc_print.data import (
    GeneMapper,
    cell_hashes,
    cell_seeds,
    check_seed,
    downsample_profile,
    gene_keys,
    label_weights,
    random_cell_seeds,
    select_genes,
    tokenize,
    tokenize_rows,
)

# ---------------------------------------------------------------------------------------------------- helpers


def _counts(n_cells: int = 8, n_vars: int = 40, density: float = 0.3, seed: int = 0) -> np.ndarray:
    gen = np.random.default_rng(seed)
    x = gen.poisson(3.0, size=(n_cells, n_vars)).astype(np.float32) + 1.0
    x *= gen.random((n_cells, n_vars)) < density
    x[:, 0] = np.maximum(x[:, 0], 1.0)
    return x


def _col_vocab(n_vars: int = 40) -> np.ndarray:
    """Vocabulary index of each column: unmapped columns (-1), and columns 5 and 6 both mapping to gene 100."""
    col_vocab = 1000 - 7 * np.arange(n_vars)  # distinct, not sorted
    col_vocab[[3, 17]] = -1
    col_vocab[6] = col_vocab[5]
    return col_vocab


def _as_dict(tokens) -> dict[str, np.ndarray]:
    return {k: getattr(tokens, k).numpy() for k in ("gene_idx", "expr", "depth")}


# ---------------------------------------------------------------------------------------------------- tokenisation


@pytest.mark.parametrize("mode", ["random_expr", "top_expr", "fixed", "all"])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_and_dense_tokenise_alike(mode: str, fmt: str) -> None:
    x = _counts()
    mapper = GeneMapper(_col_vocab())
    genes = np.array([1000, 958, 916, 1000 - 7 * 20, 5])  # the last one is not in the data
    kwargs = {"mode": mode, "max_len": 12, "genes": genes if mode == "fixed" else None}
    dense = tokenize_rows(x, mapper, seed=3, **kwargs)
    sparse_ = tokenize_rows(sparse.csr_matrix(x).asformat(fmt), mapper, seed=3, **kwargs)
    for key, value in _as_dict(dense).items():
        np.testing.assert_array_equal(_as_dict(sparse_)[key], value, err_msg=key)
    assert dense.gene_idx.dtype == torch.long
    assert dense.expr.dtype == torch.float32
    expected_len = {"random_expr": 12, "top_expr": 12, "fixed": len(genes), "all": mapper.n_genes}[mode]
    assert dense.gene_idx.shape == (x.shape[0], expected_len)
    assert dense.expr.shape == (x.shape[0], expected_len)


def test_mapper_sums_duplicated_columns() -> None:
    x = _counts()
    col_vocab = _col_vocab()
    mapper = GeneMapper(col_vocab)
    assert mapper.n_duplicates == 1
    assert mapper.n_genes == x.shape[1] - 2 - 1  # two unmapped columns, one duplicate
    np.testing.assert_array_equal(mapper.vocab_idx, np.unique(col_vocab[col_vocab >= 0]))
    for rows in (x, sparse.csr_matrix(x)):
        collapsed = mapper.collapse(rows)
        assert collapsed.shape == (x.shape[0], mapper.n_genes)
        assert collapsed.dtype == np.float32
        pos = mapper.positions(np.array([col_vocab[5]]))[0]
        np.testing.assert_array_equal(collapsed[:, pos], x[:, 5] + x[:, 6])
        # every other mapped column is copied as is; unmapped columns are dropped
        for col in (0, 1, 10, 39):
            np.testing.assert_array_equal(collapsed[:, mapper.positions(np.array([col_vocab[col]]))[0]], x[:, col])
        np.testing.assert_allclose(collapsed.sum(1), x.sum(1) - x[:, 3] - x[:, 17])
    tokens = tokenize_rows(x, mapper, mode="all")
    gene_100 = tokens.gene_idx[0] == int(col_vocab[5])
    np.testing.assert_array_equal(tokens.expr[:, gene_100].numpy()[:, 0], x[:, 5] + x[:, 6])


def test_mapper_without_any_mapped_column() -> None:
    with pytest.raises(ValueError, match="No column of the data maps"):
        GeneMapper(np.full(5, -1))
    np.testing.assert_array_equal(GeneMapper(np.array([4, -1, 2])).positions(np.array([2, 3, 4])), [0, -1, 1])


def test_random_expr_puts_every_expressed_gene_first() -> None:
    x = _counts(n_cells=10, n_vars=60, density=0.2, seed=1)
    mapper = GeneMapper(np.arange(60) + 7)
    n_expr = (x > 0).sum(1)
    max_len = 30
    assert (n_expr < max_len).all()
    tokens = tokenize_rows(sparse.csr_matrix(x), mapper, mode="random_expr", max_len=max_len)
    assert tokens.gene_idx.shape == (10, max_len)
    for i in range(10):
        k = int(n_expr[i])
        expressed = tokens.expr[i] > 0
        assert int(expressed.sum()) == k  # every expressed gene, then zero filler
        assert set(tokens.gene_idx[i, expressed].tolist()) == set((np.flatnonzero(x[i]) + 7).tolist())
        assert len(set(tokens.gene_idx[i].tolist())) == max_len  # no gene twice
        # the count of each token is the count of its gene
        np.testing.assert_array_equal(tokens.expr[i].numpy(), x[i, tokens.gene_idx[i].numpy() - 7])


def test_random_expr_samples_among_expressed_genes_when_there_are_many() -> None:
    x = _counts(n_cells=6, n_vars=80, density=0.9, seed=2)
    n_expr = (x > 0).sum(1)
    assert (n_expr > 20).all()
    mapper = GeneMapper(np.arange(80))
    a = tokenize_rows(x, mapper, max_len=20, seed=0)
    b = tokenize_rows(x, mapper, max_len=20, seed=0)
    c = tokenize_rows(x, mapper, max_len=20, seed=1)
    assert (a.expr > 0).all()
    np.testing.assert_array_equal(a.gene_idx.numpy(), b.gene_idx.numpy())
    assert not torch.equal(a.gene_idx, c.gene_idx)
    # the context is capped at the number of mapped genes
    assert tokenize_rows(x, mapper, max_len=500).gene_idx.shape == (6, 80)


def test_fixed_mode_with_genes_absent_from_the_data() -> None:
    x = _counts()
    col_vocab = _col_vocab()
    mapper = GeneMapper(col_vocab)
    genes = np.array([7, int(col_vocab[0]), 123456, int(col_vocab[5]), int(col_vocab[3 + 1])])
    tokens = tokenize_rows(sparse.csr_matrix(x), mapper, mode="fixed", genes=genes)
    np.testing.assert_array_equal(tokens.gene_idx.numpy(), np.tile(genes, (x.shape[0], 1)))
    expr = tokens.expr.numpy()
    np.testing.assert_array_equal(expr[:, 0], 0.0)  # not measured
    np.testing.assert_array_equal(expr[:, 2], 0.0)
    np.testing.assert_array_equal(expr[:, 1], x[:, 0])
    np.testing.assert_array_equal(expr[:, 3], x[:, 5] + x[:, 6])
    np.testing.assert_array_equal(expr[:, 4], x[:, 4])
    # the absent genes add nothing to the depth
    np.testing.assert_allclose(tokens.depth.numpy(), mapper.collapse(x).sum(1))
    with pytest.raises(ValueError, match="needs `genes`"):
        tokenize_rows(x, mapper, mode="fixed")


def test_depth_is_the_total_over_all_mapped_genes() -> None:
    x = _counts(n_vars=40, density=0.8)
    mapper = GeneMapper(_col_vocab())
    tokens = tokenize_rows(x, mapper, max_len=5)
    total = x.sum(1) - x[:, 3] - x[:, 17]  # unmapped columns do not count
    np.testing.assert_allclose(tokens.depth.numpy(), total)
    assert (tokens.expr.sum(1).numpy() < total).all()  # the context is a subset
    assert tokens.depth.dtype == torch.float32
    np.testing.assert_allclose(mapper.depth(x), total)  # the one definition, also on sparse rows
    np.testing.assert_allclose(mapper.depth(sparse.csr_matrix(x)), total)


def test_select_genes_modes() -> None:
    x = torch.tensor([[0.0, 2.0, 0.0, 5.0], [1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(select_genes(x, mode="all").numpy(), [[0, 1, 2, 3], [0, 1, 2, 3]])
    np.testing.assert_array_equal(select_genes(x, mode="fixed", genes=torch.tensor([3, 1])).numpy(), [[3, 1], [3, 1]])
    keys = gene_keys(np.array([1, 2], dtype=np.uint64), np.arange(4))
    cols = select_genes(x, mode="random_expr", max_len=3, keys=keys)
    assert {1, 3} <= set(cols[0].tolist())
    assert 0 in cols[1].tolist()
    with pytest.raises(ValueError, match="needs `keys`"):
        select_genes(x, mode="random_expr", max_len=3)
    with pytest.raises(ValueError, match="Unknown context mode"):
        select_genes(x, mode="top")
    tokens = tokenize(x.numpy(), np.array([10, 11, 12, 13]), mode="all")
    np.testing.assert_array_equal(tokens.gene_idx.numpy(), [[10, 11, 12, 13]] * 2)
    np.testing.assert_array_equal(tokens.depth.numpy(), [7.0, 1.0])
    moved = tokens.to("cpu")
    assert torch.equal(moved.expr, tokens.expr)


def test_top_expr_takes_the_most_expressed_genes_ties_by_key() -> None:
    x = torch.tensor([[0.0, 7.0, 3.0, 3.0, 3.0, 9.0, 1.0], [2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    keys = gene_keys(np.array([1, 2], dtype=np.uint64), np.arange(7))
    cols = select_genes(x, mode="top_expr", max_len=4, keys=keys).numpy()
    # cell 0: 9 and 7 always, then two of the three genes with count 3: those with the largest keys
    tied = np.array([2, 3, 4])
    expected = sorted([1, 5, *tied[np.argsort(-keys[0, tied], kind="stable")[:2]]])
    np.testing.assert_array_equal(cols[0], expected)
    # cell 1 has one expressed gene: it comes first, the rest are unexpressed genes ordered by key
    assert 0 in cols[1]
    zeros = np.arange(1, 7)
    np.testing.assert_array_equal(cols[1], sorted([0, *zeros[np.argsort(-keys[1, zeros], kind="stable")[:3]]]))
    with pytest.raises(ValueError, match="needs `keys`"):
        select_genes(x, mode="top_expr", max_len=3)


def test_top_expr_context_is_a_function_of_the_cell() -> None:
    x = _counts(n_cells=10, n_vars=60, density=0.8, seed=9)
    mapper = GeneMapper(np.arange(60) + 3)
    together = tokenize_rows(x, mapper, mode="top_expr", max_len=10, seed=1)
    for i in (0, 4, 9):
        alone = tokenize_rows(x[i : i + 1], mapper, mode="top_expr", max_len=10, seed=1)
        np.testing.assert_array_equal(alone.gene_idx.numpy()[0], together.gene_idx.numpy()[i])
    # the context holds the largest counts of each cell
    kept_min = together.expr.numpy().min(1)
    collapsed = mapper.collapse(x)
    for i in range(10):
        assert (collapsed[i] > kept_min[i]).sum() < 10


# ---------------------------------------------------------------------------------------------------- determinism


def test_cell_hash_depends_on_content_only() -> None:
    x = _counts(n_cells=6, n_vars=50, density=0.5, seed=4)
    vocab = np.arange(50) * 3 + 11
    h = cell_hashes(x, vocab)
    assert h.dtype == np.uint64
    assert len(set(h.tolist())) == 6
    perm = np.random.default_rng(0).permutation(50)  # columns in another order
    np.testing.assert_array_equal(cell_hashes(x[:, perm], vocab[perm]), h)
    np.testing.assert_array_equal(cell_hashes(sparse.csr_matrix(x[::-1]), vocab), h[::-1])  # rows reordered
    y = x.copy()
    y[0, np.flatnonzero(y[0])[0]] += 1  # one count more: another cell
    assert cell_hashes(y, vocab)[0] != h[0]
    np.testing.assert_array_equal(cell_hashes(y, vocab)[1:], h[1:])


def test_random_context_of_a_cell_does_not_depend_on_the_other_cells() -> None:
    x = _counts(n_cells=12, n_vars=80, density=0.9, seed=5)
    mapper = GeneMapper(np.arange(80) + 3)
    together = tokenize_rows(x, mapper, max_len=15, seed=7)
    reversed_ = tokenize_rows(x[::-1], mapper, max_len=15, seed=7)
    np.testing.assert_array_equal(reversed_.gene_idx.numpy()[::-1], together.gene_idx.numpy())
    for i in (0, 5, 11):
        alone = tokenize_rows(x[i : i + 1], mapper, max_len=15, seed=7)
        np.testing.assert_array_equal(alone.gene_idx.numpy()[0], together.gene_idx.numpy()[i])
        np.testing.assert_array_equal(alone.expr.numpy()[0], together.expr.numpy()[i])
    # the draws are per (seed, stream, cell): another seed or stream gives another context
    assert not np.array_equal(tokenize_rows(x, mapper, max_len=15, seed=8).gene_idx, together.gene_idx)
    assert not np.array_equal(tokenize_rows(x, mapper, max_len=15, seed=7, stream=1).gene_idx, together.gene_idx)
    # two identical cells get the same context
    twins = tokenize_rows(np.vstack([x[2], x[2]]), mapper, max_len=15, seed=7)
    np.testing.assert_array_equal(twins.gene_idx[0], twins.gene_idx[1])


def test_gene_keys_are_uniform_and_seeds_checked() -> None:
    keys = gene_keys(cell_seeds(np.arange(200, dtype=np.uint64), 0), np.arange(500))
    assert keys.shape == (200, 500)
    assert keys.min() >= 0
    assert keys.max() < 1
    assert abs(keys.mean() - 0.5) < 0.01
    assert abs(keys.std() - (1 / 12) ** 0.5) < 0.01
    seeds = random_cell_seeds(4, torch.Generator().manual_seed(0))
    assert seeds.dtype == np.uint64
    assert len(set(seeds.tolist())) == 4
    for bad in (-1, 2**63, 1.5, "3", True):
        with pytest.raises(ValueError, match="must be an integer"):
            check_seed(bad)


# ---------------------------------------------------------------------------------------------------- noise


def test_downsample_removes_the_expected_fraction_of_large_counts() -> None:
    x = torch.full((200, 500), 1000.0)
    y = downsample_profile(x, 0.6, generator=torch.Generator().manual_seed(0))
    removed = 1.0 - y.sum().item() / x.sum().item()
    # (1 - 0.33) kept by the Poisson subtraction, then (1 - 0.33) of the entries survive: 1 - 0.67^2 = 0.5511
    assert removed == pytest.approx(1 - 0.67**2, abs=0.005)
    zeroed = (y == 0).float().mean().item()
    assert zeroed == pytest.approx(0.33, abs=0.01)


def test_downsample_small_counts_lose_less() -> None:
    """A count of 1 survives when R = 0 (probability exp(-0.33)) and the entry is kept (0.67)."""
    x = torch.ones(200, 500)
    y = downsample_profile(x, 0.6, generator=torch.Generator().manual_seed(0))
    removed = 1.0 - y.sum().item() / x.sum().item()
    # clipping at zero cannot remove more than the count: below the 55 % of large counts
    assert removed == pytest.approx(1 - np.exp(-0.33) * 0.67, abs=0.005)
    assert removed < 1 - 0.67**2


def test_downsample_never_increases_and_keeps_integers() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.poisson(torch.full((100, 300), 4.0), generator=gen)
    for p in (0.1, 0.6, 0.9):
        y = downsample_profile(x, p, generator=gen)
        assert y.shape == x.shape
        assert y.dtype == x.dtype
        assert (y <= x).all()
        assert (y >= 0).all()
        assert torch.equal(y, y.round())
    as_int = downsample_profile(x.long(), 0.6, generator=gen)
    assert as_int.dtype == torch.long
    assert (as_int <= x.long()).all()
    # more noise removes more
    sums = [downsample_profile(x, p, generator=torch.Generator().manual_seed(0)).sum() for p in (0.1, 0.5, 0.9)]
    assert sums[0] > sums[1] > sums[2]


def test_downsample_identity_seed_and_bad_levels() -> None:
    x = torch.poisson(torch.full((20, 30), 4.0))
    y = downsample_profile(x, 0.0)
    assert torch.equal(y, x)
    assert y is not x
    a = downsample_profile(x, 0.6, generator=torch.Generator().manual_seed(5))
    b = downsample_profile(x, 0.6, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
            downsample_profile(x, bad)


# ---------------------------------------------------------------------------------------------------- sampling


def test_label_weights_follow_the_saturating_rule() -> None:
    sizes = {"a": 400, "b": 50, "c": 5, "d": 1}
    cell_type = np.concatenate([[k] * n for k, n in sizes.items()])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(cell_type))
    labels = pd.DataFrame({"cell_type": cell_type[perm]})
    s = 50.0
    w = label_weights(labels, scaler=s)
    assert w.dtype == np.float64
    assert w.shape == (len(cell_type),)
    assert w.sum() == pytest.approx(1.0)
    n = labels["cell_type"].map(sizes).to_numpy(dtype=float)
    expected = s / (n + s)
    np.testing.assert_allclose(w, expected / expected.sum())
    # group sampling probability proportional to s*n/(n+s): large groups saturate at s, small stay near n
    prob = pd.Series(w).groupby(labels["cell_type"].to_numpy()).sum()
    target = pd.Series({k: s * v / (v + s) for k, v in sizes.items()})
    np.testing.assert_allclose(prob[target.index].to_numpy(), (target / target.sum()).to_numpy())
    assert prob["a"] / prob["d"] == pytest.approx((s * 400 / 450) / (s * 1 / 51))
    # uniform within a group
    for key in sizes:
        assert np.ptp(w[labels["cell_type"].to_numpy() == key]) == 0


def test_label_weights_group_by_label_combinations() -> None:
    cell_type = ["T"] * 60 + ["B"] * 40
    sex = ["F"] * 30 + ["M"] * 30 + ["F"] * 39 + ["M"] * 1
    frame = pd.DataFrame({"cell_type": cell_type, "sex": sex})
    w = label_weights(frame, scaler=10)
    n = np.array([30] * 60 + [39] * 39 + [1], dtype=float)
    np.testing.assert_allclose(w, (10 / (n + 10)) / (10 / (n + 10)).sum())
    # a sequence of label columns is the same as the DataFrame
    np.testing.assert_allclose(label_weights([cell_type, sex], scaler=10), w)
    # combinations are not confused by the separator ("a|b", "c") vs ("a", "b|c")
    tricky = pd.DataFrame({"x": ["a|b", "a"], "y": ["c", "b|c"]})
    np.testing.assert_allclose(label_weights(tricky), [0.5, 0.5])


def test_label_weights_edge_cases() -> None:
    np.testing.assert_allclose(label_weights(pd.DataFrame(index=range(4))), np.full(4, 0.25))
    assert label_weights(pd.DataFrame({"a": []})).shape == (0,)
    with pytest.raises(ValueError, match="scaler must be positive"):
        label_weights(pd.DataFrame({"a": [1, 2]}), scaler=0)
