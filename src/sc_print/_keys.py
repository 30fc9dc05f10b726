r"""Every AnnData key that sc_print reads or writes, in one place.

Writers (``sp.pp``/``sp.tl``) and readers (``sp.pl``/``sp.get``) import these helpers, so the two
cannot drift apart (the squidpy ``Key`` / scanpy ``_keys`` pattern). Keys of a call that writes several
slots come from one per-call builder (:func:`hub_keys`, :func:`community_keys`, :func:`diff_hubs_keys`,
like scanpy's ``_embedding_keys``) returning a frozen set of keys.

Names that cannot be stored
---------------------------
``write_h5ad`` turns a ``/`` in a key into nested groups (the object no longer reads back as written) and
``write_zarr`` refuses it; both fail on empty names, NUL characters and the names ``.``/``..``, and zarr
also splits on ``\\``. :func:`check_key` refuses such a key (``key_added`` and friends) with a clear error
before anything is computed. Group labels (the categories of ``groupby``) are data, not choices of the
user, so they are **mapped** instead (:func:`safe_group_name`, :func:`group_name_map`): each of ``/``,
``\\`` and NUL becomes ``_`` (``.`` and ``..`` become ``_.``/``_..``), the writer records
``{safe name: original label}`` under ``.uns[key_added]["group_names"]`` and a label that is missing
(NaN/None), empty, or whose safe name collides with another label is refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable, Mapping

PREFIX = "scprint"

#: characters that ``write_h5ad``/``write_zarr`` cannot keep in a name (``/`` nests, ``\\`` nests in zarr)
UNSAFE_CHARACTERS: tuple[str, ...] = ("/", "\\", "\x00")
#: names that h5py/zarr refuse outright
_UNSAFE_NAMES: frozenset[str] = frozenset({".", ".."})


class Key:
    """Namespace of AnnData slot names used by sc_print."""

    class var:
        """Keys in ``.var``."""

        gene_id = f"{PREFIX}_gene_id"  #: vocabulary Ensembl id of each gene (``""`` when unmapped)
        in_vocab = f"{PREFIX}_in_vocab"  #: bool, gene maps onto the model vocabulary
        vocab_index = f"{PREFIX}_vocab_index"  #: int, row in the model vocabulary (-1 when unmapped)
        is_tf = f"{PREFIX}_is_tf"  #: bool, gene is a transcription factor

        @staticmethod
        def hub_score(network_key: str, score: str) -> str:
            """Column holding a hub ``score`` of the network stored under ``network_key``."""
            return f"{network_key}_{score}"

        @staticmethod
        def community(network_key: str) -> str:
            """Column holding the community label of each gene of the network ``network_key``."""
            return f"{network_key}_community"

    class obs:
        """Keys in ``.obs``."""

        depth = f"{PREFIX}_depth"  #: total raw counts over the mapped genes

        @staticmethod
        def pred(label: str, key_added: str = PREFIX) -> str:
            """Predicted label (readable name) column."""
            return f"{key_added}_pred_{label}"

        @staticmethod
        def pred_id(label: str, key_added: str = PREFIX) -> str:
            """Predicted label (ontology id) column."""
            return f"{key_added}_pred_{label}_id"

        @staticmethod
        def conf(label: str, key_added: str = PREFIX) -> str:
            """Confidence of the predicted label."""
            return f"{key_added}_conf_{label}"

    class obsm:
        """Keys in ``.obsm``."""

        @staticmethod
        def emb(key_added: str = PREFIX, label: str | None = None) -> str:
            """Cell embedding (default token mix), or the embedding of one label token."""
            return f"X_{key_added}" if label is None else f"X_{key_added}_{label}"

        @staticmethod
        def proba(label: str, key_added: str = PREFIX) -> str:
            """Full class probabilities for one label."""
            return f"{key_added}_proba_{label}"

    class layers:
        """Keys in ``.layers``."""

        denoised = f"{PREFIX}_denoised"

    class varp:
        """Keys in ``.varp``."""

        @staticmethod
        def grn(key_added: str = f"{PREFIX}_grn", group: str | None = None) -> str:
            """Gene network for all cells (``group=None``) or one group."""
            return key_added if group is None else f"{key_added}_{group}"

    class varm:
        """Keys in ``.varm``."""

        hubs = f"{PREFIX}_hubs"
        gene_emb = f"{PREFIX}_gene_emb"

    class uns:
        """Keys in ``.uns``."""

        prepare = f"{PREFIX}_prepare"
        embed = f"{PREFIX}_embed"
        denoise = f"{PREFIX}_denoise"
        grn = f"{PREFIX}_grn"  # default; the grn record lives at .uns[key_added]
        heads = f"{PREFIX}_heads"

        @staticmethod
        def hubs(network_key: str) -> str:
            """Hub record of one network (``scores`` table and ``params``)."""
            return f"{network_key}_hubs"

        @staticmethod
        def communities(network_key: str) -> str:
            """Community record of one network (``sizes``, ``modularity``, ``params``)."""
            return f"{network_key}_communities"

        @staticmethod
        def diff_hubs(network_key_a: str, network_key_b: str) -> str:
            """Hub comparison record of two networks (``table`` and ``params``)."""
            return f"{network_key_a}_vs_{network_key_b}_diff_hubs"


# --------------------------------------------------------------------------------------------------- per call
@dataclass(frozen=True)
class HubKeys:
    """Slots written by one ``sp.tl.hubs`` call for one network."""

    uns: str  #: ``.uns`` record: ``{"scores": DataFrame, "params": dict}``
    var: Mapping[str, str]  #: score name -> ``.var`` column


@dataclass(frozen=True)
class CommunityKeys:
    """Slots written by one ``sp.tl.communities`` call for one network."""

    uns: str  #: ``.uns`` record: ``{"sizes", "modularity", "params"}``
    var: str  #: ``.var`` column of community labels


def hub_keys(network_key: str, scores: Iterable[str]) -> HubKeys:
    """Keys of the hub scores of the network stored under ``.varp[network_key]``.

    Parameters
    ----------
    network_key
        ``.varp`` key of the network.
    scores
        Names of the scores written to ``.var``.

    Returns
    -------
    The frozen keys; a :class:`ValueError` when one of them could not be written to h5ad/zarr.
    """
    var = {score: check_key(Key.var.hub_score(network_key, score), name="hub score column") for score in scores}
    return HubKeys(uns=check_key(Key.uns.hubs(network_key), name="hub record key"), var=MappingProxyType(var))


def community_keys(network_key: str) -> CommunityKeys:
    """Keys of the communities of the network stored under ``.varp[network_key]``.

    Parameters
    ----------
    network_key
        ``.varp`` key of the network.

    Returns
    -------
    The frozen keys; a :class:`ValueError` when one of them could not be written to h5ad/zarr.
    """
    return CommunityKeys(
        uns=check_key(Key.uns.communities(network_key), name="community record key"),
        var=check_key(Key.var.community(network_key), name="community column"),
    )


def diff_hubs_keys(network_key_a: str, network_key_b: str) -> str:
    """``.uns`` key of the hub comparison of two networks (``.varp`` keys).

    Parameters
    ----------
    network_key_a, network_key_b
        ``.varp`` keys of the two networks.

    Returns
    -------
    The key; a :class:`ValueError` when it could not be written to h5ad/zarr.
    """
    return check_key(Key.uns.diff_hubs(network_key_a, network_key_b), name="hub comparison key")


# --------------------------------------------------------------------------------------------------- validation
def _unsafe_reason(value: str) -> str | None:
    """Why ``value`` cannot be an h5ad/zarr name, or None when it can."""
    if not value:
        return "it is empty"
    if value in _UNSAFE_NAMES:
        return f"{value!r} is a reserved path name"
    bad = [c for c in UNSAFE_CHARACTERS if c in value]
    if bad:
        return f"it contains {' and '.join(repr(c) for c in bad)}, which h5ad/zarr cannot keep in a name"
    return None


def check_key(value: Any, name: str = "key_added") -> str:
    r"""Return ``value`` when it can name an AnnData slot that survives ``write_h5ad`` and ``write_zarr``.

    Parameters
    ----------
    value
        The key to check.
    name
        Name of the option in the error message.

    Returns
    -------
    ``value`` unchanged. A :class:`ValueError` when it is not a :class:`str`, is empty, is ``.``/``..`` or
    contains ``/``, ``\\`` or NUL.
    """
    if not isinstance(value, str):
        msg = f"`{name}` must be a non-empty string, got {type(value).__name__} {value!r}."
        raise ValueError(msg)
    reason = _unsafe_reason(value)
    if reason is not None:
        msg = (
            f"`{name}`={value!r} cannot be used: {reason}, so the AnnData could not be written with "
            "`write_h5ad`/`write_zarr` and read back. Pass a non-empty name without '/', '\\' or NUL."
        )
        raise ValueError(msg)
    return value


def safe_group_name(label: Hashable) -> str:
    r"""Name under which the group ``label`` is stored (``.varp`` key suffix, record keys).

    Parameters
    ----------
    label
        One group label (a category of ``groupby``); non-strings are converted with :class:`str`.

    Returns
    -------
    ``str(label)`` with each of ``/``, ``\\`` and NUL replaced by ``_`` (``.``/``..`` prefixed by ``_``).
    A :class:`ValueError` for a missing (NaN/None) or empty label.
    """
    if label is None or (not isinstance(label, str) and bool(pd.isna(label))):
        msg = f"Group label {label!r} is missing (NaN/None); drop or fill those cells before grouping."
        raise ValueError(msg)
    text = str(label)
    if not text.strip():
        msg = f"Group label {text!r} is empty; rename that category (e.g. to 'unknown') before grouping."
        raise ValueError(msg)
    for char in UNSAFE_CHARACTERS:
        text = text.replace(char, "_")
    return f"_{text}" if text in _UNSAFE_NAMES else text


def group_name_map(labels: Iterable[Hashable], *, groupby: str = "groupby") -> dict[str, str]:
    """Safe stored name of each group label (see :func:`safe_group_name`), checked for collisions.

    Writers store ``{safe: original}`` (the inverse of this mapping) under ``.uns[key_added]["group_names"]``.

    Parameters
    ----------
    labels
        The group labels, e.g. the categories of ``adata.obs[groupby]``.
    groupby
        Name of the grouping used in error messages.

    Returns
    -------
    ``{str(label): safe name}`` in the order of ``labels``. A :class:`ValueError` when two labels map to
    the same name (or are equal as strings), or for a missing/empty label.
    """
    out: dict[str, str] = {}
    owner: dict[str, Hashable] = {}
    for label in labels:
        safe = safe_group_name(label)
        text = str(label)
        if safe in owner or text in out:
            msg = (
                f"Groups {owner.get(safe, text)!r} and {label!r} of `{groupby}` would both be stored as "
                f"{safe!r} (names are strings, and h5ad/zarr cannot keep '/', '\\' or NUL in them). "
                "Rename one of the categories."
            )
            raise ValueError(msg)
        owner[safe] = label
        out[text] = safe
    return out


# --------------------------------------------------------------------------------------------------- model outputs
@dataclass(frozen=True)
class EmbedKeys:
    """Slots written by one ``sp.tl.embed`` call."""

    embedding: str  #: ``.obsm`` cell embedding
    tokens: Mapping[str, str]  #: label -> ``.obsm`` key of its output token
    pred: Mapping[str, str]  #: label -> ``.obs`` predicted readable name
    pred_id: Mapping[str, str]  #: label -> ``.obs`` predicted ontology id
    conf: Mapping[str, str]  #: label -> ``.obs`` confidence
    proba: Mapping[str, str]  #: label -> ``.obsm`` probabilities
    gene_emb: str  #: ``.varm`` contextual gene embedding
    uns: str  #: ``.uns`` record


def embed_keys(key_added: str, token_labels: Iterable[str], pred_labels: Iterable[str]) -> EmbedKeys:
    """Keys of one ``sp.tl.embed`` call (``key_added`` checked with :func:`check_key`).

    Parameters
    ----------
    key_added
        Prefix of the keys (``"scprint"`` by default).
    token_labels
        Labels whose output tokens are written.
    pred_labels
        Labels whose predictions are written.

    Returns
    -------
    The frozen keys.
    """
    key_added = check_key(key_added)
    pred_labels = list(pred_labels)
    return EmbedKeys(
        embedding=Key.obsm.emb(key_added),
        tokens=MappingProxyType({label: Key.obsm.emb(key_added, label) for label in token_labels}),
        pred=MappingProxyType({label: Key.obs.pred(label, key_added) for label in pred_labels}),
        pred_id=MappingProxyType({label: Key.obs.pred_id(label, key_added) for label in pred_labels}),
        conf=MappingProxyType({label: Key.obs.conf(label, key_added) for label in pred_labels}),
        proba=MappingProxyType({label: Key.obsm.proba(label, key_added) for label in pred_labels}),
        gene_emb=f"{key_added}_gene_emb",
        uns=f"{key_added}_embed",
    )


@dataclass(frozen=True)
class DenoiseKeys:
    """Slots written by one ``sp.tl.denoise`` call."""

    layer: str  #: ``.layers`` expected counts
    uns: str  #: ``.uns`` record


def denoise_keys(key_added: str) -> DenoiseKeys:
    """Keys of one ``sp.tl.denoise`` call: ``.layers[key_added]`` and its record.

    Parameters
    ----------
    key_added
        Layer written (``"scprint_denoised"`` by default, recorded in ``.uns['scprint_denoise']``; another name
        ``k`` is recorded in ``.uns[f'{k}_denoise']``).

    Returns
    -------
    The frozen keys.
    """
    key_added = check_key(key_added)
    uns = Key.uns.denoise if key_added == Key.layers.denoised else f"{key_added}_denoise"
    return DenoiseKeys(layer=key_added, uns=uns)


@dataclass(frozen=True)
class GrnKeys:
    """Slots written by one ``sp.tl.grn`` call."""

    varp: Mapping[str, str]  #: stored group name -> ``.varp`` key
    uns: str  #: ``.uns`` record


def grn_keys(key_added: str, groups: Iterable[str] | None) -> GrnKeys:
    """Keys of one ``sp.tl.grn`` call.

    Parameters
    ----------
    key_added
        ``.varp`` key of the network (``groups=None``) or prefix of one key per group; also the ``.uns`` key.
    groups
        Stored (safe, :func:`safe_group_name`) group names, or ``None`` for one network over all cells.

    Returns
    -------
    The frozen keys.
    """
    key_added = check_key(key_added)
    if groups is None:
        return GrnKeys(varp=MappingProxyType({"all": key_added}), uns=key_added)
    varp = {g: check_key(Key.varp.grn(key_added, g), name="network key") for g in groups}
    return GrnKeys(varp=MappingProxyType(varp), uns=key_added)


# --------------------------------------------------------------------------------------------------- spatial
class SpatialKey:
    """Default slots of the spatial functions (``sp.tl.niches``, ``regulon_activity``, ``spatial_regulons``)."""

    niche = f"{PREFIX}_niche"  #: ``.obs`` niche label and ``.uns`` record of ``sp.tl.niches``
    regulon_activity = f"{PREFIX}_regulon_activity"  #: ``.obsm`` activities and ``.uns`` record
    spatial_regulons = f"{PREFIX}_spatial_regulons"  #: ``.uns`` Moran's I table of ``sp.tl.spatial_regulons``


# --------------------------------------------------------------------------------------------------- perturbation
@dataclass(frozen=True)
class PerturbKeys:
    """Slots written by one ``sp.tl.perturb`` call, per perturbation name."""

    embedding: Mapping[str, str]  #: name -> ``.obsm`` perturbed cell embedding
    shift: Mapping[str, str]  #: name -> ``.obs`` cosine distance to the unperturbed embedding
    pred: Mapping[str, Mapping[str, str]]  #: name -> label -> ``.obs`` predicted label after the perturbation
    uns: str  #: ``.uns`` record, ``{name: {...}}``


def perturb_keys(key_added: str, names: Iterable[str], pred_labels: Iterable[str]) -> PerturbKeys:
    """Keys of one ``sp.tl.perturb`` call.

    Parameters
    ----------
    key_added
        Prefix of the keys and ``.uns`` key (``"scprint_perturb"`` by default).
    names
        Names of the perturbations.
    pred_labels
        Labels whose predictions after the perturbation are written.

    Returns
    -------
    The frozen keys; a :class:`ValueError` when one of them could not be written to h5ad/zarr or two of them
    coincide.
    """
    key_added = check_key(key_added)
    names, pred_labels = list(names), list(pred_labels)
    emb = {n: check_key(f"{key_added}_{n}", name="perturbation name") for n in names}
    shift = {n: f"{key_added}_{n}_shift" for n in names}
    pred = {n: MappingProxyType({lab: f"{key_added}_{n}_pred_{lab}" for lab in pred_labels}) for n in names}
    obs = list(shift.values()) + [k for p in pred.values() for k in p.values()]
    clash = sorted({k for k in obs if obs.count(k) > 1})
    if clash:
        msg = f"Perturbation names {names} give the same `.obs` keys {clash}; rename the perturbations."
        raise ValueError(msg)
    return PerturbKeys(
        embedding=MappingProxyType(emb), shift=MappingProxyType(shift), pred=MappingProxyType(pred), uns=key_added
    )
