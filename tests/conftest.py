"""Shared test set-up: in CI no test may skip.

CI services set the environment variable ``CI`` (``CI=true``) and run ``bash .ci/run``, where
lucent, Ray, the Fashion-MNIST fixture and chromium are all installed: a skip there means something
the course claims went unchecked, so it is reported as a failure naming the skip's reason.
Without ``CI`` (a developer's machine) skips stay skips.
"""
import os

import pytest

# The suite's longest files, longest first (seconds on 2 cores, one worker each): dev.py runs the suite on
# pytest-xdist workers that take whole files in collection order, so starting these first lets the workers
# finish together instead of one waiting on the other's last long file.
SLOW_FIRST = ("tests/test_grading.py",                       # ~240: nbgrader autogrades notebooks 01-05
              "notebooks/08_deep_visualization.ipynb",       # ~120
              "notebooks/06_class_visualization.ipynb",      # ~120: 24 AM runs (quick Figure 2 on 4 slopes)
              "notebooks/06c_slope_diagnostic.ipynb",        # ~100: trains a Fashion-MNIST ResNet18
              "tests/test_runner.py",                        # ~90: one Ray start
              "tests/test_book.py",                          # ~80: builds the book, opens every page
              "notebooks/07_classification_training.ipynb",  # ~70: trains three ResNet18s
              "tests/test_results.py",                       # ~65
              "tests/test_train.py",                         # ~60
              "tests/test_browser.py",                       # ~45
              "tests/test_app.py",                           # ~35
              "notebooks/05_leaky_relu_statistics.ipynb",    # ~25
              "notebooks/04_proxygrad.ipynb")                # ~20
# (seconds of one file on one worker, measured in a fresh clone on 2026-12-02; longest first, so that the
# two workers end together)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Long files first on the xdist workers (stable, so the order within a file, a notebook's cells,
    is kept). Not in one process: there it only delays the fast tests, and mutmut, which stops at a
    mutant's first failing test, would sit through the training tests before a data test kills it."""
    if not hasattr(config, "workerinput"):
        return
    rank = {path: k for k, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(SLOW_FIRST)))


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _skip_to_failure(report) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"skipped in CI (CI={os.environ['CI']!r}), where nothing may skip: "
                       f"{reason.removeprefix('Skipped: ')}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():  # an xfail is not a skip
        _skip_to_failure(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield  # a whole module skipped at import (pytest.skip(..., allow_module_level=True))
    if report.skipped and in_ci():
        _skip_to_failure(report)
    return report


@pytest.fixture(scope="session")
def browser():
    """One headless chromium (Debian's, see ``browsing.py``) for every browser test of this process;
    each test opens its own page or context, so no state leaks between them."""
    from playwright.sync_api import sync_playwright

    from browsing import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
