"""Docstring text shared by the model-running ``sp.tl`` functions (filled in with :func:`~sc_print._utils.doc_params`)."""

#: the inputs of every model-running call (``{counts_input}``)
DOC_COUNTS_INPUT = """\
adata
    Cells x genes AnnData with raw counts (in memory or backed), or a MuData whose ``mod`` modality holds them.
model
    A :class:`~sc_print.model.ScPrint`, a registry name or a path; ``None`` uses the default model.
layer
    Layer with the raw counts; by default ``.X`` when it holds counts, else ``.raw.X``."""

#: the run options (``{run_options}``)
DOC_RUN_OPTIONS = """\
batch_size
    Cells per forward pass (and rows read at a time); results do not depend on it.
accelerator
    ``"auto"``, ``"cpu"``, ``"gpu"``/``"cuda"`` or ``"mps"``.
device
    ``"auto"`` or a device index.
dtype
    Autocast dtype: ``None`` = float32 on CPU, bfloat16 on CUDA; or ``"float32"``, ``"bfloat16"``,
    ``"float16"``, a :class:`torch.dtype`."""

#: where the results go (``{mod_copy}``)
DOC_MOD_COPY = """\
mod
    Modality of a MuData holding the RNA counts.
copy
    Return a copy with the results instead of writing into ``adata``."""

#: the determinism contract (``{determinism}``)
DOC_DETERMINISM = """\
The outputs of a cell are a function of that cell's counts, the model, the options and the seed: not of the
other cells, their order or ``batch_size`` (random gene contexts are drawn per cell from the seed and the cell's
own counts). Options marked *data-set dependent* (highly variable genes) are not: the genes they choose are
recorded in ``.uns`` so that a re-run on a subset can pass them back."""
