"""Sphinx configuration of the sc_print documentation."""

from __future__ import annotations

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
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": False}
autodoc_mock_imports = ["flash_attn", "triton", "squidpy"]  # optional extras, not needed to document the API
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

# Notebooks are stored with their outputs: they need weights, data or a GPU that the docs build does not have.
nb_execution_mode = "off"
nb_merge_streams = True
nb_output_stderr = "remove"

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "mudata": ("https://mudata.readthedocs.io/en/latest/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "scvi-tools": ("https://docs.scvi-tools.org/en/stable/", None),
    "decoupler": ("https://decoupler.readthedocs.io/en/latest/", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "pandas": ("https://pandas.pydata.org/docs/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
    "networkx": ("https://networkx.org/documentation/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
    "lightning": ("https://lightning.ai/docs/pytorch/stable/", None),
    "pooch": ("https://www.fatiando.org/pooch/latest/", None),
}

# -- Options for HTML output ---------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = "sc_print"
html_theme_options = {
    "use_repository_button": False,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
}
pygments_style = "default"

# Third-party classes that intersphinx cannot always resolve from type hints.
nitpicky = False
nitpick_ignore = [
    ("py:class", "torch.nn.Module"),
    ("py:class", "lightning.pytorch.LightningModule"),
]
