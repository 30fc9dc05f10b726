"""Sphinx configuration of the sc_print documentation.

Built with warnings as errors and ``nitpicky`` cross-references (``.ci/run``, Read the Docs)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The build is offline by default: intersphinx (links into the docs of numpy, anndata, ...) needs the network,
so it is on only on Read the Docs or with ``SC_PRINT_DOCS_INTERSPHINX=1``. The tutorial notebooks are executed
on the embedded default model during the build (myst-nb); a failing cell fails the build.
"""

from __future__ import annotations

import os
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import metadata as _metadata

# -- Project information -------------------------------------------------------------------------------------

try:
    info = _metadata("sc-print")
    project = info["Name"]
    release = info["Version"]
except PackageNotFoundError:  # docs built from a source tree without `pip install -e .`
    project = "sc-print"
    release = "0.1.0"
version = ".".join(release.split(".")[:2])
author = "sc_print developers"
copyright = f"{datetime.now():%Y}, {author}"

html_static_path: list[str] = []
templates_path = ["_templates"]
master_doc = "index"
default_role = "literal"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
needs_sphinx = "7.0"

# -- General configuration -----------------------------------------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx_copybutton",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",  # after napoleon
    "sphinxcontrib.bibtex",
]

source_suffix = {".rst": "restructuredtext", ".ipynb": "myst-nb", ".myst": "myst-nb", ".md": "myst-nb"}

autosummary_generate = True
autodoc_member_order = "groupwise"
# Inherited members are documented when they come from our own classes (``ScPrint.save`` from its save/load
# mixin); those of third-party bases (torch, scvi-tools, Lightning, builtins) are skipped by ``_skip_foreign``.
autodoc_default_options = {"members": True, "inherited-members": True}
# nothing is mocked: every module imports without its optional extras (flash_attn is imported only when used).
# Mocking ``triton`` broke ``torch.utils.flop_counter`` and with it the import of sc_print.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True  # having a separate entry generally helps readability
napoleon_use_param = True
typehints_defaults = "braces"
always_document_param_types = True

bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"

myst_heading_anchors = 6  # create anchors for h1-h6
myst_enable_extensions = [
    "amsmath",
    "colon_fence",
    "deflist",
    "dollarmath",
    "html_image",
    "html_admonition",
]
myst_url_schemes = ("http", "https", "mailto")

# The tutorials run offline on the embedded default model and the bundled example data: execute them at every
# build, and fail the build on an error in any cell.
nb_execution_mode = "force"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_output_stderr = "remove"

