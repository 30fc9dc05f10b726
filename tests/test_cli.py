"""The ``sc-print`` command line: tasks on h5ad/zarr files, outputs, one-line errors with exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pytest

from sc_print import _cli, _distributed
from sc_print._cli import main

if TYPE_CHECKING:
    from pathlib import Path

two_cpus = pytest.mark.skipif(_distributed.available_devices("cpu") < 2, reason="needs 2 CPU cores")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, toy_model) -> Path:
    path = tmp_path_factory.mktemp("model") / "toy"
    toy_model.save(path)
    return path


@pytest.fixture
def h5ad(tmp_path: Path, toy_counts_adata) -> Path:
    adata = toy_counts_adata.copy()
    adata.obsm["X_other"] = np.ones((adata.n_obs, 2), dtype=np.float32)
    adata.layers["lognorm"] = np.log1p(adata.X)
    adata.uns["note"] = "keep me"
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    return path


def _err(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_embed_h5ad_keeps_input_and_adds_slots(h5ad: Path, model_dir: Path, toy_model, tmp_path: Path, capsys):
    out = tmp_path / "out.h5ad"
    before = h5ad.read_bytes()
    assert main(["embed", str(h5ad), "-o", str(out), "--model", str(model_dir), "--accelerator", "cpu"]) == 0
    assert h5ad.read_bytes() == before  # input untouched
    printed = capsys.readouterr().out
    assert "wrote" in printed
    assert ".obsm['X_scprint']" in printed
    result, source = ad.read_h5ad(out), ad.read_h5ad(h5ad)
    assert list(result.obs_names) == list(source.obs_names)
    np.testing.assert_array_equal(result.obsm["X_other"], source.obsm["X_other"])
    assert result.uns["note"] == "keep me"
    assert "lognorm" in result.layers
    assert "scprint_pred_cell_type" in result.obs
    assert "cell_type" in result.obs
    expected = toy_model.get_latent_representation(source, accelerator="cpu")
    np.testing.assert_allclose(result.obsm["X_scprint"], expected, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_embed_zarr(tmp_path: Path, toy_counts_adata, model_dir: Path, toy_model):
    src = tmp_path / "in.zarr"
    toy_counts_adata.write_zarr(src)
    out = tmp_path / "out.zarr"
    assert main(["embed", str(src), "-o", str(out), "--model", str(model_dir), "--accelerator", "cpu"]) == 0
    result = ad.read_zarr(out)
    expected = toy_model.get_latent_representation(toy_counts_adata, accelerator="cpu")
    np.testing.assert_allclose(result.obsm["X_scprint"], expected, atol=1e-5)
    assert "X_scprint" not in ad.read_zarr(src).obsm


def test_prepare_then_grn_then_hubs(h5ad: Path, model_dir: Path, tmp_path: Path):
    prepared, grn, hubs = tmp_path / "p.h5ad", tmp_path / "g.h5ad", tmp_path / "h.h5ad"
    assert main(["prepare", str(h5ad), "-o", str(prepared), "--model", str(model_dir)]) == 0
    assert "scprint_prepare" in ad.read_h5ad(prepared).uns
    args = ["grn", str(prepared), "-o", str(grn), "--model", str(model_dir), "--groupby", "cell_type"]
    assert main([*args, "--n-genes", "40", "--accelerator", "cpu"]) == 0
    result = ad.read_h5ad(grn)
    assert len(result.uns["scprint_grn"]["varp_keys"]) == 3
    assert "scprint_prepare" in result.uns
    assert main(["hubs", str(grn), "-o", str(hubs)]) == 0
    assert any(k.startswith("scprint_hubs") for k in ad.read_h5ad(hubs).uns) or ad.read_h5ad(hubs).n_vars


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["embed", "{missing}", "-o", "{out}"], "does not exist"),
        (["embed", "{in}", "-o", "{in}"], "is the input"),
        (["embed", "{in}", "-o", "{tmp}/out.csv"], "must end in .h5ad or .zarr"),
        (["embed", "{in}", "-o", "{tmp}/out.zarr"], "same format"),
        (["embed", "{in}", "-o", "{out}", "--layer", "lognorm", "--accelerator", "cpu"], "raw counts|counts"),
        (["embed", "{in}", "-o", "{out}", "--layer", "nope"], "layer 'nope' not found"),
        (["embed", "{in}", "-o", "{out}", "--model", "no-such-model"], "Unknown model|no-such-model"),
        (["embed", "{in}", "-o", "{out}", "--accelerator", "cpu", "--devices", "4096"], "this machine has"),
        (["teleport", "{in}", "-o", "{out}"], "invalid choice"),
        (["embed", "{in}"], "required"),
    ],
)
def test_bad_input_one_line_exit_2(args, match, h5ad: Path, model_dir: Path, tmp_path: Path, capsys):
    paths = {"in": str(h5ad), "missing": str(tmp_path / "missing.h5ad"), "out": str(tmp_path / "o.h5ad")}
    argv = [a.format(tmp=tmp_path, **paths) for a in args]
    if "--layer" in argv:
        argv += ["--model", str(model_dir)]
    assert _code(argv) == 2
    err = _err(capsys)
    assert err.startswith("sc-print"), err
    assert re.search(match, err), err
    assert not (tmp_path / "o.h5ad").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return int(exc.code)


def test_existing_output_needs_overwrite_and_survives_failure(h5ad: Path, model_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "out.h5ad"
    out.write_bytes(b"precious")
    assert main(["embed", str(h5ad), "-o", str(out), "--model", str(model_dir)]) == 2
    assert "--overwrite" in _err(capsys)
    # a failing run with --overwrite (counts in a layer that is not counts) leaves the old file as it was
    argv = ["embed", str(h5ad), "-o", str(out), "--model", str(model_dir), "--layer", "lognorm", "--overwrite"]
    assert main([*argv, "--accelerator", "cpu"]) == 2
    assert out.read_bytes() == b"precious"
    argv = ["embed", str(h5ad), "-o", str(out), "--model", str(model_dir), "--overwrite", "--accelerator", "cpu"]
    assert main(argv) == 0
    assert "X_scprint" in ad.read_h5ad(out).obsm


def test_write_failure_leaves_no_output(h5ad: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    adata = _cli.open_input(h5ad, layer=None)
    adata.obsm["X_new"] = np.zeros((adata.n_obs, 3))
    out = tmp_path / "out.h5ad"

    def broken(*args, **kwargs):
        msg = "disk full"
        raise OSError(msg)

    monkeypatch.setattr("anndata.io.write_elem", broken)
    with pytest.raises(OSError, match="disk full"):
        _cli.write_output(h5ad, out, adata, [("obsm", "X_new")])
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_open_input_is_lazy(h5ad: Path):
    from anndata.abc import CSRDataset

    adata = _cli.open_input(h5ad, layer=None)
    assert isinstance(adata.X, CSRDataset)
    assert not adata.obsm
    assert not adata.layers


def test_help_has_examples(capsys):
    for task in ("embed", "denoise", "grn", "hubs", "prepare"):
        with pytest.raises(SystemExit) as exc:
            main([task, "--help"])
        assert exc.value.code == 0
        assert f"sc-print {task}" in capsys.readouterr().out


def test_models_lists_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "default model" in out
    assert "medium" in out


def test_python_m_exit_code(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "sc_print", "embed", str(tmp_path / "none.h5ad"), "-o", str(tmp_path / "o.h5ad")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "does not exist" in proc.stderr


@two_cpus
@pytest.mark.slow
def test_embed_two_processes_same_as_one(h5ad: Path, model_dir: Path, tmp_path: Path):
    one, two = tmp_path / "one.h5ad", tmp_path / "two.h5ad"
    common = ["--model", str(model_dir), "--accelerator", "cpu", "--max-len", "64"]
    assert main(["embed", str(h5ad), "-o", str(one), *common]) == 0
    assert main(["embed", str(h5ad), "-o", str(two), *common, "--devices", "2"]) == 0
    a, b = ad.read_h5ad(one), ad.read_h5ad(two)
    assert list(a.obs_names) == list(b.obs_names)
    np.testing.assert_allclose(b.obsm["X_scprint"], a.obsm["X_scprint"], atol=1e-5, rtol=0)
