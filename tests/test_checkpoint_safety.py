"""Files that are not checkpoints, or not safe ones, get a clear error naming the file, from every reader.

The readers are ``ScPrint.load`` (saved models), ``sp.load_model`` (any model file) and
``read_official_checkpoint`` (official Lightning ``.ckpt`` files). None may surface torch's own errors
(``UnpicklingError``, ``KeyError``, ``IndexError``, or its advice to retry with ``weights_only=False``).
"""

from __future__ import annotations

import copy
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from sc_print.hub import UnsupportedCheckpointError, load_model, read_official_checkpoint
from sc_print.model import ScPrint
from sc_print.nn import ScPrintConfig

if TYPE_CHECKING:
    from collections.abc import Callable

FIXTURES = Path(__file__).parent / "data" / "checkpoints"

#: text of torch's own errors that must never reach the user
TORCH_TEXT = ("weights_only", "WeightsUnpickler", "Unsupported operand", "PytorchStreamReader", "enforce fail")


class Payload:
    """A class ``torch.load(weights_only=True)`` must refuse to rebuild (its unpickling would run code)."""

    def __init__(self) -> None:
        self.value = 1

    def __reduce__(self) -> tuple:
        return (os.getcwd, ())  # what a malicious pickle does: call a function at load time


def _load_saved(path: Path) -> object:
    return ScPrint.load(path, accelerator="cpu")


def _load_any(path: Path) -> object:
    return load_model(path, accelerator="cpu")


def _read_official(path: Path) -> object:
    return read_official_checkpoint(path, compute_sha256=False)


