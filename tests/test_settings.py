"""``sp.settings``: verbosity bridged to scanpy, progress bars shown by default, one logging handler."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
import scanpy as sc
from _network_fixtures import make_grn_adata

import sc_print as sp
from sc_print._utils import log_written, track

if TYPE_CHECKING:
    from collections.abc import Iterator

child = logging.getLogger("sc_print.tl._probe")  # module loggers are children of "sc_print"


@pytest.fixture(autouse=True)
def _scanpy_verbosity() -> Iterator[None]:
    saved = sc.settings.verbosity
    sc.settings.verbosity = "warning"  # scanpy's default
    yield
    sc.settings.verbosity = saved


def test_default_follows_scanpy_default(capsys):
    assert sp.settings.verbosity == logging.WARNING
    child.info("an info line")
    child.warning("a warning line")
    err = capsys.readouterr().err
    assert "an info line" not in err
    assert "WARNING: a warning line" in err


def test_follows_scanpy_changed_after_import(capsys):
    sc.settings.verbosity = "info"  # nothing set on sp.settings
    assert sp.settings.verbosity == logging.INFO
    child.info("now visible")
    child.debug("still hidden")
    assert capsys.readouterr().err == "now visible\n"
    sc.settings.verbosity = 0  # scanpy: errors only
    child.warning("hidden warning")
    assert capsys.readouterr().err == ""
    assert not sp.settings.show_progress


def test_own_verbosity_overrides_scanpy(capsys):
    sp.settings.verbosity = "error"
    sc.settings.verbosity = "debug"
    child.warning("hidden")
    assert capsys.readouterr().err == ""
    sp.settings.verbosity = None  # back to following scanpy
    child.debug("shown at scanpy debug")
    assert "shown at scanpy debug" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("info", logging.INFO),
        ("WARNING", logging.WARNING),
        ("hint", 15),
        (logging.DEBUG, logging.DEBUG),
        (2, logging.INFO),  # a scanpy verbosity
        (0, logging.ERROR),
    ],
)
def test_verbosity_values(value, level):
    sp.settings.verbosity = value
    assert sp.settings.verbosity == level


@pytest.mark.parametrize("value", ["loud", True, -1, 1.5])
def test_verbosity_bad_values(value):
    with pytest.raises(ValueError, match="verbosity"):
        sp.settings.verbosity = value
    assert sp.settings.verbosity == logging.WARNING  # unchanged


def test_one_handler_no_propagation():
    logger = logging.getLogger("sc_print")
    ours = [h for h in logger.handlers if type(h).__module__ == "sc_print._settings"]
    assert len(ours) == 1  # (pytest adds its capture handlers next to it)
    assert logger.propagate is False  # like scanpy's and scvi-tools' loggers: no duplicates via the root logger


def test_progress_bar_shown_by_default_and_silenced(capsys):
    assert sp.settings.show_progress  # scanpy's default verbosity (warning)
    assert list(track(range(3), total=3, description="probe work")) == [0, 1, 2]
    assert "probe work" in capsys.readouterr().err
    sp.settings.verbosity = "error"
    assert list(track(range(3), description="silent work")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    sp.settings.verbosity = None
    sp.settings.progress_bar = False
    assert list(track(range(3), description="no bar")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_log_written_at_info(capsys):
    log_written("uns", "x")
    assert capsys.readouterr().err == ""
    sc.settings.verbosity = "info"
    log_written("uns", "x")
    assert capsys.readouterr().err == "added `.uns['x']`\n"


def test_network_tools_log_what_they_write_and_show_progress(capsys):
    adata = make_grn_adata()
    sp.tl.hubs(adata, scores="degree")
    err = capsys.readouterr().err
    assert "hub scores" in err  # the bar, at the default verbosity
    assert "added" not in err
    sp.settings.verbosity = "info"
    sp.settings.progress_bar = False
    sp.tl.communities(adata, key="scprint_grn_B cell")
    err = capsys.readouterr().err
    assert "added `.var['scprint_grn_B cell_community']`" in err
    assert "added `.uns['scprint_grn_B cell_communities']`" in err