_INTERSPHINX = os.environ.get("READTHEDOCS") == "True" or os.environ.get("SC_PRINT_DOCS_INTERSPHINX") == "1"
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "mudata": ("https://mudata.readthedocs.io/en/latest/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "scvi-tools": ("https://docs.scvi-tools.org/en/stable/", None),
    "decoupler": ("https://decoupler.readthedocs.io/en/latest/", None),
    "squidpy": ("https://squidpy.readthedocs.io/en/stable/", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "pandas": ("https://pandas.pydata.org/docs/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
    "networkx": ("https://networkx.org/documentation/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
    "lightning": ("https://lightning.ai/docs/pytorch/stable/", None),
    "pooch": ("https://www.fatiando.org/pooch/latest/", None),
}

if not _INTERSPHINX:  # offline: an unreachable inventory is a warning, which -W turns into an error
    intersphinx_mapping = {}

# -- Options for HTML output ---------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = "sc_print"
html_theme_options = {
    "use_repository_button": False,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
}
pygments_style = "default"

# Every cross-reference must resolve (``-W`` makes a broken one an error) -- except into third-party packages.
# Those resolve through intersphinx on Read the Docs; offline (the CI build) they cannot, and
# sphinx-autodoc-typehints also writes private paths (``anndata._core.anndata.AnnData``,
# ``numpy.random._generator.Generator``) that no inventory lists. They are ignored here, by package, and only
# for the third-party packages below: a broken reference into ``sc_print`` still fails the build.
nitpicky = True
_THIRD_PARTY = (
    "anndata",
    "collections",
    "lightning",
    "logging",
    "matplotlib",
    "mudata",
    "networkx",
    "nn",  # ``nn.Module`` in the docstrings inherited from torch
    "numpy",
    "os",
    "pandas",
    "pathlib",
    "pooch",
    "scanpy",
    "scipy",
    "scvi",
    "squidpy",
    "decoupler",
    "torch",
    "types",
    "typing",
)
nitpick_ignore_regex = [(r"py:.*", rf"({'|'.join(_THIRD_PARTY)})(\..*)?")]
# ``tuple[str, ...]`` in a type hint is rendered with a reference to the builtin ``Ellipsis``, which has no page
nitpick_ignore = [("py:data", "Ellipsis")]


# -- Docstring conventions ------------------------------------------------------------------------------------
# Our numpydoc "Returns"/"Yields" sections are prose, as in scanpy ("A copy when ``copy=True``, else None. Writes
# ..."); the type comes from the annotation (sphinx-autodoc-typehints adds it as ``rtype``). napoleon would read
# the first line of that prose as a type, so such a section is handed over as a ``:returns:`` field instead. A
# section whose first line is a type (``name : type`` or one word) is left to napoleon.
_PROSE_SECTIONS = {"Returns": "returns", "Yields": "Yields"}


def _is_underline(line: str) -> bool:
    return len(line.strip()) >= 3 and set(line.strip()) == {"-"}


def _prose_returns(app, what, name, obj, options, lines: list[str]) -> None:
    out: list[str] = []
    i = 0
    while i < len(lines):
        title = lines[i].strip()
        if title in _PROSE_SECTIONS and i + 1 < len(lines) and _is_underline(lines[i + 1]):
            j = i + 2
            while j < len(lines) and not (j + 1 < len(lines) and lines[j].strip() and _is_underline(lines[j + 1])):
                j += 1
            body = lines[i + 2 : j]
            first = next((line for line in body if line.strip()), "")
            typed = " : " in first or (first.strip() and " " not in first.strip())
            if not typed and first:
                while body and not body[-1].strip():
                    body.pop()
                while out and not out[-1].strip():
                    out.pop()
                out.extend(["", ""])  # two blank lines end napoleon's previous section
                out.append(f":{_PROSE_SECTIONS[title]}:")
                out.extend(f"    {line}" if line.strip() else "" for line in body)
                out.append("")
                i = j
                continue
        out.append(lines[i])
        i += 1
    lines[:] = out


def _public_target(app, env, node, contnode):
    """Resolve ``sc_print.<sub>._<module>.Name`` / ``sc_print.<sub>.Name`` to where the API page documents it.

    Type hints name classes by their defining module (``sc_print.model._model.ScPrint``); the API pages document
    them where users import them (``sc_print.ScPrint``). Only targets that exist in the docs are redirected, so a
    reference to something undocumented still fails the build.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    module = node.get("py:module") or ""
    if not target.startswith("sc_print.") and module.startswith("sc_print"):
        target = f"{module}.{target.lstrip('~.')}"  # a bare name, relative to the module of the docstring
    if not target.startswith("sc_print."):
        return None
    parts = target.split(".")
    public = [p for p in parts if not p.startswith("_")]
    candidates = [".".join(public)]
    candidates += [".".join([parts[0], *public[k:]]) for k in range(2, len(public))]
    domain = env.get_domain("py")
    name = node.get("reftarget", "").lstrip("~.")
    if "." not in name:  # a bare name: the one documented sc_print object of that name, if there is exactly one
        same = [
            full
            for full in domain.objects
            if full.startswith("sc_print.")
            and full.endswith(f".{name}")
            and not any(p.startswith("_") for p in full.split("."))
        ]
        candidates += same if len(same) == 1 else []
    elif not name.startswith("sc_print."):  # ``Mixin.method``: the method as documented on the public class
        candidates += _documented_on_subclass(domain, *name.rsplit(".", 1))
    for candidate in dict.fromkeys(c for c in candidates if c != target):
        found = domain.resolve_any_xref(env, node["refdoc"], app.builder, candidate, node, contnode)
        if found:
            return found[0][1]
    return None


def _import_path(path: str):
    """The object at the dotted ``path`` (module, then attributes), or None."""
    import importlib

    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


def _documented_on_subclass(domain, cls_name: str, member: str) -> list[str]:
    """The one documented ``sc_print`` ``Class.member`` whose class derives from a class named ``cls_name``."""
    found = []
    for full in domain.objects:
        owner = full.rpartition(".")[0]
        if not full.startswith("sc_print.") or not full.endswith(f".{member}") or "._" in full:
            continue
        cls = _import_path(owner)
        if isinstance(cls, type) and any(base.__name__ == cls_name for base in cls.__mro__):
            found.append(full)
    return found if len(found) == 1 else []


def _skip_foreign(app, what, name, obj, skip, options):
    """Skip a class member whose code lives outside sc_print (inherited from torch, scvi-tools, Lightning...)."""
    if what not in {"class", "exception"}:
        return None
    code = getattr(obj, "fget", None) or getattr(obj, "__func__", None) or obj
    if not (callable(code) or isinstance(obj, property)):
        return None
    module = getattr(code, "__module__", None)
    return True if isinstance(module, str) and not module.startswith("sc_print") else None


def setup(app):
    """Connect the docstring hooks above."""
    app.connect("autodoc-process-docstring", _prose_returns, priority=400)  # before napoleon (500)
    app.connect("autodoc-skip-member", _skip_foreign)
    app.connect("missing-reference", _public_target)
