"""Serve MathJax from the book itself, so the HTML works with no network.

Jupyter Book (via Sphinx) loads MathJax 3 from a CDN by default.  `_config.yml`
points ``mathjax_path`` at ``mathjax/tex-chtml.js`` (relative paths are relative
to ``_static``), and this extension copies MathJax's ``es5`` build from the
``django-static-mathjax`` wheel (MathJax 3.2.2, Apache-2.0, listed in
requirements.txt; it does not need Django) to ``_build/html/_static/mathjax``
when the HTML build finishes.  Nothing is committed to git.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.errors import ConfigError, ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHJAX_TARGET = "mathjax"  # under _static


def mathjax_es5_dir() -> Path:
    """Directory of MathJax 3's browser build (``es5``) shipped by django-static-mathjax."""
    try:
        import mathjax  # the django-static-mathjax distribution's import name
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ExtensionError(
            "offline MathJax: the 'django-static-mathjax' package is not installed "
            "(pip install -r requirements.txt)") from exc
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise ExtensionError(f"offline MathJax: {es5 / 'tex-chtml.js'} not found")
    return es5


def _check_config(app, config):
    path = config.mathjax_path or ""
    if "://" in path or path.startswith("//"):
        raise ConfigError(
            f"mathjax_path = {path!r} loads MathJax from the network; the book serves it "
            f"locally: set it to '{MATHJAX_TARGET}/tex-chtml.js' in _config.yml")
    mathjax_es5_dir()  # fail early, before notebooks are executed


def _copy_mathjax(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / MATHJAX_TARGET
    shutil.copytree(mathjax_es5_dir(), target, dirs_exist_ok=True)
    logger.info(f"offline MathJax copied to {target}")


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    """Drop repeated <script> entries from a page.

    sphinx-thebe 0.3.1 (and sphinx-togglebutton) add inline scripts after the
    builder is initialised; Sphinx 7 then holds each one twice, once with
    filename ``None`` and once with ``""``, so its own de-duplication misses
    them.  The second ``const THEBE_JS_URL = ...`` throws "Identifier
    'THEBE_JS_URL' has already been declared" in the browser.
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        filename = getattr(js, "filename", js) or ""  # inline scripts: None or ""
        key = (str(filename), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    app.connect("config-inited", _check_config)
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("build-finished", _copy_mathjax)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