READERS: dict[str, Callable[[Path], object]] = {
    "ScPrint.load": _load_saved,
    "load_model": _load_any,
    "read_official_checkpoint": _read_official,
}


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The ``ScPrint.save`` state of a tiny random-weight model (as written to ``model.pt``)."""
    genes = ["ENSG00000000003", "ENSG00000000005", "ENSG00000000419", "ENSG00000000457", "ENSG00000000460"]
    torch.manual_seed(0)
    model = ScPrint.from_net(config=ScPrintConfig.preset("tiny", n_genes=len(genes)), state_dict=None, genes=genes)
    folder = tmp_path_factory.mktemp("saved")
    model.save(folder)
    return torch.load(folder / "model.pt", map_location="cpu", weights_only=True)


def _check_message(err: BaseException, path: Path) -> str:
    message = str(err)
    assert str(path) in message, message
    for text in TORCH_TEXT:
        assert text not in message, message
    return message


def _write(kind: str, path: Path) -> Path:
    if kind == "random bytes":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "a zip archive, not a torch file")
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "list":
        torch.save([1, 2, 3], path)
    else:
        raise AssertionError(kind)
    return path


# ---------------------------------------------------------------------------------------------- not a checkpoint
@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("random bytes", "cannot be read as a torch.save file"),
        ("text", "cannot be read as a torch.save file"),
        ("empty", "the file is empty"),
        ("zip", "cannot be read as a torch.save file"),
        ("tensor", "not a dict"),
        ("list", "not a dict"),
    ],
)
def test_not_a_checkpoint_names_the_file(tmp_path: Path, reader: str, kind: str, says: str) -> None:
    path = _write(kind, tmp_path / ("model.pt" if reader == "ScPrint.load" else "weights.ckpt"))
    with pytest.raises(ValueError, match=says) as info:
        READERS[reader](path)
    assert type(info.value) in (ValueError, UnsupportedCheckpointError)
    _check_message(info.value, path)


def test_missing_files_and_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No saved sc_print model"):
        ScPrint.load(tmp_path)  # a folder without model.pt
    with pytest.raises(FileNotFoundError, match="No checkpoint file"):
        read_official_checkpoint(tmp_path / "absent.ckpt")
    with pytest.raises(FileNotFoundError, match="No model file"):
        load_model(tmp_path / "absent.ckpt")


# ---------------------------------------------------------------------------------------------- refused pickles
@pytest.mark.parametrize("reader", list(READERS))
def test_pickle_in_the_saved_layout_is_refused_for_safety(tmp_path: Path, saved_state: dict, reader: str) -> None:
    state = copy.deepcopy(saved_state)
    state["metadata"] = {"name": "evil", "payload": Payload()}
    path = tmp_path / ("model.pt" if reader != "read_official_checkpoint" else "evil.ckpt")
    torch.save(state, path)
    with pytest.raises(ValueError, match="Refused to load") as info:
        READERS[reader](path)
    message = _check_message(info.value, path)
    assert "safety" in message
    assert "posix.getcwd" in message or "nt.getcwd" in message  # says what it would have run
    assert "weights_only=False" not in message


def test_pickle_in_an_official_checkpoint_is_refused(tmp_path: Path) -> None:
    ckpt = torch.load(FIXTURES / "paper.ckpt", map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["callback"] = Payload()
    path = tmp_path / "paper.ckpt"
    torch.save(ckpt, path)
    for reader in (_read_official, _load_any):
        with pytest.raises(ValueError, match="for your safety") as info:
            reader(path)
        _check_message(info.value, path)


# ---------------------------------------------------------------------------------------------- wrong layouts
@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda s: s.pop("genes"), r"has no \['genes'\]"),
        (lambda s: s.pop("state_dict"), r"has no \['state_dict'\]"),
        (lambda s: s.update(format_version=99), "format 99 is not supported"),
        (lambda s: s.update(config={"n_genes": 5, "colour": "red"}), "Unknown ScPrintConfig fields"),
        (lambda s: s.update(config="tiny"), "'config' is not a dict"),
        (lambda s: s.update(genes=[1, 2, 3, 4, 5]), "'genes' is not ids"),
        (lambda s: s.update(state_dict={"a": [1.0]}), "'state_dict' is not tensors"),
        (lambda s: s["config"].update(n_genes=7), "is not a usable"),
        (lambda s: s["state_dict"].pop("transformer.blocks.0.mixer.Wqkv.weight"), "Weights do not match"),
        (lambda s: s.update(hierarchies={"cell_type": {"x": 1}}), "is not a usable"),
    ],
)
def test_saved_model_of_the_wrong_layout(tmp_path: Path, saved_state: dict, edit: Callable, says: str) -> None:
    state = copy.deepcopy(saved_state)
    edit(state)
    path = tmp_path / "model.pt"
    torch.save(state, path)
    for reader in (_load_saved, _load_any):
        with pytest.raises(ValueError, match=says) as info:
            reader(path)
        assert type(info.value) is ValueError
        _check_message(info.value, path)


def _drop(key: str) -> Callable[[dict], None]:
    return lambda c: c["state_dict"].pop(key)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda c: c.pop("hyper_parameters"), r"has no \['hyper_parameters'\]"),
        (lambda c: c.update(state_dict=[1, 2]), "'state_dict' is a list"),
        (lambda c: c.update(state_dict={"foo.weight": torch.zeros(2)}), "No gene embedding table"),
        (_drop("transformer.blocks.0.mixer.Wqkv.weight"), "transformer.blocks.0.mixer.Wqkv.weight"),
        (_drop("expr_decoder.fc.0.weight"), "expr_decoder.fc.0.weight"),
        (_drop("class_encoder.embedding.weight"), "class_encoder.embedding.weight"),
        (lambda c: c["hyper_parameters"].update(genes=7), "its layout is not one sc_print reads"),
        (lambda c: c["state_dict"].update({"gene_encoder.embedding.weight": torch.zeros(3)}), "not one sc_print"),
    ],
)
def test_official_checkpoint_of_the_wrong_layout(tmp_path: Path, edit: Callable, says: str) -> None:
    ckpt = torch.load(FIXTURES / "paper.ckpt", map_location="cpu", weights_only=True)
    edit(ckpt)
    path = tmp_path / "odd.ckpt"
    torch.save(ckpt, path)
    for reader in (_read_official, _load_any):
        with pytest.raises(ValueError, match=says) as info:
            reader(path)
        _check_message(info.value, path)


def test_each_reader_points_to_the_other_layout(tmp_path: Path, saved_state: dict) -> None:
    official = tmp_path / "model.pt"
    official.write_bytes((FIXTURES / "paper.ckpt").read_bytes())
    with pytest.raises(ValueError, match=r"official scPRINT \(Lightning\) checkpoint.*load_model"):
        ScPrint.load(official)
    saved = tmp_path / "saved.ckpt"
    torch.save(saved_state, saved)
    with pytest.raises(ValueError, match="saved by ScPrint.save"):
        read_official_checkpoint(saved)


def test_load_model_tells_files_apart_by_content(tmp_path: Path, saved_state: dict) -> None:
    """A saved model under any file name, and a legacy (non-zip) torch file, load through load_model."""
    renamed = tmp_path / "my_model.ckpt"
    torch.save(saved_state, renamed)
    model = load_model(renamed, accelerator="cpu")
    assert model.genes == saved_state["genes"]
    legacy = tmp_path / "legacy.pt"
    torch.save(saved_state, legacy, _use_new_zipfile_serialization=False)
    assert load_model(legacy, accelerator="cpu").genes == saved_state["genes"]
    # and an official checkpoint named model.pt inside a folder gets the pointer to load_model
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "model.pt").write_bytes((FIXTURES / "v2.ckpt").read_bytes())
    with pytest.raises(ValueError, match="load_model"):
        load_model(folder)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    data = (FIXTURES / "paper.ckpt").read_bytes()
    path = tmp_path / "half.ckpt"
    path.write_bytes(data[: len(data) // 2])
    for reader in (_read_official, _load_any):
        with pytest.raises(ValueError, match="cannot be read as a torch.save file") as info:
            reader(path)
        _check_message(info.value, path)


# ---------------------------------------------------------------------------------------------- writers
def test_atomic_writes_keep_the_old_file_on_failure(tmp_path: Path) -> None:
    from sc_print._io import atomic_target, check_free

    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(FileExistsError, match=r"table.csv already exists; pass overwrite=True"):
        check_free([target, tmp_path / "new.csv"], overwrite=False)
    check_free([target], overwrite=True)
    check_free([tmp_path / "new.csv"], overwrite=False)

    def write_half() -> None:
        with atomic_target(target) as tmp:
            tmp.write_text("half")
            msg = "interrupted"
            raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="interrupted"):
        write_half()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    with atomic_target(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.suffix == ".csv"  # writers that pick the format from the extension still work
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_demo_refuses_to_overwrite_its_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sc_print.__main__ import main
    from sc_print._demo import demo

    out = tmp_path / "demo.h5ad"
    out.write_bytes(b"the user's own file")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        demo(out=out)  # refused before anything runs
    assert main(["demo", "--out", str(out)]) == 2  # the command line: one line, exit code 2
    assert "overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"the user's own file"


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads any file")
def test_unreadable_file_says_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(PermissionError):
        ScPrint.load(path)


def test_corrupt_cached_download_names_the_cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sc_print import hub

    monkeypatch.setenv(hub.HUB_URL_ENV, (tmp_path / "no_mirror").as_uri())
    cached = hub.cached_path("medium", tmp_path / "cache")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"<html>rate limited</html>")  # what a proxy may serve instead of the weights
    with pytest.raises(ValueError, match="delete the file and fetch it again") as info:
        load_model("medium", cache_dir=tmp_path / "cache", accelerator="cpu")
    _check_message(info.value, cached)
