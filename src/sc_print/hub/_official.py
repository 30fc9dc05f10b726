"""Reader of the official scPRINT checkpoints (Lightning ``.ckpt`` files of the reference package).

The file is opened with ``torch.load(weights_only=True)``: only tensors and plain Python containers are
accepted, nothing is unpickled. The code generation that wrote it is detected from the state-dict keys
and the hyper-parameters (reference-scprint.md, section 10), the architecture is read from the tensor
shapes (trusted over the hyper-parameters), the keys are renamed to :class:`~sc_print.nn.ScPrintNet`'s
and the training-only parts are dropped.

Supported: the paper-era files (code 1.0-1.6: key ``gene_encoder.embedding.weight``, ``classes`` as a
dict, cell tokens ``[cell, depth, labels]``) and the files of the 2.x code of scPRINT-1 (depth token at
the input or ``log2(1+depth)`` at the expression decoder, grouped-query attention, ``"sum"`` or
``"log"`` input normalisation, ``classes`` as a list plus ``label_counts``). Not supported, with an
error naming the feature: the metacell token, cell-specific blocks (a second transformer for the cell
tokens), FSQ class compression, non-continuous expression encoders and scPRINT-2 files.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sc_print._io import file_sha256, read_torch_file, require_keys
from sc_print.nn import ScPrintConfig, ScPrintNet

if TYPE_CHECKING:
    import os

    from sc_print.model import ScPrint
    from sc_print.ontology import LabelHierarchy

logger = logging.getLogger(__name__)

HUMAN = "NCBITaxon:9606"

#: state-dict prefixes of training-only modules, dropped at load
TRAINING_ONLY_PREFIXES: tuple[str, ...] = ("mvc_decoder.", "grad_reverse_discriminator_loss.")

#: state-dict prefixes of architecture features sc_print does not implement -> what they are
UNSUPPORTED_PREFIXES: dict[str, str] = {
    "metacell_encoder.": "a metacell token (hparam use_metacell_token=True)",
    "cell_transformer.": (
        "cell-specific blocks: a second transformer in which the cell tokens cross-attend to the gene "
        "outputs (hparam cell_specific_blocks=True)"
    ),
    "bottleneck_mlps.": "FSQ compression of the class tokens (hparam compress_class_dim)",
    "gene_encoder.0.": "a fine-tuned gene-embedding adapter (scPRINT-2 finetune_gene_emb)",
    "adv_assay_decoder.": "scPRINT-2 adversarial decoders",
    "splicing_head.": "a scPRINT-2 splicing head",
}

_BLOCK_RE = re.compile(r"^transformer\.blocks\.(\d+)\.")


class UnsupportedCheckpointError(ValueError):
    """The checkpoint uses an architecture feature that sc_print does not implement."""


@dataclass
class OfficialCheckpoint:
    """An official scPRINT checkpoint, converted.

    Attributes
    ----------
    net
        The network with the checkpoint's weights, in eval mode, on the CPU.
    config
        Its architecture.
    genes
        Gene vocabulary (Ensembl ids, token order), exactly ``hparams["genes"]``.
    gene_pos
        Genomic position index of each gene (``hparams["gene_pos_enc"]``; informative, the ``pe`` buffer
        is taken from the weights).
    organisms
        Organisms of the vocabulary (NCBITaxon ids).
    hierarchies
        ``{label: LabelHierarchy}`` in class order (short label keys such as ``"cell_type"``); their
        ``names`` give readable ontology names.
    label_columns
        ``{label: official class name}``, e.g. ``{"cell_type": "cell_type_ontology_term_id"}``.
    label_decoders, labels_hierarchy
        The raw hyper-parameters of the same name, keyed by official class name (code -> ontology id,
        parent code -> leaf codes).
    generation
        ``"1.x"`` (paper-era code) or ``"2.x"`` (scPRINT-1 code from version 2.0 on).
    layout
        What was detected: depth handling, heads, normalisation, dropped modules.
    path
        The file read.
    sha256
        SHA-256 of the file (``None`` when not computed).
    hparams
        The checkpoint's hyper-parameters, as stored.
    """

    net: ScPrintNet
    config: ScPrintConfig
    genes: list[str]
    gene_pos: list[int]
    organisms: list[str]
    hierarchies: dict[str, LabelHierarchy]
    label_columns: dict[str, str]
    label_decoders: dict[str, dict[int, str]]
    labels_hierarchy: dict[str, dict[int, list[int]]]
    generation: str
    layout: dict[str, Any]
    path: Path
    sha256: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def token_names(self) -> list[str]:
        """Cell-token names in input order (``net.token_names``)."""
        return list(self.net.token_names)

    def to_model(self, *, name: str | None = None) -> ScPrint:
        """Wrap the weights into an :class:`~sc_print.model.ScPrint` (no AnnData needed).

        Parameters
        ----------
        name
            Model name recorded in ``model.metadata_`` (default: the file name without extension).

        Returns
        -------
        The model in eval mode on the CPU; ``model.metadata_`` holds ``name``, ``sha256``, ``source``,
        ``generation`` and ``layout``.
        """
        from sc_print.model import ScPrint

        metadata = {
            "name": name or self.path.stem,
            "sha256": self.sha256 or "",
            "source": str(self.path),
            "format": "official scPRINT checkpoint",
            "generation": self.generation,
            "layout": self.layout,
        }
        return ScPrint.from_net(
            config=self.config,
            state_dict=self.net.state_dict(),
            genes=self.genes,
            gene_pos=self.gene_pos,
            hierarchies=self.hierarchies,
            label_columns=self.label_columns,
            metadata=metadata,
            organisms=self.organisms,
        )


# ---------------------------------------------------------------------------------------------- reading
#: what an official checkpoint is called in messages
OFFICIAL = "an official scPRINT checkpoint (Lightning .ckpt)"


def is_saved_model(state: Any) -> bool:
    """Whether a loaded file is in the ``ScPrint.save`` layout (not an official checkpoint)."""
    return isinstance(state, dict) and "format_version" in state and "hyper_parameters" not in state


def _load_container(path: Path, content: Any = None) -> dict[str, Any]:
    """The checkpoint dict, read with ``torch.load(weights_only=True)`` (memory-mapped when possible).

    ``content`` is the file's content when the caller has read it already.
    """
    ckpt = read_torch_file(path, what=OFFICIAL, mmap=True) if content is None else content
    if is_saved_model(ckpt):
        msg = f"{path} is a model saved by ScPrint.save, not {OFFICIAL}; load it with sc_print.load_model(path)."
        raise ValueError(msg)
    require_keys(ckpt, ("state_dict", "hyper_parameters"), path=path, what=OFFICIAL)
    for key in ("state_dict", "hyper_parameters"):
        if not isinstance(ckpt[key], dict):
            msg = f"{path} is not {OFFICIAL}: its {key!r} is a {type(ckpt[key]).__name__}, not a dict."
            raise ValueError(msg)
    bad = [k for k, v in ckpt["state_dict"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        msg = f"{path} is not {OFFICIAL}: its 'state_dict' holds entries that are not named tensors ({bad[:3]})."
        raise ValueError(msg)
    return ckpt


def _check_supported(sd: dict[str, torch.Tensor], hp: dict[str, Any]) -> None:
    """Raise :class:`UnsupportedCheckpointError` naming every unsupported feature found."""
    found: list[str] = []
    for prefix, what in UNSUPPORTED_PREFIXES.items():
        if any(k.startswith(prefix) for k in sd):
            found.append(what)
    if any(".mixer.Wq." in k or ".mixer.Wkv." in k for k in sd):
        found.append("cross-attention blocks (cell-specific blocks)")
    if hp.get("use_metacell_token"):
        found.append(UNSUPPORTED_PREFIXES["metacell_encoder."])
    if hp.get("cell_specific_blocks"):
        found.append(UNSUPPORTED_PREFIXES["cell_transformer."])
    if hp.get("compress_class_dim"):
        found.append(UNSUPPORTED_PREFIXES["bottleneck_mlps."])
    style = hp.get("expr_emb_style", "continuous")
    if style not in (None, "continuous"):
        found.append(f"the {style!r} expression encoder (only 'continuous' is implemented)")
    if hp.get("prenorm") is False:
        found.append("post-norm transformer blocks (prenorm=False)")
    if isinstance(hp.get("genes"), dict):
        found.append("per-organism gene vocabularies (a scPRINT-2 checkpoint)")
    if hp.get("normalization", "sum") not in ("sum", "log"):
        found.append(f"input normalisation {hp.get('normalization')!r} (only 'sum' and 'log' are implemented)")
    found = list(dict.fromkeys(found))
    if found:
        msg = (
            "This scPRINT checkpoint uses " + "; ".join(found) + ", which sc_print does not implement. "
            "Supported layouts: the paper checkpoints (small/medium/large) and scPRINT-1 files of the 2.x code "
            "with the depth token or depth at the decoder, grouped-query attention and 'sum'/'log' "
            "normalisation. Use the reference scprint package for this file."
        )
        raise UnsupportedCheckpointError(msg)


def _linear_widths(sd: dict[str, torch.Tensor], prefix: str) -> list[tuple[int, torch.Size]]:
    """``(index, weight shape)`` of the 2-D weights directly under ``prefix`` (a Sequential), sorted."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    out = []
    for key, value in sd.items():
        m = pattern.match(key)
        if m and value.ndim == 2:
            out.append((int(m.group(1)), value.shape))
    return sorted(out)


