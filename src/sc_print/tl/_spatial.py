"""Spatial analysis over squidpy and decoupler: niches, regulon activities and spatially variable regulons.

squidpy builds the spatial graph (``squidpy.gr.spatial_neighbors``), the niches
(``squidpy.gr.calculate_niche``, CellCharter flavour) and Moran's I (``squidpy.gr.spatial_autocorr``);
decoupler scores the regulons (``decoupler.mt.ulm`` by default). squidpy is an optional dependency
(``pip install "sc-print[spatial]"``), imported only when a spatial function runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from sc_print._keys import Key, SpatialKey, check_key
from sc_print._networks import gene_names
from sc_print._spatial import spot_coordinates, squidpy_module
from sc_print._utils import doc_params, log_written
from sc_print._validation import check_positive_int, resolve_adata
from sc_print.get import network as get_network

from ._common import output_target, params_record

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData

logger = logging.getLogger(__name__)

#: decoupler methods accepted by :func:`regulon_activity` (``dc.mt.<method>``; each writes ``score_<method>``)
ACTIVITY_METHODS: tuple[str, ...] = ("ulm", "mlm", "wsum", "zscore", "viper", "aucell")

_SPATIAL_OPTIONS = """\
coord_type
    squidpy's graph type: ``"generic"`` (``n_neighs`` nearest spots, or all within ``radius``) or ``"grid"``
    (Visium/ST arrays, ``n_neighs`` = 6 or 4); squidpy's ``spatial_neighbors_knn``, ``_radius`` or ``_grid``.
n_neighs
    Number of spatial neighbours of each spot.
radius
    Neighbours within this distance instead of the ``n_neighs`` nearest (``coord_type="generic"``), in the units
    of ``.obsm[spatial_key]``.
library_key
    ``.obs`` column naming the section of each spot: neighbours never cross sections."""


def _spatial_graph(
    adata: AnnData,
    X: Any,
    coords: np.ndarray,
    *,
    coord_type: str,
    n_neighs: int,
    radius: float | None,
    library_key: str | None,
) -> AnnData:
    """A scratch AnnData (``X``, coordinates, section labels) holding squidpy's spatial graph."""
    import anndata as ad

    sq = squidpy_module()
    if coord_type not in ("generic", "grid"):
        msg = f"`coord_type` must be 'generic' or 'grid', got {coord_type!r}."
        raise ValueError(msg)
    scratch = ad.AnnData(X=X, obsm={"spatial": coords})
    scratch.obs_names = adata.obs_names.astype(str)
    if library_key is not None:
        if library_key not in adata.obs:
            msg = f"`library_key={library_key!r}` is not a column of `.obs` (available: {list(adata.obs.columns)})."
            raise KeyError(msg)
        labels = adata.obs[library_key]
        if labels.isna().any():
            msg = f"`.obs[{library_key!r}]` has missing values; every spot needs its section."
            raise ValueError(msg)
        scratch.obs[library_key] = pd.Categorical(labels.astype(str).to_numpy())
    common = {"spatial_key": "spatial", "library_key": library_key}
    if coord_type == "grid":
        sq.gr.spatial_neighbors_grid(scratch, n_neighs=n_neighs, **common)
    elif radius is not None:
        sq.gr.spatial_neighbors_radius(scratch, radius=radius, **common)
    else:
        sq.gr.spatial_neighbors_knn(scratch, n_neighs=n_neighs, **common)
    return scratch


def _params_check(n_neighs: Any, radius: Any) -> tuple[int, float | None]:
    n_neighs = check_positive_int(n_neighs, "n_neighs")
    if radius is not None and not (np.isfinite(radius) and radius > 0):
        msg = f"`radius` must be a positive number or None, got {radius!r}."
        raise ValueError(msg)
    return n_neighs, radius


