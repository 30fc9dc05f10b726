from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
from _network_fixtures import TF_SYMBOLS, assert_unchanged, make_grn_adata, network_genes
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyArrowPatch

import sc_print as sp
from sc_print._keys import Key
from sc_print.pl._utils import TF_COLOR

if TYPE_CHECKING:
    import anndata as ad

mpl.use("Agg")

B, T = "scprint_grn_B cell", "scprint_grn_T cell"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def adata() -> ad.AnnData:
    return make_grn_adata()


@pytest.fixture
def adata_hubs(adata) -> ad.AnnData:
    sp.tl.hubs(adata, scores=("degree", "out_strength"))
    return adata


# ------------------------------------------------------------------------------------------ hubs
def test_pl_hubs_one_panel_per_group(adata_hubs, tmp_path):
    path = tmp_path / "hubs.png"
    axes = sp.pl.hubs(adata_hubs, n_top=8, show=False, save=path)
    assert isinstance(axes, list)
    assert len(axes) == 2
    assert all(isinstance(a, Axes) for a in axes)
    assert [a.get_title() for a in axes] == ["B cell", "T cell"]
    assert len(axes[0].patches) == 8
    assert path.stat().st_size > 0
    # bars are the top hubs, in decreasing order
    top = adata_hubs.uns[Key.uns.hubs(B)]["scores"]["degree"].sort_values(ascending=False).head(8)
    np.testing.assert_allclose([p.get_width() for p in axes[0].patches], top.to_numpy())
    assert [t.get_text() for t in axes[0].get_yticklabels()] == list(top.index)


def test_pl_hubs_highlights_tfs_and_uses_symbols(adata_hubs):
    ax = sp.pl.hubs(adata_hubs, key=B, score="out_strength", n_top=240, gene_symbols="symbol", show=False)
    assert isinstance(ax, Axes)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    colours = [p.get_facecolor() for p in ax.patches]
    tf_bars = [c for label, c in zip(labels, colours, strict=True) if label in TF_SYMBOLS]
    assert len(tf_bars) == len(TF_SYMBOLS)
    assert all(np.allclose(c, to_rgba(TF_COLOR)) for c in tf_bars)
    other = [c for label, c in zip(labels, colours, strict=True) if label not in TF_SYMBOLS]
    assert not any(np.allclose(c, to_rgba(TF_COLOR)) for c in other)


def test_pl_hubs_given_axes(adata_hubs):
    fig, axs = plt.subplots(1, 2)
    out = sp.pl.hubs(adata_hubs, ax=axs, show=False)
    assert out == list(axs)
    one = sp.pl.hubs(adata_hubs, groups="T cell", ax=axs[1], show=False)
    assert one is axs[1]
    with pytest.raises(ValueError, match="one matplotlib Axes per panel"):
        sp.pl.hubs(adata_hubs, ax=axs[0], show=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, r"Run `sp\.tl\.hubs\(adata, key='scprint_grn'\)` first"),
        ({"key": "nope"}, r"sp\.tl\.grn"),
        ({"groups": "NK cell"}, "NK cell"),
    ],
)
def test_pl_hubs_errors(adata, kwargs, match):
    before = adata.copy()
    with pytest.raises(KeyError, match=match):
        sp.pl.hubs(adata, show=False, **kwargs)
    assert_unchanged(adata, before)


def test_pl_hubs_score_not_computed(adata_hubs):
    before = adata_hubs.copy()
    with pytest.raises(KeyError, match=r"scores=\[\.\.\., 'eigenvector'\]"):
        sp.pl.hubs(adata_hubs, score="eigenvector", show=False)
    assert_unchanged(adata_hubs, before)


# ------------------------------------------------------------------------------------------ network
def test_pl_network(adata, tmp_path):
    gene = network_genes(adata, B)[0]
    path = tmp_path / "network.pdf"
    ax = sp.pl.network(adata, key="scprint_grn", group="B cell", gene=gene, n_neighbors=6, show=False, save=path)
    assert isinstance(ax, Axes)
    assert path.stat().st_size > 0
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    # edges are rasterised: below the rasterisation z-order, nodes above it, and the PDF embeds an image
    assert arrows
    assert all(a.get_zorder() < ax.get_rasterization_zorder() for a in arrows)
    assert all(c.get_zorder() > ax.get_rasterization_zorder() for c in ax.collections)
    assert b"/Subtype /Image" in path.read_bytes()
    labels = {t.get_text() for t in ax.texts}
    assert gene in labels
    assert len(labels) == 7  # the gene and its 6 neighbours
    # edge widths follow |weight|: the widest edge is the strongest
    assert max(a.get_linewidth() for a in arrows) == pytest.approx(4.0)


