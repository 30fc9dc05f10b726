"""Tests of ``sc_print.nn``: shapes for every config switch, attention backends, Q/K hook, losses, weights."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sc_print.nn import (
    DropPath,
    ScPrintConfig,
    ScPrintNet,
    ScPrintOutput,
    attention,
    contrastive_loss,
    expression_loss,
    mse_loss,
    nb_log_likelihood,
    nb_loss,
    token_dissimilarity,
    zinb_log_likelihood,
    zinb_loss,
)

CHECKPOINTS = Path(__file__).parent / "data" / "checkpoints"
N_GENES, D, B, S = 60, 16, 3, 12


def _config(**overrides) -> ScPrintConfig:
    base = {"n_genes": N_GENES, "d_model": D, "nhead": 4, "nlayers": 2, "layers_cls": [D], "dropout": 0.0}
    return ScPrintConfig(**{**base, **overrides})


def _net(seed: int = 0, **overrides) -> ScPrintNet:
    torch.manual_seed(seed)
    return ScPrintNet(_config(**overrides)).eval()


def _batch(seed: int = 0, b: int = B, s: int = S) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    gene_idx = torch.stack([torch.randperm(N_GENES, generator=gen)[:s] for _ in range(b)])
    expr = torch.poisson(torch.full((b, s), 3.0), generator=gen)
    expr[:, 0] += 1.0  # no empty cell
    depth = expr.sum(1) * 5.0
    return gene_idx, expr, depth


# ---------------------------------------------------------------------------------------------------- shapes

LABELS = {"cell_type": 5, "sex": 2}


@pytest.mark.parametrize(
    ("depth_atinput", "token_order", "labels"),
    list(itertools.product([True, False], ["paper", "v2"], [{}, LABELS])),
)
def test_cell_token_layout(*, depth_atinput: bool, token_order: str, labels: dict) -> None:
    net = _net(depth_atinput=depth_atinput, token_order=token_order, labels=labels)
    gene_idx, expr, depth = _batch()
    if not depth_atinput:
        expected = ["cell"]
    elif token_order == "paper":
        expected = ["cell", "depth"]
    else:
        expected = ["depth", "cell"]
    expected += list(labels)
    assert net.token_names == expected
    t = len(expected)
    with torch.no_grad():
        out = net(gene_idx, expr, depth)
        inputs = net.cell_tokens(B, depth)
    assert out.cell_tokens.shape == (B, t, D)
    assert out.gene_out.shape == (B, S, D)
    assert set(out.cls_logits) == set(labels)
    for label, n in labels.items():
        assert out.cls_logits[label].shape == (B, n)
    # the input cell tokens sit where token_names says: cell = class row 0, labels = rows 1.., depth = MLP(depth)
    table = net.class_encoder.embedding.weight
    torch.testing.assert_close(inputs[0, expected.index("cell")], table[0])
    for i, label in enumerate(labels, start=1):
        torch.testing.assert_close(inputs[0, expected.index(label)], table[i])
    if depth_atinput:
        with torch.no_grad():
            depth_token = net.depth_encoder(torch.log2(1 + depth))
        torch.testing.assert_close(inputs[:, expected.index("depth")], depth_token)
        assert net.expr_decoder.fc[0].in_features == D
    else:
        assert not hasattr(net, "depth_encoder")
        assert net.expr_decoder.fc[0].in_features == D + 1
    # the embedding averages the requested tokens
    emb = net.embed(out.cell_tokens)
    assert emb.shape == (B, D)
    default = list(labels) or ["cell"]
    torch.testing.assert_close(emb, out.cell_tokens[:, [expected.index(n) for n in default]].mean(1))
    with pytest.raises(KeyError, match="Unknown embedding tokens"):
        net.embed(out.cell_tokens, labels=["not_a_token"])


@pytest.mark.parametrize(
    ("expr_decoder", "normalization", "num_heads_kv"),
    list(itertools.product(["zinb", "nb", "mse"], ["log", "sum"], [None, 2, 1])),
)
def test_forward_shapes(expr_decoder: str, normalization: str, num_heads_kv: int | None) -> None:
    net = _net(expr_decoder=expr_decoder, normalization=normalization, num_heads_kv=num_heads_kv, labels=LABELS)
    gene_idx, expr, depth = _batch()
    hk = num_heads_kv or 4
    assert net.transformer.blocks[0].mixer.Wqkv.weight.shape == ((4 + 2 * hk) * (D // 4), D)
    with torch.no_grad():
        out = net(gene_idx, expr, depth)
    assert out.mu.shape == (B, S)
    assert out.mu.dtype == torch.float32
    assert torch.isfinite(out.mu).all()
    assert (out.mu >= 0).all()
    if expr_decoder == "mse":
        assert out.theta is None
        assert out.pi_logits is None
    else:
        assert out.theta.shape == (B, S)
        assert (out.theta > 0).all()
        if expr_decoder == "nb":
            assert out.pi_logits is None
        else:
            assert out.pi_logits.shape == (B, S)
    loss = expression_loss(expr, out.mu, out.theta, out.pi_logits)
    assert loss.ndim == 0
    assert torch.isfinite(loss)


def test_normalization_changes_the_input() -> None:
    """``sum`` feeds count fractions, ``log`` feeds log2(1+x): the same weights give different outputs."""
    from sc_print.nn import normalize_expression

    expr = torch.tensor([[1.0, 3.0, 0.0, 4.0]])
    torch.testing.assert_close(normalize_expression(expr, "sum"), expr / 8.0)
    torch.testing.assert_close(normalize_expression(expr, "log"), torch.log2(1 + expr))
    with pytest.raises(ValueError, match="normalization"):
        normalize_expression(expr, "rank")
    gene_idx, x, depth = _batch()
    log_net = _net(normalization="log")
    sum_net = _net(normalization="sum")
    sum_net.load_state_dict(log_net.state_dict())
    with torch.no_grad():
        assert not torch.allclose(log_net(gene_idx, x, depth).mu, sum_net(gene_idx, x, depth).mu)


def test_invalid_config_values() -> None:
    with pytest.raises(ValueError, match="num_heads_kv"):
        ScPrintNet(_config(nhead=4, num_heads_kv=3))
    with pytest.raises(ValueError, match="expression decoder"):
        ScPrintNet(_config(expr_decoder="poisson"))
    with pytest.raises(ValueError, match="gene_pos"):
        ScPrintNet(_config(), gene_pos=torch.arange(1, N_GENES))
    with pytest.raises(ValueError, match="Unknown size preset"):
        ScPrintConfig.preset("huge", n_genes=10)
    with pytest.raises(ValueError, match="Unknown ScPrintConfig fields"):
        ScPrintConfig.from_dict({"n_genes": 10, "bogus": 1})
    cfg = ScPrintConfig.preset("tiny", n_genes=10, labels={"a": 2})
    assert ScPrintConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_positional_encoding_uses_gene_positions() -> None:
    """Genes sharing a locus cluster get the same positional row; ``pe`` is ``[G, d]``."""
    pos = torch.arange(1, N_GENES + 1)
    pos[1] = pos[0]
    torch.manual_seed(0)
    net = ScPrintNet(_config(), gene_pos=pos)
    assert net.pos_encoder.pe.shape == (N_GENES, D)
    torch.testing.assert_close(net.pos_encoder.pe[0], net.pos_encoder.pe[1])
    assert not torch.allclose(net.pos_encoder.pe[0], net.pos_encoder.pe[2])


# ---------------------------------------------------------------------------------------------------- attention


@pytest.mark.parametrize("num_heads_kv", [4, 2, 1])
def test_attention_backends_agree(num_heads_kv: int) -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 9, 4, 8, generator=gen)
    k = torch.randn(2, 9, num_heads_kv, 8, generator=gen)
    v = torch.randn(2, 9, num_heads_kv, 8, generator=gen)
    sdpa = attention(q, k, v, backend="sdpa")
    math = attention(q, k, v, backend="math")
    assert sdpa.shape == (2, 9, 4, 8)
    torch.testing.assert_close(sdpa, math, atol=1e-5, rtol=1e-5)
    # grouped-query: query head h uses kv head h // (H / Hkv)
    rep = 4 // num_heads_kv
    full = attention(q, k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2), backend="math")
    torch.testing.assert_close(math, full, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="Unknown attention backend"):
        attention(q, k, v, backend="xformers")
    with pytest.raises(ValueError, match="flash_attn backend needs CUDA"):
        attention(q, k, v, backend="flash_attn")


@pytest.mark.parametrize("num_heads_kv", [None, 2])
def test_network_backends_agree(num_heads_kv: int | None) -> None:
    sdpa = _net(attention="sdpa", num_heads_kv=num_heads_kv, labels=LABELS)
    math = _net(attention="math", num_heads_kv=num_heads_kv, labels=LABELS)
    math.load_state_dict(sdpa.state_dict())
    gene_idx, expr, depth = _batch()
    with torch.no_grad():
        a, b = sdpa(gene_idx, expr, depth), math(gene_idx, expr, depth)
    for name in ("cell_tokens", "gene_out", "mu", "theta", "pi_logits"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- decoding


def test_decoded_mean_sums_to_depth_mult() -> None:
    net = _net(labels=LABELS)
    gene_idx, expr, depth = _batch()
    with torch.no_grad():
        default = net(gene_idx, expr, depth)
        explicit = net(gene_idx, expr, depth, depth_mult=torch.tensor([10.0, 200.0, 3000.0]))
        factor = net(gene_idx, expr, depth, depth_mult=4.0)
    torch.testing.assert_close(default.mu.sum(1), expr.sum(1))
    torch.testing.assert_close(explicit.mu.sum(1), torch.tensor([10.0, 200.0, 3000.0]))
    torch.testing.assert_close(factor.mu.sum(1), 4.0 * expr.sum(1))
    # the decoded profile is the same distribution, only rescaled
    torch.testing.assert_close(factor.mu, 4.0 * default.mu)


def test_req_depth_reaches_the_model() -> None:
    """The depth shown to the model (depth token, or decoder input without one) changes the outputs."""
    gene_idx, expr, depth = _batch()
    for depth_atinput in (True, False):
        net = _net(depth_atinput=depth_atinput)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for param in net.parameters():  # away from the near-zero init, so that the depth matters visibly
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
            a = net(gene_idx, expr, depth)
            b = net(gene_idx, expr, depth, req_depth=torch.ones(B))
        if depth_atinput:  # the depth token is attended to by the genes
            assert (a.cell_tokens - b.cell_tokens).abs().max() > 1e-2
            assert (a.gene_out - b.gene_out).abs().max() > 1e-4
        else:  # the depth enters only at the expression decoder
            torch.testing.assert_close(a.gene_out, b.gene_out, rtol=0, atol=0)
            assert (a.mu - b.mu).abs().max() > 1e-2
        torch.testing.assert_close(a.mu.sum(1), b.mu.sum(1))


def test_generate_shapes() -> None:
    net = _net(labels=LABELS)
    gene_idx, expr, depth = _batch()
    with torch.no_grad():
        out = net(gene_idx, expr, depth)
        gen = net.generate(out.cell_tokens, gene_idx, expr.sum(1), req_depth=depth)
    assert isinstance(gen, ScPrintOutput)
    assert gen.cell_tokens.shape == out.cell_tokens.shape
    assert gen.gene_out.shape == (B, S, D)
    for name in ("mu", "theta", "pi_logits"):
        assert getattr(gen, name).shape == (B, S)
    assert gen.cls_logits == {}
    torch.testing.assert_close(gen.mu.sum(1), expr.sum(1))
    # the decoded profile comes from the cell tokens: other tokens decode another profile
    with torch.no_grad():
        other = net.generate(out.cell_tokens.flip(0), gene_idx, expr.sum(1), req_depth=depth)
    assert not torch.allclose(gen.mu, other.mu)


# ---------------------------------------------------------------------------------------------------- Q/K hook


@pytest.mark.parametrize("num_heads_kv", [None, 2])
def test_qk_hook_shapes_and_early_stop(num_heads_kv: int | None) -> None:
    net = _net(nlayers=3, num_heads_kv=num_heads_kv, labels=LABELS)
    gene_idx, expr, depth = _batch()
    t = net.n_cell_tokens
    hd = D // 4

    full: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    with torch.no_grad():
        out = net(gene_idx, expr, depth, qk_hook=lambda i, q, k: full.__setitem__(i, (q, k)))
    assert sorted(full) == [0, 1, 2]
    for q, k in full.values():
        assert q.shape == (B, t + S, 4, hd)
        assert k.shape == (B, t + S, 4, hd)  # kv heads repeated to H for GQA
    assert out.mu is not None

    # a selection of layers (negative indices allowed), decoding skipped: the pass stops after layer 1
    calls: list[str] = []
    hooks = [
        blk.register_forward_hook(lambda *_args, i=i: calls.append(f"block{i}"))
        for i, blk in enumerate(net.transformer.blocks)
    ]
    hooks.append(net.transformer.norm.register_forward_hook(lambda *_args: calls.append("norm")))
    hooks.append(net.expr_decoder.register_forward_hook(lambda *_args: calls.append("decoder")))
    early: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    try:
        with torch.no_grad():
            stopped = net(
                gene_idx,
                expr,
                depth,
                qk_hook=lambda i, q, k: early.__setitem__(i, (q, k)),
                qk_layers=[0, -2],
                decode=False,
                classify=False,
            )
    finally:
        for h in hooks:
            h.remove()
    assert sorted(early) == [0, 1]
    assert calls == ["block0"]  # block 1 only projected Q/K; block 2, the final norm and the heads never ran
    assert stopped.cell_tokens is None
    assert stopped.gene_out is None
    assert stopped.mu is None
    assert stopped.cls_logits == {}
    for i in (0, 1):
        torch.testing.assert_close(early[i][0], full[i][0])
        torch.testing.assert_close(early[i][1], full[i][1])


def test_qk_hook_with_decoding_runs_the_full_pass() -> None:
    net = _net(labels=LABELS)
    gene_idx, expr, depth = _batch()
    seen: list[int] = []
    with torch.no_grad():
        ref = net(gene_idx, expr, depth)
        out = net(gene_idx, expr, depth, qk_hook=lambda i, q, k: seen.append(i), qk_layers=[0])
    assert seen == [0]
    torch.testing.assert_close(out.mu, ref.mu)
    torch.testing.assert_close(out.cell_tokens, ref.cell_tokens)


@pytest.mark.parametrize(("attention_backend", "num_heads_kv"), [("sdpa", None), ("sdpa", 2), ("math", None)])
def test_cell_tokens_only_matches_the_full_pass(attention_backend: str, num_heads_kv: int | None) -> None:
    net = _net(labels=LABELS, attention=attention_backend, num_heads_kv=num_heads_kv, nlayers=3)
    gene_idx, expr, depth = _batch()
    with torch.no_grad():
        full = net(gene_idx, expr, depth, decode=False)
        short = net(gene_idx, expr, depth, decode=False, cell_tokens_only=True)
    assert short.gene_out is None
    assert short.cell_tokens.shape == full.cell_tokens.shape == (B, net.n_cell_tokens, D)
    torch.testing.assert_close(short.cell_tokens, full.cell_tokens, atol=1e-5, rtol=1e-5)
    for label in LABELS:
        torch.testing.assert_close(short.cls_logits[label], full.cls_logits[label], atol=1e-5, rtol=1e-5)


def test_cell_tokens_only_refuses_decoding() -> None:
    net = _net()
    with pytest.raises(ValueError, match="needs decode=False"):
        net(*_batch(), cell_tokens_only=True)


def test_gene_pool_is_a_set_function() -> None:
    from sc_print.nn import GenePool

    torch.manual_seed(0)
    pool = GenePool(D, width=8, n_queries=3).eval()
    genes = torch.randn(B, S, D)
    perm = torch.randperm(S)
    out = pool(genes)
    assert out.shape == (B, 8)
    torch.testing.assert_close(pool(genes[:, perm]), out, atol=1e-5, rtol=1e-5)  # order of the genes is irrelevant
    assert not torch.allclose(pool(genes + torch.randn_like(genes)), out)  # but their values are read


def test_pooled_classifier_reads_the_gene_outputs() -> None:
    net = _net(labels=LABELS, pooled_labels=["cell_type"], gene_pool={"width": 8, "n_queries": 2})
    assert net.cls_decoders["cell_type"].pool is not None
    assert net.cls_decoders["sex"].pool is None
    gene_idx, expr, depth = _batch()
    with torch.no_grad():
        full = net(gene_idx, expr, depth, decode=False)
        short = net(gene_idx, expr, depth, decode=False, cell_tokens_only=True)  # needs the genes: full pass
        token = full.cell_tokens[:, net.token_names.index("cell_type")]
        by_hand = net.cls_decoders["cell_type"](token, full.gene_out)
        other_genes = net.cls_decoders["cell_type"](token, full.gene_out.flip(0))
    for label in LABELS:
        torch.testing.assert_close(short.cls_logits[label], full.cls_logits[label], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.cls_logits["cell_type"], by_hand)
    assert not torch.allclose(other_genes, by_hand)  # another cell's genes: other logits


def test_pooled_classifier_without_genes_and_unknown_pooled_label() -> None:
    net = _net(labels=LABELS, pooled_labels=["cell_type"])
    with pytest.raises(ValueError, match="pass `genes`"):
        net.cls_decoders["cell_type"](torch.zeros(B, D))
    with pytest.raises(ValueError, match="pooled_labels"):
        _net(labels=LABELS, pooled_labels=["tissue"])


def test_pooled_config_round_trips_json() -> None:
    config = _config(labels=LABELS, pooled_labels=["sex"], gene_pool={"width": 12, "n_queries": 5})
    again = ScPrintConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert ScPrintNet(again).cls_decoders["sex"].pool.queries.shape == (5, 12)


def test_expression_readout_is_a_weighted_gene_sum() -> None:
    from sc_print.nn import ExpressionReadout

    torch.manual_seed(0)
    readout = ExpressionReadout(N_GENES, 4)
    assert torch.count_nonzero(readout.weight) == 0  # zero at init: the classifier starts as its deep part
    with torch.no_grad():
        readout.weight.normal_()
    gene_idx, expr, _ = _batch()
    values = torch.log1p(expr / expr.sum(-1, keepdim=True) * 1e4)
    by_hand = torch.einsum("bs,bsc->bc", values, readout.weight[gene_idx])
    torch.testing.assert_close(readout(gene_idx, expr), by_hand, atol=1e-5, rtol=1e-5)
    perm = torch.randperm(S)
    torch.testing.assert_close(readout(gene_idx[:, perm], expr[:, perm]), by_hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(readout(gene_idx, 3 * expr), by_hand, atol=1e-5, rtol=1e-5)  # per counts in context
    assert not torch.allclose(readout(gene_idx, expr.flip(0)), by_hand)


def test_readout_classifier_adds_the_expression_logits() -> None:
    net = _net(labels=LABELS, pooled_labels=["cell_type"], readout_labels=["cell_type"], gene_pool={"width": 8})
    dec = net.cls_decoders["cell_type"]
    assert dec.readout is not None
    assert net.cls_decoders["sex"].readout is None
    assert torch.count_nonzero(dec.readout.weight) == 0  # _init_weights leaves it at zero
    with torch.no_grad():
        dec.readout.weight.normal_()
    gene_idx, expr, depth = _batch()
    with torch.no_grad():
        full = net(gene_idx, expr, depth, decode=False)
        token = full.cell_tokens[:, net.token_names.index("cell_type")]
        deep = dec.out_layer(dec.decoder(torch.cat([token, dec.pool(full.gene_out)], -1)))
        torch.testing.assert_close(full.cls_logits["cell_type"], deep + dec.readout(gene_idx, expr))
        torch.testing.assert_close(full.cls_deep_logits["cell_type"], deep)  # for deep supervision
        torch.testing.assert_close(dec.deep_logits(token, full.gene_out), deep)
    assert set(full.cls_deep_logits) == {"cell_type"}  # only the classifiers with a read-out
    with pytest.raises(ValueError, match="context expression"):
        dec(token, full.gene_out)
    with pytest.raises(ValueError, match="readout_labels"):
        _net(labels=LABELS, readout_labels=["tissue"])
    config = _config(labels=LABELS, readout_labels=["sex"])
    again = ScPrintConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert ScPrintNet(again).cls_decoders["sex"].readout.weight.shape == (N_GENES, LABELS["sex"])


# ---------------------------------------------------------------------------------------------------- precision, regularisation


def test_residual_stays_fp32_under_bf16_autocast() -> None:
    net = _net(labels=LABELS)
    gene_idx, expr, depth = _batch()
    dtypes: list[tuple[str, torch.dtype]] = []
    hooks = [
        blk.register_forward_hook(lambda _m, _i, o, i=i: dtypes.append((f"block{i}", o.dtype)))
        for i, blk in enumerate(net.transformer.blocks)
    ]
    hooks.append(
        net.transformer.blocks[0].mixer.register_forward_hook(lambda _m, _i, o: dtypes.append(("mixer", o.dtype)))
    )
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(gene_idx, expr, depth)
    finally:
        for h in hooks:
            h.remove()
    got = dict(dtypes)
    assert got["mixer"] == torch.bfloat16  # autocast is active inside the blocks
    assert got["block0"] == torch.float32
    assert got["block1"] == torch.float32
    for name in ("cell_tokens", "gene_out", "mu", "theta", "pi_logits"):
        assert getattr(out, name).dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in out.cls_logits.values())
    with torch.no_grad():
        ref = net(gene_idx, expr, depth)
    torch.testing.assert_close(out.mu, ref.mu, rtol=0.1, atol=0.1)


def test_drop_path() -> None:
    x = torch.ones(200, 3, 4)
    layer = DropPath(0.5)
    layer.eval()
    assert layer(x) is x
    layer.train()
    torch.manual_seed(0)
    y = layer(x)
    per_sample = y.flatten(1)
    # whole samples are dropped or scaled by 1/(1-p)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample.min(1).values == per_sample.max(1).values).all()
    assert 0.3 < (per_sample[:, 0] == 0).float().mean() < 0.7
    assert DropPath(0.0).train()(x) is x


def test_dropout_and_drop_path_inactive_in_eval() -> None:
    net = _net(dropout=0.3, drop_path_rate=0.5, labels=LABELS)
    gene_idx, expr, depth = _batch()
    rates = [blk.drop_path1.p for blk in net.transformer.blocks]
    assert rates == [0.0, 0.5]  # linear schedule up to the last block
    with torch.no_grad():
        a = net(gene_idx, expr, depth)
        b = net(gene_idx, expr, depth)
    torch.testing.assert_close(a.mu, b.mu, rtol=0, atol=0)
    net.train()
    with torch.no_grad():
        c = net(gene_idx, expr, depth)
    assert not torch.allclose(a.mu, c.mu)


def test_dropout_only_on_the_residual_branches() -> None:
    """As in the flash-attn block layout, each branch output is dropped once and the residual stream never is.

    With every branch output zero (``out_proj`` and ``fc2`` zeroed), dropout has nothing to drop: training and
    evaluation give the same transformer output, ``LayerNorm(input)``.
    """
    from sc_print.nn import Transformer

    torch.manual_seed(0)
    transformer = Transformer(D, 4, 2, dropout=0.5)
    with torch.no_grad():
        for block in transformer.blocks:
            for layer in (block.mixer.out_proj, block.mlp.fc2):
                layer.weight.zero_()
                layer.bias.zero_()
    x = torch.randn(3, 7, D)
    transformer.train()
    trained = transformer(x)
    transformer.eval()
    torch.testing.assert_close(trained, transformer(x))
    torch.testing.assert_close(trained, transformer.norm(x))


# ---------------------------------------------------------------------------------------------------- losses


def _nb_params(seed: int = 0, shape: tuple[int, int] = (20, 30)) -> tuple[torch.Tensor, ...]:
    """``[cells, genes]`` counts and ZINB parameters over a wide range (tiny to large means, low to high theta)."""
    gen = torch.Generator().manual_seed(seed)
    mu = torch.exp(torch.randn(shape, generator=gen) * 2).clamp(1e-3, 1e4)
    theta = torch.exp(torch.randn(shape, generator=gen) * 1.5)
    pi_logits = torch.randn(shape, generator=gen) * 2
    x = torch.poisson(mu, generator=gen)
    x[:, ::5] = 0.0
    return x, mu, theta, pi_logits


def test_zinb_matches_scvi() -> None:
    from scvi.distributions import ZeroInflatedNegativeBinomial

    x, mu, theta, pi_logits = _nb_params()
    ours = zinb_log_likelihood(x, mu, theta, pi_logits)
    ref = ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=pi_logits, validate_args=False).log_prob(x)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(zinb_loss(x, mu, theta, pi_logits), -ref.mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(expression_loss(x, mu, theta, pi_logits), -ref.mean(), atol=1e-5, rtol=1e-5)


def test_nb_matches_scvi() -> None:
    from scvi.distributions import NegativeBinomial

    x, mu, theta, _ = _nb_params(1)
    ours = nb_log_likelihood(x, mu, theta)
    ref = NegativeBinomial(mu=mu, theta=theta, validate_args=False).log_prob(x)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nb_loss(x, mu, theta), -ref.mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(expression_loss(x, mu, theta, None), -ref.mean(), atol=1e-5, rtol=1e-5)


def test_zinb_is_nb_without_zero_inflation() -> None:
    x, mu, theta, _ = _nb_params(2)
    no_zeros = torch.full_like(mu, -30.0)
    # float32 cancellation in softplus(a) - softplus(30) limits the agreement of the zero case
    torch.testing.assert_close(
        zinb_log_likelihood(x, mu, theta, no_zeros), nb_log_likelihood(x, mu, theta), rtol=1e-3, atol=1e-4
    )


def test_mse_loss() -> None:
    x = torch.tensor([[1.0, 0.0, 3.0, 6.0], [2.0, 2.0, 0.0, 0.0]])
    # scale-free: a profile proportional to the counts has zero loss
    assert mse_loss(x, 7.0 * x).item() == pytest.approx(0.0, abs=1e-7)
    mu = torch.tensor([[2.0, 2.0, 3.0, 3.0], [1.0, 1.0, 1.0, 1.0]])

    def norm(t: torch.Tensor) -> torch.Tensor:
        return torch.log2(1 + t / t.sum(-1, keepdim=True) * 1e4)

    expected = ((norm(mu) - norm(x)) ** 2).mean()
    torch.testing.assert_close(mse_loss(x, mu), expected)
    torch.testing.assert_close(expression_loss(x, mu, None, None), expected)
    assert mse_loss(x, mu) > 0


def test_token_dissimilarity() -> None:
    eye = torch.eye(6).unsqueeze(0).repeat(4, 1, 1)  # 6 orthogonal tokens per cell
    assert token_dissimilarity(eye).item() == pytest.approx(0.0, abs=1e-7)
    same = torch.randn(4, 1, 8).repeat(1, 6, 1)
    # identical tokens: |cos| = 1 off the diagonal, averaged over all T^2 entries (paper code)
    assert token_dissimilarity(same).item() == pytest.approx(5 / 6, abs=1e-6)
    assert token_dissimilarity(-same).item() == pytest.approx(5 / 6, abs=1e-6)
    assert token_dissimilarity(torch.randn(4, 1, 8)).item() == 0.0


def test_contrastive_loss_prefers_matching_pairs() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(16, 32, generator=gen)
    matching = a + 0.05 * torch.randn(16, 32, generator=gen)
    shuffled = matching[torch.roll(torch.arange(16), 1)]
    good, bad = contrastive_loss(a, matching), contrastive_loss(a, shuffled)
    assert good < bad
    assert good < np.log(16) < bad  # better / worse than chance
    torch.testing.assert_close(contrastive_loss(a, matching), contrastive_loss(matching, a))


# ---------------------------------------------------------------------------------------------------- official layout


def _official_keys(d: int, nlayers: int, labels: list[str], *, depth_token: bool) -> set[str]:
    """State-dict keys of an official scPRINT network, as listed in docs/contributing/architecture.md."""
    keys = {"gene_encoder.embeddings.weight", "pos_encoder.pe", "class_encoder.embedding.weight"}
    encoders = ["expr_encoder", *(["depth_encoder"] if depth_token else [])]
    keys |= {f"{enc}.encoder.{i}.{p}" for enc in encoders for i in (0, 1, 4) for p in ("weight", "bias")}
    block = ["mixer.Wqkv", "mixer.out_proj", "norm1", "norm2", "mlp.fc1", "mlp.fc2"]
    keys |= {f"transformer.blocks.{i}.{m}.{p}" for i in range(nlayers) for m in block for p in ("weight", "bias")}
    keys |= {"transformer.norm.weight", "transformer.norm.bias"}
    keys |= {f"expr_decoder.fc.{i}.{p}" for i in (0, 1, 4, 5) for p in ("weight", "bias")}
    keys |= {"expr_decoder.pred_var_zero.weight", "expr_decoder.pred_var_zero.bias"}
    for label in labels:
        keys |= {
            f"cls_decoders.{label}.{m}.{p}" for m in ("decoder.0", "decoder.1", "out_layer") for p in ("weight", "bias")
        }
    return keys


@pytest.mark.parametrize("depth_atinput", [True, False])
def test_state_dict_keys_are_official(*, depth_atinput: bool) -> None:
    labels = {"cell_type_ontology_term_id": 5, "sex_ontology_term_id": 2}
    net = _net(nlayers=3, labels=labels, depth_atinput=depth_atinput)
    expected = _official_keys(D, 3, list(labels), depth_token=depth_atinput)
    assert set(net.state_dict()) == expected
    assert list(net.cls_decoders) == list(labels)  # class order = label order
    assert net.class_encoder.embedding.weight.shape == (len(labels) + 1, D)
    assert net.expr_decoder.pred_var_zero.weight.shape == (3, D)


def _official(name: str) -> tuple[dict, dict, dict[str, torch.Tensor], dict[str, np.ndarray]]:
    ckpt = CHECKPOINTS / f"{name}.ckpt"
    if not ckpt.is_file():
        pytest.skip(f"needs {ckpt}")
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    inputs = json.loads((CHECKPOINTS / f"{name}_inputs.json").read_text())
    with np.load(CHECKPOINTS / f"{name}_reference.npz") as z:
        ref = {k: z[k] for k in z.files}
    # the documented shims: 1.x gene table name, pe [G, 1, d] -> [G, d], training-only heads dropped
    state = {}
    for key, value in raw["state_dict"].items():
        if key.startswith(("mvc_decoder.", "grad_reverse_discriminator_loss.")):
            continue
        key = key.replace("gene_encoder.embedding.", "gene_encoder.embeddings.")
        state[key] = value[:, 0] if key == "pos_encoder.pe" else value
    return raw["hyper_parameters"], inputs, state, ref


@pytest.mark.parametrize("name", ["paper", "v1head", "v2"])
def test_official_checkpoints_match_reference_outputs(name: str) -> None:
    """Our network with the official tiny checkpoints reproduces the reference scPRINT outputs."""
    hparams, inputs, state, ref = _official(name)
    spec = inputs["spec"]
    labels = hparams.get("label_counts") or hparams["classes"]
    config = ScPrintConfig(
        n_genes=inputs["vocabulary_size"],
        d_model=spec["d_model"],
        nhead=spec["nhead"],
        nlayers=spec["nlayers"],
        num_heads_kv=spec["num_heads_kv"],
        layers_cls=spec["layers_cls"],
        normalization=spec["normalization"],
        depth_atinput=spec["depth_atinput"],
        labels=dict(labels),
        token_order="v2",
        dropout=0.0,
    )
    net = ScPrintNet(config).eval()
    ours = net.state_dict()
    assert set(ours) == set(state)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in state.items()}
    net.load_state_dict(state)
    assert net.token_names == inputs["reference_token_names"]

    batch = inputs["batches"]["a"]
    counts = torch.tensor(batch["counts"], dtype=torch.float32)
    gene_idx = torch.tensor(batch["gene_idx"]).expand(counts.shape[0], -1)
    depth = torch.tensor(batch["depth"], dtype=torch.float32)
    with torch.no_grad():
        out = net(gene_idx, counts, depth, req_depth=depth, depth_mult=counts.sum(1))
        m = inputs["denoise_depth_mult"]
        den = net(gene_idx, counts, depth, req_depth=depth * m, depth_mult=counts.sum(1) * m)
    tol = {"atol": 1e-4, "rtol": 1e-4}
    for field in ("mu", "theta", "pi_logits", "cell_tokens", "gene_out"):
        np.testing.assert_allclose(getattr(out, field).numpy(), ref[field], **tol, err_msg=field)
        if field in ("mu", "theta", "pi_logits"):
            np.testing.assert_allclose(getattr(den, field).numpy(), ref[f"denoise/{field}"], **tol, err_msg=field)
    for label in labels:
        np.testing.assert_allclose(out.cls_logits[label].numpy(), ref[f"logits/{label}"], **tol, err_msg=label)
    emb = net.embed(out.cell_tokens, labels=inputs["pred_embedding"])
    np.testing.assert_allclose(emb.numpy(), ref["embedding"], **tol)
