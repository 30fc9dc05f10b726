"""The hooks of ``docs/conf.py`` that make the docs build pass with ``-W -n`` (fast; the build itself runs in
``.ci/run``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[1] / "docs" / "conf.py"


@pytest.fixture(scope="module")
def conf():
    if not CONF.is_file():  # an installed sdist without docs
        pytest.skip("docs/conf.py is not here")
    spec = importlib.util.spec_from_file_location("sc_print_docs_conf", CONF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offline_by_default_and_nitpicky(conf, monkeypatch):
    assert conf.nitpicky is True
    assert conf.intersphinx_mapping == {} or conf._INTERSPHINX
    assert "triton" not in getattr(conf, "autodoc_mock_imports", [])
    assert conf.nb_execution_mode == "force"
    assert conf.nb_execution_raise_on_error is True


def test_third_party_ignores_never_cover_sc_print(conf):
    import re

    (domain, pattern), *_ = conf.nitpick_ignore_regex
    assert re.fullmatch(pattern, "anndata._core.anndata.AnnData")
    assert re.fullmatch(pattern, "numpy.ndarray")
    for ours in ("sc_print.ScPrint", "sc_print.nn.ScPrintNet", "ScPrint", "sc_print"):
        assert not re.fullmatch(pattern, ours)


def test_prose_returns_become_a_returns_field(conf):
    lines = [
        "Summary.",
        "",
        "Parameters",
        "----------",
        "x",
        "    An x.",
        "",
        "Returns",
        "-------",
        "A copy when ``copy=True``, else None. Writes",
        "",
        "`.uns['k']` : dict",
        "    The record.",
        "",
        "Examples",
        "--------",
        ">>> 1",
        "1",
    ]
    conf._prose_returns(None, "function", "f", None, None, lines)
    i = lines.index(":returns:")
    assert lines[i - 2 : i] == ["", ""]  # ends napoleon's Parameters section
    assert lines[i + 1] == "    A copy when ``copy=True``, else None. Writes"
    assert "    `.uns['k']` : dict" in lines
    assert "Returns" not in lines
    assert lines[-4:] == ["Examples", "--------", ">>> 1", "1"]


def test_typed_returns_are_left_to_napoleon(conf):
    for first in ("out : int", "DataFrame"):
        lines = ["Returns", "-------", first, "    The value."]
        before = list(lines)
        conf._prose_returns(None, "function", "f", None, None, lines)
        assert lines == before


def test_foreign_inherited_members_are_skipped(conf):
    import torch

    from sc_print.nn import ScPrintNet

    assert conf._skip_foreign(None, "class", "state_dict", torch.nn.Module.state_dict, False, {}) is True
    assert conf._skip_foreign(None, "class", "forward", ScPrintNet.forward, False, {}) is None
    assert conf._skip_foreign(None, "module", "state_dict", torch.nn.Module.state_dict, False, {}) is None
