"""Sphinx configuration of the proxylab book: the committed notebooks (with their outputs, never
re-executed), a landing page, the results and the API reference, readable offline.

Built by ``python3 dev.py book`` from a staging copy (``build/book-src``): this folder, the
notebooks, and MathJax 3 and the Jupyter widget manager vendored from ``node_modules`` (npm), so the
pages load nothing from the internet.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.environ.get("PROXYLAB_ROOT", "..")))

project = "proxylab"
author = "the proxylab authors"
copyright = "2026, the proxylab authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
html_theme = "sphinx_book_theme"
html_title = "proxylab: ProxyGrad, a notebook course"
html_context = {"default_mode": "auto"}  # otherwise "Got invalid theme mode" on a first visit
import tomllib  # noqa: E402

with open(os.path.join(os.environ.get("PROXYLAB_ROOT", ".."), "pyproject.toml"), "rb") as f:
    REPOSITORY = tomllib.load(f)["project"]["urls"]["Repository"]
html_theme_options = {
    "show_toc_level": 2,
    "repository_url": REPOSITORY,
    "repository_branch": "main",
    "path_to_docs": "",  # the book's notebooks/ are the repository's notebooks/
    "launch_buttons": {"binderhub_url": "https://mybinder.org", "colab_url": "https://colab.research.google.com"},
}
nb_execution_mode = "off"  # the committed outputs are the book's content
myst_enable_extensions = ["dollarmath", "amsmath"]
exclude_patterns = ["_build", "jupyter_execute", "**/.ipynb_checkpoints", "notebooks/runs", "README.md"]
html_static_path = ["_static"]
mathjax_path = "vendor-offline/mathjax/tex-mml-chtml.js"  # relative to _static/
mathjax_config_path = "mathjax_config.js"
nb_ipywidgets_js = {"vendor-offline/html-manager/embed.js": {}}  # built-in widgets, no require.js, no CDN
nb_output_stderr = "remove"  # progress bars and warnings are not part of a lesson
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports = []
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = True
# types from other libraries cannot be resolved offline (no intersphinx inventories): only ours must
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|nn|np|numpy|ipywidgets|W|sp|sympy|matplotlib|plt|PIL|pathlib|typing|collections|"
               r"argparse|tqdm|ray|lucent|torchvision|threading|weakref|abc|dataclasses|contextlib)(\..*)?"),
    (r"py:.*", r"(Path|Callable|Iterator|Sequence|Real|Any|Optional|Union|Tensor|Module|Figure|Axes|Dataset|"
               r"Generator|Objective|Target|Experiment|optional|callable|int|float|str|bool|dict|list|tuple|None)"),
    (r"py:.*", r".*\|.*"),  # PEP 604 unions as written in annotations
]
suppress_warnings = ["mystnb.unknown_mime_type"]
