"""Registry of published weights, downloads through pooch, load_model and the official-checkpoint reader."""

from __future__ import annotations

import functools
import logging
import shutil
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from sc_print import hub
from sc_print.hub import (
    REGISTRY,
    UnsupportedCheckpointError,
    available_models,
    cached_path,
    detect_generation,
    fetch_weights,
    load_model,
    read_official_checkpoint,
    weights_url,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

FIXTURES = Path(__file__).parent / "data" / "checkpoints"


class _NotAllowed:
    """A class that ``torch.load(weights_only=True)`` must refuse to rebuild."""

    def __init__(self) -> None:
        self.payload = 1


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving ``tmp_path / "srv"``; yields (base URL, folder)."""
    folder = tmp_path / "srv"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ckpt(layout: str) -> dict:
    return torch.load(FIXTURES / f"{layout}.ckpt", map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------------ registry
def test_registry_names_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hub.HUB_URL_ENV, raising=False)
    expected = {"small", "medium", "large", "small-v1", "medium-v1", "large-v1", "medium-v1.5", "v2-medium"}
    assert set(REGISTRY) == expected
    assert weights_url("medium") == "https://huggingface.co/jkobject/scPRINT/resolve/main/medium.ckpt"
    assert weights_url("scprint-medium-v1.5").endswith("/medium-v1.5.ckpt")
    assert weights_url("v2-medium.ckpt").endswith("/v2-medium.ckpt")
    monkeypatch.setenv(hub.HUB_URL_ENV, "http://mirror.example/scprint")
    assert weights_url("small") == "http://mirror.example/scprint/small.ckpt"
    # no invented checksums: only the partial hash of small.ckpt is published
    assert all(entry.sha256 is None for entry in REGISTRY.values())
    assert REGISTRY["small"].sha256_prefix == "269bc14b"
    assert REGISTRY["small"].size == 111_120_529


def test_available_models_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SC_PRINT_CACHE", str(tmp_path))
    table = available_models()
    assert list(table.index) == list(REGISTRY)
    assert not table["cached"].any()
    path = cached_path("small")
    assert path == tmp_path / "weights" / "small.ckpt"
    path.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "paper.ckpt", path)
    assert available_models().loc["small", "cached"]


def test_unknown_names() -> None:
    with pytest.raises(ValueError, match="neither a file nor a known model"):
        load_model("huge")
    with pytest.raises(FileNotFoundError, match="No model file"):
        load_model("missing/weights.ckpt")


# ------------------------------------------------------------------------------------------------ downloads
def test_load_model_over_http(
    http_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url, folder = http_server
    shutil.copyfile(FIXTURES / "paper.ckpt", folder / "small.ckpt")
    monkeypatch.setenv(hub.HUB_URL_ENV, url)
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="sc_print"):
        model = load_model("small", cache_dir=cache)
    assert (cache / "weights" / "small.ckpt").read_bytes() == (FIXTURES / "paper.ckpt").read_bytes()
    assert model.metadata_["name"] == "small"
    assert model.metadata_["generation"] == "1.x"
    assert len(model.genes) == 240
    # the fixture is not the published file: its hash prefix and size differ, which is reported
    assert "269bc14b" in caplog.text
    # a second call uses the cache, even with the server gone
    (folder / "small.ckpt").unlink()
    again = load_model("scprint-small", cache_dir=cache)
    assert again.genes == model.genes


def test_load_model_from_file_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror with space"
    mirror.mkdir()
    shutil.copyfile(FIXTURES / "v2.ckpt", mirror / "medium-v1.5.ckpt")
    monkeypatch.setenv(hub.HUB_URL_ENV, mirror.as_uri())
    model = load_model("medium-v1.5", cache_dir=tmp_path / "cache")
    assert model.metadata_["generation"] == "2.x"
    assert model.metadata_["layout"]["depth"] == "decoder"
    assert model.module.config.num_heads_kv == 2
    missing = tmp_path / "empty"
    missing.mkdir()
    monkeypatch.setenv(hub.HUB_URL_ENV, missing.as_uri())
    with pytest.raises(ConnectionError, match="medium-v1.ckpt"):
        fetch_weights("medium-v1", cache_dir=tmp_path / "cache")


def test_offline_failure_says_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"
    monkeypatch.setenv(hub.HUB_URL_ENV, url)
    cache = tmp_path / "cache"
    with pytest.raises(ConnectionError) as info:
        load_model("medium", cache_dir=cache)
    message = str(info.value)
    assert f"{url}medium.ckpt" in message
    assert str(cache / "weights" / "medium.ckpt") in message
    assert not list((cache / "weights").glob("*")), "no partial download may stay in the cache"
    # placing the file by hand is enough
    shutil.copyfile(FIXTURES / "v1head.ckpt", cache / "weights" / "medium.ckpt")
    assert load_model("medium", cache_dir=cache).metadata_["generation"] == "2.x"


def test_unsupported_url_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hub.HUB_URL_ENV, "ftp://127.0.0.1/weights/")
    with pytest.raises(ValueError, match="Unsupported URL scheme"):
        fetch_weights("small", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ local files
def test_load_model_local_paths(tmp_path: Path) -> None:
    model = load_model(FIXTURES / "v1head.ckpt")
    assert model.metadata_["name"] == "v1head"
    assert model.module.training is False
    model.save(tmp_path / "saved")
    for target in (tmp_path / "saved", tmp_path / "saved" / "model.pt", str(tmp_path / "saved")):
        loaded = load_model(target)
        assert loaded.genes == model.genes
        assert loaded.module.config == model.module.config


def test_default_model_missing_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sc_print.hub import _load

    monkeypatch.setattr(_load, "_default_model_dir", lambda: tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="embedded default model"):
        load_model("default")


# ------------------------------------------------------------------------------------------------ reader
@pytest.mark.parametrize(
    ("layout", "generation", "depth", "kv"),
    [("paper", "1.x", "token", 4), ("v1head", "2.x", "token", 2), ("v2", "2.x", "decoder", 2)],
)
def test_generation_and_layout(layout: str, generation: str, depth: str, kv: int) -> None:
    ckpt = _ckpt(layout)
    assert detect_generation(ckpt["state_dict"], ckpt["hyper_parameters"]) == generation
    ck = read_official_checkpoint(FIXTURES / f"{layout}.ckpt", compute_sha256=False)
    assert ck.generation == generation
    assert ck.layout["depth"] == depth
    assert ck.layout["num_heads_kv"] == kv
    assert ck.layout["dropped"] == ["grad_reverse_discriminator_loss", "mvc_decoder"]
    assert ck.genes == [str(g) for g in ckpt["hyper_parameters"]["genes"]]  # vocabulary as stored, not pruned
    assert ck.net.training is False
    assert ck.sha256 is None


@pytest.mark.parametrize(
    ("edit", "feature"),
    [
        (
            lambda c: c["state_dict"].update({"cell_transformer.blocks.0.mixer.Wq.weight": torch.zeros(2, 2)}),
            "cell-specific blocks",
        ),
        (lambda c: c["hyper_parameters"].update({"use_metacell_token": True}), "metacell token"),
        (lambda c: c["state_dict"].update({"bottleneck_mlps.cell_type.w": torch.zeros(1)}), "FSQ compression"),
        (lambda c: c["hyper_parameters"].update({"genes": {"NCBITaxon:9606": ["ENSG00000000003"]}}), "scPRINT-2"),
        (lambda c: c["hyper_parameters"].update({"expr_emb_style": "binned_pos"}), "'binned_pos' expression"),
        (lambda c: c["hyper_parameters"].update({"normalization": "both"}), "normalisation 'both'"),
    ],
)
def test_unsupported_layouts_name_the_feature(tmp_path: Path, edit: object, feature: str) -> None:
    ckpt = _ckpt("v2")
    edit(ckpt)
    path = tmp_path / "odd.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(UnsupportedCheckpointError, match=feature) as info:
        read_official_checkpoint(path)
    assert "does not implement" in str(info.value)


def test_inconsistent_checkpoints(tmp_path: Path) -> None:
    ckpt = _ckpt("paper")
    ckpt["hyper_parameters"]["genes"] = ckpt["hyper_parameters"]["genes"][:-1]
    torch.save(ckpt, tmp_path / "genes.ckpt")
    with pytest.raises(UnsupportedCheckpointError, match="vocabulary cannot be recovered"):
        read_official_checkpoint(tmp_path / "genes.ckpt")
    ckpt = _ckpt("paper")
    ckpt["hyper_parameters"]["nhead"] = 3
    torch.save(ckpt, tmp_path / "heads.ckpt")
    with pytest.raises(UnsupportedCheckpointError, match="nhead=3"):
        read_official_checkpoint(tmp_path / "heads.ckpt")
    ckpt = _ckpt("paper")
    del ckpt["state_dict"]["depth_encoder.encoder.0.weight"]
    torch.save(ckpt, tmp_path / "depth.ckpt")
    with pytest.raises(UnsupportedCheckpointError, match="neither a depth token nor"):
        read_official_checkpoint(tmp_path / "depth.ckpt")


def test_leaf_counts_come_from_the_weights(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpt = _ckpt("v2")
    ckpt["hyper_parameters"]["label_counts"]["cell_type_ontology_term_id"] = 99
    torch.save(ckpt, tmp_path / "counts.ckpt")
    with caplog.at_level(logging.WARNING, logger="sc_print"):
        ck = read_official_checkpoint(tmp_path / "counts.ckpt")
    assert ck.config.labels["cell_type"] == 5
    assert "99" in caplog.text


def test_refuses_to_unpickle(tmp_path: Path) -> None:
    ckpt = _ckpt("paper")
    ckpt["hyper_parameters"]["callback"] = _NotAllowed()
    torch.save(ckpt, tmp_path / "pickled.ckpt")
    with pytest.raises(ValueError, match="refusal is for your safety") as info:
        read_official_checkpoint(tmp_path / "pickled.ckpt")
    assert "weights_only" not in str(info.value)
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    with pytest.raises(ValueError, match=r"not an official scPRINT checkpoint \(Lightning .ckpt\)"):
        read_official_checkpoint(tmp_path / "tensor.ckpt")
    with pytest.raises(FileNotFoundError):
        read_official_checkpoint(tmp_path / "absent.ckpt")


def test_missing_positions_give_no_position_signal(tmp_path: Path) -> None:
    ckpt = _ckpt("v1head")
    del ckpt["state_dict"]["pos_encoder.pe"]
    ckpt["hyper_parameters"]["gene_pos_enc"] = None
    torch.save(ckpt, tmp_path / "nopos.ckpt")
    ck = read_official_checkpoint(tmp_path / "nopos.ckpt")
    assert torch.count_nonzero(ck.net.pos_encoder.pe) == 0


def test_official_weights_run_the_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry name fetched from a file:// mirror loads and runs sp.tl.embed / denoise / grn."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    import sc_print as scp

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copyfile(FIXTURES / "v1head.ckpt", mirror / "medium.ckpt")
    monkeypatch.setenv(hub.HUB_URL_ENV, mirror.as_uri())
    model = scp.load_model("medium", cache_dir=tmp_path / "cache")
    human = [g for g in model.genes if g.startswith("ENSG")][:120]
    gen = np.random.default_rng(0)
    counts = sp.csr_matrix(gen.poisson(1.5, size=(40, len(human))).astype(np.float32))
    counts[counts.sum(1).A1 == 0, 0] = 1
    adata = ad.AnnData(counts, var=pd.DataFrame(index=human))
    adata.obs_names = [f"cell{i}" for i in range(adata.n_obs)]
    scp.pp.prepare(adata, model=model, min_genes=100)
    assert adata.var["scprint_in_vocab"].all()
    scp.tl.embed(adata, model=model, max_len=64, batch_size=16)
    assert adata.obsm["X_scprint"].shape == (40, model.net.config.d_model)
    assert adata.obs["scprint_pred_cell_type"].notna().all()
    scp.tl.denoise(adata, model=model, genes="all", batch_size=16)
    assert adata.layers["scprint_denoised"].shape == adata.shape
    scp.tl.grn(adata, model=model, genes="expressed", n_genes=60)
    assert adata.varp["scprint_grn"].nnz > 0
    assert adata.uns["scprint_grn"]["model"]["name"] == "medium"


# ------------------------------------------------------------------------------------------------ pooch and devices
def test_downloads_go_through_pooch_and_its_hash_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import pooch

    from sc_print._io import file_sha256
    from sc_print.hub import _registry

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copyfile(FIXTURES / "paper.ckpt", mirror / "small.ckpt")
    monkeypatch.setenv(hub.HUB_URL_ENV, mirror.as_uri())
    calls: list[str] = []
    retrieve = pooch.retrieve

    def spy(url: str, *args: object, **kwargs: object) -> str:
        calls.append(url)
        return retrieve(url, *args, **kwargs)

    monkeypatch.setattr(pooch, "retrieve", spy)
    # a wrong published hash: pooch refuses the file and leaves nothing in the cache
    wrong = dataclasses.replace(REGISTRY["small"], sha256="0" * 64, sha256_prefix=None, size=None)
    monkeypatch.setitem(_registry.REGISTRY, "small", wrong)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="hash"):
        fetch_weights("small", cache_dir=cache)
    assert calls == [mirror.as_uri() + "/small.ckpt"]
    assert not list((cache / "weights").iterdir())
    # the right hash: downloaded, checked, cached; the second call does not download again
    digest = file_sha256(FIXTURES / "paper.ckpt")
    assert len(digest) == 64
    assert digest == pooch.file_hash(str(FIXTURES / "paper.ckpt"), alg="sha256")
    monkeypatch.setitem(_registry.REGISTRY, "small", dataclasses.replace(wrong, sha256=digest))
    path = fetch_weights("small", cache_dir=cache)
    assert path.read_bytes() == (FIXTURES / "paper.ckpt").read_bytes()
    assert fetch_weights("small", cache_dir=cache) == path
    assert len(calls) == 2
    assert load_model("small", cache_dir=cache).metadata_["sha256"] == digest


def test_one_file_downloader_for_hub_and_datasets(tmp_path: Path) -> None:
    from sc_print import _io
    from sc_print.datasets import _datasets

    source = tmp_path / "a file.bin"
    source.write_bytes(b"payload")
    out = tmp_path / "out.bin"
    assert _io.file_downloader(source.as_uri(), out, None, check_only=True) is True
    _io.file_downloader(source.as_uri(), out, None)
    assert out.read_bytes() == b"payload"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _io.file_downloader((tmp_path / "absent").as_uri(), out, None)
    with pytest.raises(ValueError, match="Only local file://"):
        _io.file_downloader("file://example.org/x.bin", out, None)
    assert not hasattr(_datasets, "_file_downloader")
    assert not hasattr(hub._registry, "_file_downloader")
    assert not hasattr(hub._registry, "sha256sum")


def test_load_model_device_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = FIXTURES / "v1head.ckpt"
    model = load_model(path, accelerator="cpu", device=0)
    assert next(model.net.parameters()).device == torch.device("cpu")
    assert next(load_model(path, device="cpu").net.parameters()).device.type == "cpu"
    assert next(load_model(path, device=torch.device("cpu")).net.parameters()).device.type == "cpu"
    assert load_model(path) is not load_model(path)  # a new model each call, never a shared one moved in place
    for kwargs, error, match in [
        ({"accelerator": "cpu", "device": 2}, ValueError, "no device index 2"),
        ({"accelerator": "cpu", "device": "cuda:1"}, ValueError, "contradicts"),
        ({"device": -1}, ValueError, ">= 0"),
        ({"device": True}, TypeError, "device"),
        ({"device": "tpu:0"}, ValueError, "device"),
        ({"accelerator": "quantum"}, ValueError, "Unknown accelerator"),
    ]:
        with pytest.raises(error, match=match):
            load_model(path, **kwargs)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_model(path, accelerator="gpu")
    with pytest.raises(TypeError, match="model name or a path"):
        load_model(3)


def test_device_index_is_checked_against_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from sc_print._device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("gpu", 1) == torch.device("cuda", 1)
    assert resolve_device("auto", "cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda", "1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"CUDA device index 2 does not exist: this machine has 2 CUDA device\(s\)"):
        resolve_device("gpu", 2)
    with pytest.raises(ValueError, match="index 5 does not exist"):
        resolve_device("auto", "cuda:5")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert resolve_device("auto") == torch.device("cpu")  # never MPS unless asked for
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("auto", "cuda")