def test_pl_network_tf_nodes_are_marked(adata):
    tf = "SPI1"
    ax = sp.pl.network(adata, key=T, gene=tf, gene_symbols="symbol", n_neighbors=30, show=False)
    colours = [tuple(np.round(c.get_facecolor()[0], 3)) for c in ax.collections if len(c.get_offsets())]
    assert tuple(np.round(to_rgba(TF_COLOR), 3)) in colours
    assert len(colours) == 2  # TF nodes and other genes are separate collections (square vs circle)


def test_pl_network_errors(adata):
    before = adata.copy()
    with pytest.raises(KeyError, match="not in `adata.var_names`"):
        sp.pl.network(adata, key=B, gene="NOT_A_GENE", show=False)
    outside = adata.var_names[~adata.var_names.isin(network_genes(adata, B))][0]
    with pytest.raises(KeyError, match="has no edge in network"):
        sp.pl.network(adata, key=B, gene=outside, show=False)
    with pytest.raises(ValueError, match="choose one with `group=`"):
        sp.pl.network(adata, gene=network_genes(adata, B)[0], show=False)
    with pytest.raises(KeyError, match="NK cell"):
        sp.pl.network(adata, group="NK cell", gene=network_genes(adata, B)[0], show=False)
    with pytest.raises(KeyError, match=r"sp\.tl\.grn"):
        sp.pl.network(adata, key="nope", gene=network_genes(adata, B)[0], show=False)
    assert_unchanged(adata, before)


# ------------------------------------------------------------------------------------------ diff_hubs
def test_pl_diff_hubs(adata_hubs, tmp_path):
    sp.tl.diff_hubs(adata_hubs, key_a=B, key_b=T, score="out_strength")
    path = tmp_path / "diff.svg"
    ax = sp.pl.diff_hubs(adata_hubs, key_a=B, key_b=T, n_top=5, show=False, save=path)
    assert isinstance(ax, Axes)
    assert path.stat().st_size > 0
    table = adata_hubs.uns[f"{B}_vs_{T}_diff_hubs"]["table"]
    assert sorted(t.get_text() for t in ax.texts) == sorted(table.index[:5])
    n_points = sum(len(c.get_offsets()) for c in ax.collections)
    assert n_points == len(table)
    assert "out_strength" in ax.get_xlabel()


def test_pl_diff_hubs_errors(adata_hubs):
    before = adata_hubs.copy()
    with pytest.raises(KeyError, match=r"Run `sp\.tl\.diff_hubs\(adata, key_a="):
        sp.pl.diff_hubs(adata_hubs, key_a=B, key_b=T, show=False)
    sp.tl.diff_hubs(adata_hubs, key_a=B, key_b=T, score="degree")
    before = adata_hubs.copy()
    with pytest.raises(KeyError, match="uses score 'degree'"):
        sp.pl.diff_hubs(adata_hubs, key_a=B, key_b=T, score="out_strength", show=False)
    assert_unchanged(adata_hubs, before)


def test_pl_refuses_results_of_a_changed_network(adata_hubs):
    sp.tl.diff_hubs(adata_hubs, key_a=B, key_b=T, score="degree")
    adata_hubs.varp[T] = adata_hubs.varp[T].multiply(0.5).tocsr()  # the network changed after the analysis
    before = adata_hubs.copy()
    with pytest.raises(ValueError, match=r"hub comparison .* different version of network 'scprint_grn_T cell'"):
        sp.pl.diff_hubs(adata_hubs, key_a=B, key_b=T, show=False)
    with pytest.raises(ValueError, match=r"hub scores .* different version"):
        sp.pl.hubs(adata_hubs, key=T, show=False)
    assert_unchanged(adata_hubs, before)


# ------------------------------------------------------------------------------------------ no data loss on save
def test_pl_save_never_overwrites_without_overwrite(adata_hubs, tmp_path):
    path = tmp_path / "hubs.png"
    path.write_bytes(b"the user's own figure")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        sp.pl.hubs(adata_hubs, n_top=4, show=False, save=path)
    assert path.read_bytes() == b"the user's own figure"
    sp.pl.hubs(adata_hubs, n_top=4, show=False, save=path, overwrite=True)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hubs.png"]  # no temporary file left
    sp.pl.hubs(adata_hubs, n_top=4, show=False, save=tmp_path / "no_extension")
    assert (tmp_path / "no_extension.png").read_bytes().startswith(b"\x89PNG")  # matplotlib's default format
    with pytest.raises(FileExistsError, match="no_extension.png already exists"):
        sp.pl.hubs(adata_hubs, n_top=4, show=False, save=tmp_path / "no_extension")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(FileExistsError, match="is a directory"):
        sp.pl.hubs(adata_hubs, n_top=4, show=False, save=tmp_path / "folder.png", overwrite=True)