def _class_order(sd: dict[str, torch.Tensor], hp: dict[str, Any]) -> tuple[list[str], dict[str, int]]:
    """Class names in order and their leaf counts from the ``out_layer`` shapes."""
    classes = hp.get("classes")
    counts_hp = hp.get("label_counts") if isinstance(hp.get("label_counts"), dict) else {}
    if isinstance(classes, dict):
        names = list(classes)
        counts_hp = {**classes, **counts_hp}
    elif isinstance(classes, list | tuple):
        names = [str(c) for c in classes]
    elif counts_hp:
        names = list(counts_hp)
    else:  # fall back on the state-dict order (ModuleDict insertion order = class order)
        names = []
        for key in sd:
            if key.startswith("cls_decoders.") and key.endswith(".out_layer.weight"):
                names.append(key[len("cls_decoders.") : -len(".out_layer.weight")])
    in_sd = {
        k[len("cls_decoders.") : -len(".out_layer.weight")]
        for k in sd
        if k.startswith("cls_decoders.") and k.endswith(".out_layer.weight")
    }
    missing = [c for c in names if c not in in_sd]
    extra = sorted(in_sd - set(names))
    if missing or extra:
        msg = (
            f"The classes of the hyper-parameters {names} do not match the classifier weights "
            f"(missing {missing}, not listed {extra}); the checkpoint is inconsistent."
        )
        raise UnsupportedCheckpointError(msg)
    counts = {}
    for c in names:
        n = int(sd[f"cls_decoders.{c}.out_layer.weight"].shape[0])
        if c in counts_hp and int(counts_hp[c]) != n:
            logger.warning("class %s: hparams say %s leaves, the weights have %d; using %d", c, counts_hp[c], n, n)
        counts[c] = n
    return names, counts


