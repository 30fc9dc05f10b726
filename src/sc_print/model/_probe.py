"""Linear-probe initialisation of classifier heads before fine-tuning (the "LP" of LP-FT).

A new label token of a pretrained model has nearly the same output for every cell: the cell-specific part is a
small deviation around a large shared vector. A randomly initialised head (``Linear -> LayerNorm -> ReLU``)
sees mostly the shared vector after its LayerNorm and learns the classes very slowly: on CellBench, 100 steps
of joint training left the classification loss at the class-prior value. Linear probing then fine-tuning
(Kumar et al., ICLR 2022) fixes this: the output tokens of the training cells are computed once with the
frozen trunk, the head is fitted to them, and only then is the whole model trained. The head's first layer is
initialised from the tokens' mean and standard deviation (a data-dependent init), so its LayerNorm sees
standardised features from the first step.

A pooling head (:class:`~sc_print.nn.GenePool`, which also reads the output gene tokens) is fitted the same way,
on the gene outputs of the frozen trunk computed once (float16, at most ``max_cells`` cells drawn at random), in
mini-batches: its input LayerNorm makes the data-dependent init unnecessary.

An expression read-out (:class:`~sc_print.nn.ExpressionReadout`) is a logistic regression on the genes and counts
of the same contexts. A convex problem is better solved than stepped at: it is fitted first, alone and to
convergence (:class:`torch.optim.LBFGS` on all the cached cells, L2 penalty as scikit-learn's
``LogisticRegression(C=1)``: ``C`` per one-vs-rest class of the head's loss). The rest of the head then starts
from zero output weights, so the classifier starts as the regression, and is fitted on top of it with the read-out
held fixed. A read-out fitted this way stays frozen in the training that follows (see ``finetune``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from sc_print.ontology import hierarchical_classification_loss

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

    from ._model import ScPrint


def standardise_head(head: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor, *, seed: int) -> None:
    """Initialise ``head`` so that its first linear layer acts on standardised inputs ``(x - mean) / std``.

    With hidden layers, the first layer becomes a random rotation of the standardised token (the rotation keeps
    every direction of the input; the LayerNorm and ReLU follow). Without, the output layer is set to zero on the
    standardised token. The later layers get the usual ``N(0, 0.02)`` init.

    Parameters
    ----------
    head
        A :class:`~sc_print.nn.ClsDecoder`.
    mean, std
        ``[d]`` statistics of the tokens the head reads.
    seed
        Seed of the rotation.
    """
    gen = torch.Generator().manual_seed(int(seed))
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    first = linears[0]
    with torch.no_grad():
        if len(linears) > 1:
            rot = torch.linalg.qr(torch.randn(first.out_features, first.in_features, generator=gen))[0]
            weight = rot / std
        else:
            weight = torch.zeros_like(first.weight)
        first.weight.copy_(weight)
        first.bias.copy_(-(weight @ mean))
        for layer in linears[1:]:
            layer.weight.normal_(0.0, 0.02, generator=gen)
            layer.bias.zero_()


def fit_readout(
    readout: torch.nn.Module,
    gene_idx: torch.Tensor,
    expr: torch.Tensor,
    target: torch.Tensor,
    parents: torch.Tensor | np.ndarray | None,
    *,
    c: float = 1.0,
    max_iter: int = 500,
) -> list[float]:
    """Fit an :class:`~sc_print.nn.ExpressionReadout` as an L2-regularised logistic regression (L-BFGS, full batch).

    The loss is the head's (:func:`~sc_print.ontology.hierarchical_classification_loss`: one-vs-rest, mean over
    cells and leaves) plus ``||W||^2 / (2 c n K)`` for ``n`` labelled cells and ``K`` leaves: each leaf's
    regression is penalised as scikit-learn's ``LogisticRegression(C=c)`` (the bias is not penalised).

    Parameters
    ----------
    readout
        The read-out; its ``weight`` and ``bias`` are overwritten.
    gene_idx, expr
        ``[n, S]`` vocabulary indices and counts of the cells' contexts.
    target
        ``[n]`` hierarchy codes (``-1``: unknown, left out).
    parents
        Parent matrix of the label's hierarchy (``None``: flat).
    c
        Inverse regularisation strength.
    max_iter
        L-BFGS iterations.

    Returns
    -------
    ``[loss before, loss after]`` (penalty included).
    """
    keep = target >= 0
    idx, counts, y = gene_idx[keep], expr[keep], target[keep]
    if len(y) == 0:
        return []
    values = readout.values(counts).double()  # float64: the regression's flat directions converge too
    n, n_classes = len(y), readout.weight.shape[1]
    penalty = 1.0 / (2.0 * float(c) * n * n_classes)
    weight = torch.zeros(readout.weight.shape, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=int(max_iter),
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )

    def loss_fn() -> torch.Tensor:
        logits = F.embedding_bag(idx, weight, per_sample_weights=values, mode="sum") + bias
        return hierarchical_classification_loss(logits, y, parents) + penalty * weight.square().sum()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    first = float(opt.step(closure).detach())
    with torch.no_grad():
        last = float(loss_fn())
        readout.weight.copy_(weight)
        readout.bias.copy_(bias)
    return [first, last]


def fit_heads(
    model: ScPrint,
    adata: AnnData,
    labels: Sequence[str],
    codes: dict[str, np.ndarray],
    *,
    steps: int,
    lr: float,
    seed: int,
    batch_size: int = 64,
    max_cells: int = 4096,
) -> dict[str, list[float]]:
    """Fit the heads of ``labels`` on the output tokens of the frozen trunk (AdamW).

    Token heads are fitted on all the cells at each step, pooling heads on ``batch_size`` cells. An expression
    read-out is fitted first (:func:`fit_readout`) and then held fixed while the rest of its head is fitted.

    Parameters
    ----------
    model
        The model being fine-tuned (its trunk is only run, never changed).
    adata
        Training cells (raw counts), embedded with the model's context (:meth:`embedding_context`).
    labels
        Labels whose heads are fitted.
    codes
        ``{label: [n_obs]}`` hierarchy codes of the cells (``-1``: unknown, ignored by the loss).
    steps, lr
        AdamW steps over all the cells and learning rate.
    seed
        Seed of the contexts, of the rotations and of dropout.
    batch_size
        Cells per forward pass of the token computation, and per step of a pooling head.
    max_cells
        Cells whose gene outputs are kept for pooling heads (a random subset of a larger reference).

    Returns
    -------
    ``{label: [loss before, loss after]}`` of the head's steps, and ``{"<label> read-out": [...]}`` of each
    read-out's fit.
    """
    net = model.net
    cached = any(
        net.cls_decoders[label].pool is not None or net.cls_decoders[label].readout is not None for label in labels
    )
    rows = np.arange(adata.n_obs)
    if cached and adata.n_obs > max_cells:
        rows = np.sort(np.random.default_rng(seed).choice(adata.n_obs, size=max_cells, replace=False))
    out = model.embed_cells(
        adata, indices=rows, labels=list(labels), seed=seed, batch_size=batch_size, gene_outputs=cached
    )
    genes = torch.as_tensor(out.gene_outputs) if cached else None
    context = (torch.as_tensor(out.context_genes), torch.as_tensor(out.context_counts)) if cached else None
    losses: dict[str, list[float]] = {}
    torch.manual_seed(int(seed))
    gen = torch.Generator().manual_seed(int(seed))
    for label in labels:
        tokens = torch.as_tensor(out.tokens[label])
        target = torch.as_tensor(np.asarray(codes[label], dtype=np.int64)[rows])
        parents = model.label_hierarchy(label).parent_matrix
        head = net.cls_decoders[label]
        minibatch = head.pool is not None or head.readout is not None
        if head.pool is None:
            standardise_head(head, tokens.mean(0), tokens.std(0) + 1e-4, seed=seed)
        readout_grad = None
        if head.readout is not None:
            losses[f"{label} read-out"] = fit_readout(head.readout, *context, target, parents)
            readout_grad = head.readout.weight.requires_grad
            head.readout.requires_grad_(False)
            with torch.no_grad():
                head.out_layer.weight.zero_()
                head.out_layer.bias.zero_()
        was_training = head.training
        head.train()
        params = [p for name, p in head.named_parameters() if not name.startswith("readout.")]
        grads = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        record = []
        labelled = torch.nonzero(target >= 0).ravel()
        for _ in range(int(steps)):
            if not minibatch:
                loss = hierarchical_classification_loss(head(tokens), target, parents)
            else:
                idx = labelled[torch.randint(0, len(labelled), (batch_size,), generator=gen)]
                cell_genes = genes[idx].float() if head.pool is not None else None
                cell_context = (context[0][idx], context[1][idx]) if head.readout is not None else None
                logits = head(tokens[idx], cell_genes, cell_context)
                loss = hierarchical_classification_loss(logits, target[idx], parents)
            opt.zero_grad()
            loss.backward()
            opt.step()
            record.append(float(loss.detach()))
        for p, g in zip(params, grads, strict=True):
            p.requires_grad_(g)
        if readout_grad is not None:
            head.readout.requires_grad_(readout_grad)
        head.train(was_training)
        losses[label] = [record[0], record[-1]] if record else []
    return losses