# --------------------------------------------------------------------------------------------------- niches
@doc_params(spatial_options=_SPATIAL_OPTIONS)
def niches(
    adata: AnnData | MuData,
    *,
    spatial_key: str = "spatial",
    use_rep: str = Key.obsm.emb(),
    n_niches: int = 8,
    n_hops: int = 3,
    coord_type: Literal["generic", "grid"] = "generic",
    n_neighs: int = 6,
    radius: float | None = None,
    library_key: str | None = None,
    min_spots: int = 10,
    seed: int = 0,
    key_added: str = SpatialKey.niche,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Spatial niches from the scPRINT embeddings of each spot's neighbourhood.

    squidpy's CellCharter flavour of ``squidpy.gr.calculate_niche``: the embedding ``.obsm[use_rep]`` of
    each spot is concatenated with its mean over the 1-hop, ..., ``n_hops``-hop spatial neighbours
    (``squidpy.gr.spatial_neighbors``), reduced by PCA and clustered by a Gaussian mixture with ``n_niches``
    components seeded by ``seed``. Niches are a function of the spots' embeddings, their spatial graph and the
    seed; they are renamed ``"0"``, ``"1"``, ... by decreasing size.

    Parameters
    ----------
    adata
        AnnData with spot coordinates in ``.obsm[spatial_key]`` and an embedding (e.g. from
        :func:`sc_print.tl.embed`), or a MuData (see ``mod``).
    spatial_key
        ``.obsm`` key of the coordinates.
    use_rep
        ``.obsm`` key of the embedding (``"X_scprint"`` from ``sp.tl.embed``; any other, e.g. ``"X_pca"``).
    n_niches
        Number of niches (mixture components).
    n_hops
        Neighbourhood depth aggregated around each spot.
    {spatial_options}
    min_spots
        Smallest niche accepted: fewer spots in any niche is an error (ask for fewer niches). Per-niche networks
        (``sp.tl.grn(groupby=key_added)``) need enough spots per niche.
    seed
        Seed of the Gaussian mixture.
    key_added
        ``.obs`` column of the niche labels; also the ``.uns`` key of the record.
    mod
        Modality used when ``adata`` is a MuData.
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    A copy when ``copy=True``, else None. Writes

    `.obs[key_added]` : categorical
        Niche of each spot.
    `.uns[key_added]` : dict
        ``params`` (the call's options) and ``sizes`` (spots per niche).

    Raises
    ------
    KeyError
        Coordinates, embedding or ``library_key`` missing.
    ValueError
        Non-finite coordinates or embedding, too few spots for ``n_niches`` x ``min_spots``, a niche smaller
        than ``min_spots``, or a Gaussian mixture that collapsed (squidpy fits full covariances on 50 principal
        components: on a few hundred spots some seeds fail; try another ``seed`` or fewer niches). ``adata`` is
        left unchanged.
    """
    data = resolve_adata(adata, mod)
    key_added = check_key(key_added)
    n_niches = check_positive_int(n_niches, "n_niches")
    n_hops = check_positive_int(n_hops, "n_hops")
    min_spots = check_positive_int(min_spots, "min_spots")
    n_neighs, radius = _params_check(n_neighs, radius)
    coords = spot_coordinates(data, spatial_key)
    if use_rep not in data.obsm:
        msg = (
            f"Embedding `.obsm[{use_rep!r}]` not found (available: {list(data.obsm)}); run `sp.tl.embed(adata)` "
            "first or pass another `use_rep=`."
        )
        raise KeyError(msg)
    emb = np.asarray(data.obsm[use_rep], dtype=np.float64)
    if emb.ndim != 2 or not np.isfinite(emb).all():
        msg = f"`.obsm[{use_rep!r}]` must be a finite 2-d embedding (n_obs x d)."
        raise ValueError(msg)
    if n_niches < 2:
        msg = f"`n_niches` must be at least 2, got {n_niches}."
        raise ValueError(msg)
    if data.n_obs < n_niches * min_spots:
        msg = (
            f"Too few spots for {n_niches} niches of at least min_spots={min_spots}: the data has {data.n_obs} "
            "spots; ask for fewer niches or lower `min_spots`."
        )
        raise ValueError(msg)
    sq = squidpy_module()
    scratch = _spatial_graph(
        data,
        sparse.csr_matrix(emb),
        coords,
        coord_type=coord_type,
        n_neighs=n_neighs,
        radius=radius,
        library_key=library_key,
    )
    try:
        sq.gr.calculate_niche(
            scratch,
            flavor="cellcharter",
            distance=n_hops,
            aggregation="mean",
            n_components=n_niches,
            random_state=int(seed),
        )
    except (ValueError, np.linalg.LinAlgError) as err:
        if "covariance" not in str(err) and not isinstance(err, np.linalg.LinAlgError):
            raise
        msg = (
            f"The Gaussian mixture of the niches failed for n_niches={n_niches}, seed={seed}: a component collapsed "
            "onto too few (or identical) spots. Try another `seed`, fewer niches (`n_niches`) or another `n_hops`; "
            "duplicated embeddings (e.g. empty spots) make this more likely."
        )
        raise ValueError(msg) from err
    raw = pd.Series(np.asarray(scratch.obs["cellcharter_niche"]).astype(str))
    sizes = raw.value_counts(sort=False)
    # canonical names: by decreasing size, ties by the smallest spot position (independent of the GMM labels)
    first = {label: int(np.flatnonzero(raw.to_numpy() == label)[0]) for label in sizes.index}
    order = sorted(sizes.index, key=lambda label: (-int(sizes[label]), first[label]))
    rename = {label: str(i) for i, label in enumerate(order)}
    labels = raw.map(rename).to_numpy()
    counts = {rename[label]: int(sizes[label]) for label in order}
    small = {name: n for name, n in counts.items() if n < min_spots}
    if len(counts) < n_niches or small:
        msg = (
            f"The mixture gave {len(counts)} non-empty niches of {n_niches} requested, sizes {counts}; niches "
            f"smaller than min_spots={min_spots}: {small or 'empty ones'}. Ask for fewer niches (n_niches) or "
            "lower `min_spots`."
        )
        raise ValueError(msg)
    target, out = output_target(adata, mod, copy=copy)
    out.obs[key_added] = pd.Categorical(labels, categories=[str(i) for i in range(len(order))])
    out.uns[key_added] = {
        "params": params_record(
            spatial_key=spatial_key,
            use_rep=use_rep,
            n_niches=n_niches,
            n_hops=n_hops,
            coord_type=coord_type,
            n_neighs=n_neighs,
            radius=radius,
            library_key=library_key,
            min_spots=min_spots,
            seed=int(seed),
            method="squidpy.gr.calculate_niche(flavor='cellcharter')",
        ),
        "sizes": counts,
    }
    log_written("obs", key_added)
    return target if copy else None


# --------------------------------------------------------------------------------------------------- activities
def _expression(data: AnnData, layer: str | None, *, normalize: bool) -> Any:
    """The expression matrix scored by decoupler: ``layer`` (or ``.X``), log-normalised when ``normalize``."""
    if layer is not None and layer not in data.layers:
        msg = f"Layer {layer!r} not found (available: {list(data.layers)})."
        raise KeyError(msg)
    X = data.layers[layer] if layer is not None else data.X
    X = X.to_memory() if hasattr(X, "to_memory") else X
    X = sparse.csr_matrix(X, dtype=np.float64) if sparse.issparse(X) else np.asarray(X, dtype=np.float64)
    values = X.data if sparse.issparse(X) else X
    if not np.isfinite(values).all():
        msg = f"The expression in {'.X' if layer is None else f'.layers[{layer!r}]'} has NaN or infinite values."
        raise ValueError(msg)
    if normalize and (values < 0).any():
        msg = "`normalize=True` expects counts (or denoised counts), but the matrix has negative values; pass normalize=False for already log-normalised data."
        raise ValueError(msg)
    return X


def regulon_activity(
    adata: AnnData | MuData,
    *,
    key: str = Key.uns.grn,
    group: str | None = None,
    tf_only: bool = True,
    top_k: int | None = 50,
    min_weight: float | None = None,
    layer: str | None = None,
    normalize: bool = True,
    method: str = "ulm",
    tmin: int = 5,
    gene_symbols: str | None = None,
    key_added: str = SpatialKey.regulon_activity,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Activity of each TF regulon of a scPRINT network in every spot or cell (decoupler, ULM by default).

    The regulons are the network's edge table (:func:`sc_print.get.network`: ``source`` = TF, ``target``,
    ``weight``), scored by ``decoupler.mt.<method>`` on log-normalised counts (``normalize=True``:
    total 10,000 per row then log1p) or on a denoised layer (``layer="scprint_denoised"``). Works on any AnnData,
    spatial or not.

    Parameters
    ----------
    adata
        AnnData holding a network from :func:`sc_print.tl.grn`, or a MuData (see ``mod``).
    key
        ``.uns`` record key of ``sp.tl.grn`` or ``.varp`` key of one network.
    group
        Group (e.g. a niche) when ``key`` is a record with several networks.
    tf_only
        Keep only regulons whose source is a transcription factor (shipped list).
    top_k
        Targets per regulon (the strongest edges); None keeps every edge.
    min_weight
        Drop edges below this weight.
    layer
        Layer to score instead of ``.X`` (raw or denoised counts with ``normalize=True``).
    normalize
        Log-normalise the matrix first; False scores it as it is (already log-normalised data).
    method
        decoupler method, one of ``"ulm"``, ``"mlm"``, ``"wsum"``, ``"zscore"``, ``"viper"``, ``"aucell"``.
    tmin
        Regulons with fewer targets among the genes are dropped (decoupler's ``tmin``).
    gene_symbols
        ``.var`` column of gene names used by the network (see :func:`sc_print.get.network`).
    key_added
        ``.obsm`` key of the activities and ``.uns`` key of the record.
    mod
        Modality used when ``adata`` is a MuData.
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    A copy when ``copy=True``, else None. Writes

    `.obsm[key_added]` : DataFrame
        Activity score of each regulon (columns = TF names) in each spot.
    `.uns[key_added]` : dict
        ``params`` and ``regulons`` (the TF names, in column order) with ``n_targets`` (targets in the data).

    Raises
    ------
    KeyError
        Unknown network ``key``/``group`` or ``layer``.
    ValueError
        A network without TF regulons (``tf_only``), no regulon with ``tmin`` targets among the genes, or bad
        expression values. ``adata`` is left unchanged.
    """
    import anndata as ad
    import decoupler as dc

    data = resolve_adata(adata, mod)
    key_added = check_key(key_added)
    if method not in ACTIVITY_METHODS:
        msg = f"Unknown method {method!r}; use one of {list(ACTIVITY_METHODS)} (decoupler's dc.mt.<method>)."
        raise ValueError(msg)
    tmin = check_positive_int(tmin, "tmin")
    net = get_network(
        data, key=key, group=group, top_k=top_k, min_weight=min_weight, tf_only=tf_only, gene_symbols=gene_symbols
    )
    if net.empty:
        what = "no edge from a transcription factor (tf_only=True)" if tf_only else "no edge"
        msg = f"The network {key!r}{'' if group is None else f' (group {group!r})'} has {what}; nothing to score. Pass tf_only=False, a lower min_weight, or another network."
        raise ValueError(msg)
    names = pd.Index(gene_names(data, gene_symbols)).astype(str)
    in_data = net["target"].isin(set(names))
    n_targets = net[in_data].groupby("source").size()
    kept = n_targets[n_targets >= tmin]
    if kept.empty:
        msg = f"No regulon has at least tmin={tmin} targets among the genes (largest: {int(n_targets.max()) if len(n_targets) else 0}); lower `tmin` or `top_k=None`."
        raise ValueError(msg)
    X = _expression(data, layer, normalize=normalize)
    scratch = ad.AnnData(X=X)
    scratch.obs_names = data.obs_names.astype(str)
    scratch.var_names = names
    if normalize:
        import scanpy as sc

        sc.pp.normalize_total(scratch, target_sum=1e4)
        sc.pp.log1p(scratch)
    if not scratch.var_names.is_unique:
        scratch = scratch[:, ~scratch.var_names.duplicated()].copy()
    getattr(dc.mt, method)(scratch, net, tmin=tmin, verbose=False)
    scores = scratch.obsm[f"score_{method}"]
    scores = pd.DataFrame(np.asarray(scores, dtype=np.float64), index=data.obs_names, columns=list(scores.columns))
    target, out = output_target(adata, mod, copy=copy)
    out.obsm[key_added] = scores
    out.uns[key_added] = {
        "params": params_record(
            key=key,
            group=group,
            tf_only=tf_only,
            top_k=top_k,
            min_weight=min_weight,
            layer=layer,
            normalize=normalize,
            method=method,
            tmin=tmin,
            gene_symbols=gene_symbols,
        ),
        "regulons": list(scores.columns),
        "n_targets": [int(n_targets[tf]) for tf in scores.columns],
    }
    log_written("obsm", key_added)
    return target if copy else None


# --------------------------------------------------------------------------------------------------- Moran's I
@doc_params(spatial_options=_SPATIAL_OPTIONS)
def spatial_regulons(
    adata: AnnData | MuData,
    *,
    key: str = SpatialKey.regulon_activity,
    spatial_key: str = "spatial",
    coord_type: Literal["generic", "grid"] = "generic",
    n_neighs: int = 6,
    radius: float | None = None,
    library_key: str | None = None,
    n_perms: int | None = None,
    seed: int = 0,
    key_added: str = SpatialKey.spatial_regulons,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Spatially variable regulons: Moran's I of the regulon activities over the spatial graph (squidpy).

    ``squidpy.gr.spatial_autocorr`` (``mode="moran"``) of each column of ``.obsm[key]`` (from
    :func:`sc_print.tl.regulon_activity`) over ``squidpy.gr.spatial_neighbors``, with the analytic p-value under
    normality (or permutations, ``n_perms``) and its Benjamini-Hochberg FDR.

    Parameters
    ----------
    adata
        AnnData with coordinates and regulon activities, or a MuData (see ``mod``).
    key
        ``.obsm`` key of the activities.
    spatial_key
        ``.obsm`` key of the coordinates.
    {spatial_options}
    n_perms
        Permutations for the p-value; None uses the analytic one.
    seed
        Seed of the permutations.
    key_added
        ``.uns`` key of the table.
    mod
        Modality used when ``adata`` is a MuData.
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    A copy when ``copy=True``, else None. Writes

    `.uns[key_added]` : DataFrame
        Columns ``regulon``, ``I``, ``p``, ``FDR``, sorted by decreasing ``I``.

    Raises
    ------
    KeyError
        Coordinates or activities missing.
    ValueError
        Non-finite coordinates or activities. ``adata`` is left unchanged.
    """
    data = resolve_adata(adata, mod)
    key_added = check_key(key_added)
    n_neighs, radius = _params_check(n_neighs, radius)
    if n_perms is not None:
        n_perms = check_positive_int(n_perms, "n_perms")
    coords = spot_coordinates(data, spatial_key)
    if key not in data.obsm:
        msg = f"Regulon activities `.obsm[{key!r}]` not found; run `sp.tl.regulon_activity(adata)` first."
        raise KeyError(msg)
    act = data.obsm[key]
    columns = list(act.columns) if isinstance(act, pd.DataFrame) else [str(i) for i in range(act.shape[1])]
    values = np.asarray(act, dtype=np.float64)
    if values.ndim != 2 or not np.isfinite(values).all():
        msg = f"`.obsm[{key!r}]` must be a finite n_obs x n_regulons matrix."
        raise ValueError(msg)
    sq = squidpy_module()
    scratch = _spatial_graph(
        data, values, coords, coord_type=coord_type, n_neighs=n_neighs, radius=radius, library_key=library_key
    )
    scratch.var_names = pd.Index(columns).astype(str)
    moran = sq.gr.spatial_autocorr(
        scratch,
        mode="moran",
        n_perms=n_perms,
        seed=int(seed),
        corr_method="fdr_bh",
        copy=True,
        n_jobs=1,
        show_progress_bar=False,
    )
    pcol = "pval_sim" if n_perms is not None else "pval_norm"
    table = pd.DataFrame(
        {
            "regulon": moran.index.astype(str),
            "I": moran["I"].to_numpy(dtype=np.float64),
            "p": moran[pcol].to_numpy(dtype=np.float64),
            "FDR": moran[f"{pcol}_fdr_bh"].to_numpy(dtype=np.float64),
        }
    )
    table = table.sort_values(["I", "regulon"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    table.index = table.index.astype(str)
    target, out = output_target(adata, mod, copy=copy)
    out.uns[key_added] = table
    log_written("uns", key_added)
    return target if copy else None
