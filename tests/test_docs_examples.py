"""The examples in the docstrings of sc_print run and print what they show (stdlib doctest, offline).

This is ``pytest --doctest-modules`` for the installed package, inside the README's test command: every module
of ``sc_print`` is imported normally and each docstring example is run with ``ELLIPSIS`` and
``NORMALIZE_WHITESPACE``. Examples marked ``# doctest: +SKIP`` (those that download weights or data) do not run.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import sc_print

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules() -> list[str]:
    names = [sc_print.__name__]
    names += [
        m.name for m in pkgutil.walk_packages(sc_print.__path__, prefix="sc_print.") if m.name != "sc_print.__main__"
    ]
    return sorted(names)


def _tests(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module, name) if any(not e.options.get(doctest.SKIP) for e in t.examples)]


MODULES_WITH_EXAMPLES = [name for name in _modules() if _tests(name)]


def test_some_examples_run():
    """The collection is not silently empty (the network tools, for one, have examples that run)."""
    assert "sc_print.tl._hubs" in MODULES_WITH_EXAMPLES
    assert "sc_print.get._network" in MODULES_WITH_EXAMPLES


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples(name):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in _tests(name):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)


def test_a_wrong_example_fails():
    """The runner used above reports a wrong output (so the test above can fail)."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(">>> 1 + 1\n3\n", {}, "wrong", None, 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=lambda _: None)
    assert runner.summarize(verbose=False).failed == 1
