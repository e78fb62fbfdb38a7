"""The static book as a reader opens it: built with ``python3 dev.py book`` (Sphinx -W -n: a broken
reference fails the build), then every page opened from file:// in Debian's chromium, offline.
Skipped only when chromium is absent (never in CI: PROXYLAB_REQUIRE_BROWSER=1)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import browsing  # noqa: F401  (skips this file without chromium)

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "build" / "book"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.fixture(scope="module")
def book():
    res = subprocess.run([sys.executable, "dev.py", "book"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, PROXYLAB_VENV=str(Path(sys.prefix))))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (BOOK / "index.html").exists()
    return BOOK


def visit(browser, path):
    """Open ``path`` in a fresh context; returns (page, console errors, failed and remote requests)."""
    context = browser.new_context()
    page = context.new_page()
    errors, failed, remote = [], [], []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("request", lambda r: r.url.startswith(("file://", "data:", "blob:", "about:")) or remote.append(r.url))
    page.goto(path.resolve().as_uri())
    # MathJax typesets after "load": wait for its promise (a page without math has none), then a little
    # for the saved widgets, which the widget manager draws asynchronously
    page.evaluate("() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise")
    page.wait_for_timeout(400)
    return page, errors, failed, remote


def test_every_page_loads_offline_without_errors(book, browser):
    pages = [book / "index.html", book / "results.html", book / "api.html"] + \
            [book / "notebooks" / f"{nb}.html" for nb in NOTEBOOKS]
    for path in pages:
        assert path.exists(), f"{path.name} was not built"
        page, errors, failed, remote = visit(browser, path)
        assert errors == [], f"{path.name}: console errors {errors}"
        assert failed == [] and remote == [], f"{path.name}: requests that left the local files {failed + remote}"
        text = page.inner_text("main")
        assert "VBox(children" not in text and "FloatSlider(" not in text, f"{path.name}: a widget shows as text"
        assert not re.search(r"\d+%\|", text), f"{path.name}: a progress bar's text"
        page.context.close()


def test_math_figures_widgets_and_navigation(book, browser):
    page, *_ = visit(browser, book / "index.html")
    assert page.locator("mjx-container").count() > 0, "the landing page's formula is not rendered as math"
    nav = {a.get_attribute("href") for a in page.locator("nav a").all()}
    for nb in NOTEBOOKS:
        assert any(h and h.endswith(f"notebooks/{nb}.html") for h in nav), f"navigation does not reach {nb}"
    page.context.close()
    page, *_ = visit(browser, book / "notebooks" / "04_proxygrad.html")
    assert page.locator("main img").count() >= 3, "notebook 04's figures are missing"
    assert page.locator("main mjx-container").count() > 0
    assert page.locator(".widget-slider").count() > 0, "the saved slider state is not drawn"
    launch = [a.get_attribute("href") for a in page.locator("a[href*='colab.research.google.com'], "
                                                            "a[href*='mybinder.org']").all()]
    assert any(h.endswith("/blob/main/notebooks/04_proxygrad.ipynb") for h in launch), launch  # Colab
    assert any("mybinder.org/v2/gh/" in h and "notebooks/04_proxygrad.ipynb" in h for h in launch), launch
    page.context.close()
    page, *_ = visit(browser, book / "api.html")
    assert page.locator("dt#proxylab\\.swap\\.proxygrad").count() == 1  # the reference from docstrings
    page.context.close()