def _architecture(sd: dict[str, torch.Tensor], hp: dict[str, Any]) -> dict[str, Any]:
    """Read the architecture from the tensor shapes (checked against the hyper-parameters)."""
    emb_key = (
        "gene_encoder.embeddings.weight" if "gene_encoder.embeddings.weight" in sd else "gene_encoder.embedding.weight"
    )
    if emb_key not in sd:
        msg = "No gene embedding table (gene_encoder.embedding(s).weight) in the checkpoint: not an scPRINT-1 file."
        raise UnsupportedCheckpointError(msg)
    n_genes, d_model = (int(s) for s in sd[emb_key].shape)
    blocks = sorted({int(m.group(1)) for k in sd if (m := _BLOCK_RE.match(k))})
    if not blocks or blocks != list(range(len(blocks))):
        msg = f"Transformer blocks are missing or not numbered 0..L-1 (found {blocks[:10]})."
        raise UnsupportedCheckpointError(msg)
    nlayers = len(blocks)
    nhead = hp.get("nhead")
    if not isinstance(nhead, int) or nhead <= 0 or d_model % nhead:
        msg = f"hparam nhead={nhead!r} is missing or does not divide d_model={d_model}."
        raise UnsupportedCheckpointError(msg)
    head_dim = d_model // nhead
    rows = int(sd["transformer.blocks.0.mixer.Wqkv.weight"].shape[0])
    num_heads_kv = (rows // head_dim - nhead) // 2
    if rows % head_dim or num_heads_kv <= 0 or (nhead + 2 * num_heads_kv) * head_dim != rows or nhead % num_heads_kv:
        msg = (
            f"Wqkv has {rows} rows, which is not (nhead + 2 * num_heads_kv) * head_dim for nhead={nhead}, d={d_model}."
        )
        raise UnsupportedCheckpointError(msg)
    hp_kv = hp.get("num_heads_kv")
    if hp_kv is not None and int(hp_kv) != num_heads_kv:
        logger.warning(
            "hparam num_heads_kv=%s but the Wqkv shape implies %d; using %d", hp_kv, num_heads_kv, num_heads_kv
        )
    dim_feedforward = int(sd["transformer.blocks.0.mlp.fc1.weight"].shape[0])
    expr_layers = len(_linear_widths(sd, "expr_encoder.encoder."))
    has_depth_token = "depth_encoder.encoder.0.weight" in sd
    fc0_width = int(sd["expr_decoder.fc.0.weight"].shape[1])
    if fc0_width not in (d_model, d_model + 1):
        msg = f"expr_decoder.fc.0 takes {fc0_width} inputs; expected d_model ({d_model}) or d_model + 1."
        raise UnsupportedCheckpointError(msg)
    depth_at_decoder = fc0_width == d_model + 1
    if has_depth_token == depth_at_decoder:
        msg = (
            "The checkpoint has "
            + ("both a depth token and" if has_depth_token else "neither a depth token nor")
            + " a depth input at the expression decoder; sc_print supports exactly one of them."
        )
        raise UnsupportedCheckpointError(msg)
    hp_depth = hp.get("depth_atinput")
    if hp_depth is not None and bool(hp_depth) != has_depth_token:
        logger.warning("hparam depth_atinput=%s disagrees with the weights; following the weights", hp_depth)
    n_out = int(sd["expr_decoder.pred_var_zero.weight"].shape[0])
    expr_decoder = {3: "zinb", 2: "nb", 1: "mse"}.get(n_out)
    if expr_decoder is None:
        msg = f"expr_decoder.pred_var_zero has {n_out} outputs; expected 3 (ZINB), 2 (NB) or 1 (MSE)."
        raise UnsupportedCheckpointError(msg)
    return {
        "emb_key": emb_key,
        "n_genes": n_genes,
        "d_model": d_model,
        "nlayers": nlayers,
        "nhead": nhead,
        "num_heads_kv": num_heads_kv,
        "dim_feedforward": dim_feedforward,
        "expr_encoder_layers": expr_layers,
        "depth_atinput": has_depth_token,
        "expr_decoder": expr_decoder,
    }


def detect_generation(state_dict: dict[str, Any], hparams: dict[str, Any]) -> str:
    """Code generation that wrote a checkpoint: ``"1.x"`` (paper era) or ``"2.x"``.

    Parameters
    ----------
    state_dict
        The checkpoint's ``state_dict``.
    hparams
        Its ``hyper_parameters``.

    Returns
    -------
    ``"1.x"`` when the gene table is stored under the 1.x key ``gene_encoder.embedding.weight``, else
    ``"2.x"``. Raises :class:`UnsupportedCheckpointError` for layouts sc_print cannot run.
    """
    _check_supported(state_dict, hparams)
    if "gene_encoder.embedding.weight" in state_dict:
        return "1.x"
    if "gene_encoder.embeddings.weight" in state_dict:
        return "2.x"
    msg = "No gene embedding table (gene_encoder.embedding(s).weight): not an scPRINT-1 checkpoint."
    raise UnsupportedCheckpointError(msg)


def _hierarchies(
    names: list[str], counts: dict[str, int], hp: dict[str, Any]
) -> tuple[dict[str, LabelHierarchy], dict[str, dict[int, str]], dict[str, dict[int, list[int]]]]:
    from sc_print.ontology import LabelHierarchy, label_key

    decoders_hp = hp.get("label_decoders") or {}
    hierarchy_hp = hp.get("labels_hierarchy") or {}
    hierarchies: dict[str, LabelHierarchy] = {}
    decoders: dict[str, dict[int, str]] = {}
    hierarchy: dict[str, dict[int, list[int]]] = {}
    for name in names:
        key = label_key(name)
        dec = decoders_hp.get(name)
        if not dec:
            logger.warning("no label_decoders for class %s: its predictions will be leaf indices", name)
            dec = {i: f"{key}_{i}" for i in range(counts[name])}
        decoders[name] = {int(k): str(v) for k, v in dec.items()}
        hierarchy[name] = {int(k): [int(i) for i in v] for k, v in (hierarchy_hp.get(name) or {}).items()}
        try:
            hierarchies[key] = LabelHierarchy.from_official(decoders[name], hierarchy[name], counts[name], label=name)
        except ValueError as err:
            msg = f"Label metadata of class {name!r} is inconsistent: {err}"
            raise UnsupportedCheckpointError(msg) from err
    return hierarchies, decoders, hierarchy


def _convert_state_dict(
    sd: dict[str, torch.Tensor], arch: dict[str, Any], names: list[str], keys: dict[str, str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename official keys to ScPrintNet keys; drop training-only modules."""
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in sd.items():
        if key.startswith(TRAINING_ONLY_PREFIXES):
            dropped.append(key.split(".")[0])
            continue
        new = key
        if key == arch["emb_key"]:
            new = "gene_encoder.embeddings.weight"
        elif key == "pos_encoder.pe":
            value = value.reshape(value.shape[0], value.shape[-1])
        elif key.startswith("cls_decoders."):
            for name in names:
                prefix = f"cls_decoders.{name}."
                if key.startswith(prefix):
                    new = f"cls_decoders.{keys[name]}." + key[len(prefix) :]
                    break
        out[new] = value
    if "pos_encoder.pe" not in out:  # trained without genomic positions: the reference adds nothing
        out["pos_encoder.pe"] = torch.zeros(arch["n_genes"], arch["d_model"])
    return out, sorted(set(dropped))


def read_official_checkpoint(path: str | os.PathLike, *, compute_sha256: bool = True) -> OfficialCheckpoint:
    """Read an official scPRINT ``.ckpt`` file into an :class:`~sc_print.nn.ScPrintNet` and its metadata.

    Parameters
    ----------
    path
        The checkpoint (e.g. ``medium.ckpt`` from the Hugging Face repository ``jkobject/scPRINT``).
    compute_sha256
        Record the file's SHA-256 (a few seconds for the large model).

    Returns
    -------
    The converted checkpoint: the network (eval mode, CPU, float32), its config, the vocabulary
    (``hparams["genes"]`` as stored), organisms, label hierarchies and the detected generation.
    Raises :class:`UnsupportedCheckpointError` for layouts sc_print does not implement and
    :class:`ValueError` for files that are not checkpoints or not safe to load (the message names the file).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        msg = f"No checkpoint file at {path}."
        raise FileNotFoundError(msg)
    return _read(path, None, compute_sha256=compute_sha256)


def _read(path: Path, content: Any, *, compute_sha256: bool = True) -> OfficialCheckpoint:
    """:func:`read_official_checkpoint` of a file whose content may have been read already."""
    ckpt = _load_container(path, content)
    try:
        return _convert(ckpt, path, compute_sha256=compute_sha256)
    except UnsupportedCheckpointError as err:
        msg = f"{path}: {err}"
        raise UnsupportedCheckpointError(msg) from err
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as err:
        what = f"it has no entry {err.args[0]!r}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        msg = f"{path} is not a usable {OFFICIAL[3:]}: its layout is not one sc_print reads ({what})."
        raise UnsupportedCheckpointError(msg) from err


def _convert(ckpt: dict[str, Any], path: Path, *, compute_sha256: bool) -> OfficialCheckpoint:
    """The converted checkpoint (errors without the file name; :func:`read_official_checkpoint` adds it)."""
    from sc_print.ontology import label_key

    sd: dict[str, torch.Tensor] = dict(ckpt["state_dict"])
    hp: dict[str, Any] = dict(ckpt["hyper_parameters"])
    generation = detect_generation(sd, hp)
    arch = _architecture(sd, hp)
    genes = [str(g) for g in hp.get("genes") or []]
    if len(genes) != arch["n_genes"]:
        msg = (
            f"hparams['genes'] lists {len(genes)} genes but the embedding table has {arch['n_genes']} rows; "
            "the vocabulary cannot be recovered."
        )
        raise UnsupportedCheckpointError(msg)
    names, counts = _class_order(sd, hp)
    keys = {name: label_key(name) for name in names}
    if len(set(keys.values())) != len(keys):
        msg = f"Two classes map to the same label key: {keys}."
        raise UnsupportedCheckpointError(msg)
    n_class_rows = int(sd["class_encoder.embedding.weight"].shape[0])
    if n_class_rows != len(names) + 1:
        msg = f"class_encoder has {n_class_rows} rows for {len(names)} classes (expected classes + 1)."
        raise UnsupportedCheckpointError(msg)
    widths = {name: [int(s[0]) for _, s in _linear_widths(sd, f"cls_decoders.{name}.decoder.")] for name in names}
    layers_cls = next(iter(widths.values()), [])
    if any(w != layers_cls for w in widths.values()):
        msg = f"Classifiers of different depths/widths are not supported: {widths}."
        raise UnsupportedCheckpointError(msg)
    hierarchies, decoders, hierarchy = _hierarchies(names, counts, hp)
    pred_embedding = [keys[c] for c in hp.get("pred_embedding") or [] if c in keys] or None
    if hp.get("attn_bias", "none") not in (None, "none"):
        logger.warning("attn_bias=%r (a training-time prior) is ignored", hp.get("attn_bias"))
    config = ScPrintConfig(
        n_genes=arch["n_genes"],
        d_model=arch["d_model"],
        nhead=arch["nhead"],
        nlayers=arch["nlayers"],
        num_heads_kv=None if arch["num_heads_kv"] == arch["nhead"] else arch["num_heads_kv"],
        dim_feedforward=arch["dim_feedforward"],
        expr_encoder_layers=arch["expr_encoder_layers"],
        normalization=hp.get("normalization", "sum"),
        depth_atinput=arch["depth_atinput"],
        labels={keys[c]: counts[c] for c in names},
        layers_cls=layers_cls,
        expr_decoder=arch["expr_decoder"],
        dropout=float(hp.get("dropout", 0.1) or 0.0),
        drop_path_rate=float(hp.get("drop_path_rate", 0.0) or 0.0),
        token_order="paper" if generation == "1.x" else "v2",
        pred_embedding=pred_embedding,
        freeze_gene_embeddings=True,
        attention="sdpa",
    )
    pos = hp.get("gene_pos_enc")
    gene_pos = [int(p) for p in pos] if pos is not None and len(pos) == len(genes) else list(range(1, len(genes) + 1))
    state, dropped = _convert_state_dict(sd, arch, names, keys)
    net = ScPrintNet(config, gene_pos=gene_pos)
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        msg = (
            "The checkpoint's weights do not match the detected architecture: missing "
            f"{result.missing_keys[:8]}, unexpected {result.unexpected_keys[:8]}. This layout is not supported."
        )
        raise UnsupportedCheckpointError(msg)
    net.eval()
    organisms = [str(o) for o in hp.get("organisms") or [HUMAN]]
    layout = {
        "depth": "token" if arch["depth_atinput"] else "decoder",
        "token_order": config.token_order,
        "token_names": list(net.token_names),
        "nhead": arch["nhead"],
        "num_heads_kv": arch["num_heads_kv"],
        "normalization": config.normalization,
        "expr_decoder": config.expr_decoder,
        "dropped": dropped,
    }
    sha = None
    if compute_sha256:
        sha = file_sha256(path)
    logger.info(
        "read %s: scPRINT %s checkpoint, %d genes, d_model %d, %d layers, %d heads (%d kv), depth %s, labels %s",
        path.name,
        generation,
        len(genes),
        config.d_model,
        config.nlayers,
        config.nhead,
        arch["num_heads_kv"],
        layout["depth"],
        list(config.labels),
    )
    return OfficialCheckpoint(
        net=net,
        config=config,
        genes=genes,
        gene_pos=gene_pos,
        organisms=organisms,
        hierarchies=hierarchies,
        label_columns={keys[c]: c for c in names},
        label_decoders=decoders,
        labels_hierarchy=hierarchy,
        generation=generation,
        layout=layout,
        path=path,
        sha256=sha,
        hparams=hp,
    )
