"""As a person would: JupyterLab in Debian's chromium, run a notebook's widget cell, move a slider,
see the figure change. Skipped only when chromium is absent (never in CI: PROXYLAB_REQUIRE_BROWSER=1).

JupyterLab serves each notebook as a lesson's set-up cells plus its widget cell (the notebook's own
cells, outputs cleared): what is tested here is that the page renders the widget and the kernel
answers it; the notebook's other cells are executed and compared by nbval, not a second time here."""
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from browsing import free_port

ROOT = Path(__file__).resolve().parents[1]
# notebook -> the source that marks its widget cell
WIDGET_CELLS = {"04_proxygrad.ipynb": "toy_explorer(", "08_deep_visualization.ipynb": "Explorer("}
SETUP_CELLS = 2  # the install cell and the set-up cell (imports, seed, quick mode, model)


def widget_lesson(path: Path, marker: str):
    """``path``'s markdown up to its widget cell, its first SETUP_CELLS code cells and the widget cell,
    with outputs and saved widget state cleared: what shows was made now."""
    nb = nbformat.read(path, as_version=4)
    widget = next(k for k, c in enumerate(nb.cells) if c.cell_type == "code" and marker in c.source)
    code = [k for k, c in enumerate(nb.cells) if c.cell_type == "code"][:SETUP_CELLS]
    assert code and code[-1] < widget, f"{path.name}: the widget cell comes before the set-up cells"
    nb.cells = [c for k, c in enumerate(nb.cells) if k in code or k == widget or
                (c.cell_type == "markdown" and k < widget)]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    return nb


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """One JupyterLab on a free localhost port for this file's tests, serving the widget lessons (the
    committed files are never touched); stopped by its own pid."""
    tmp_path = tmp_path_factory.mktemp("jupyterlab")
    root = tmp_path / "lab"
    root.mkdir()
    for name, marker in WIDGET_CELLS.items():
        nbformat.write(widget_lesson(ROOT / "notebooks" / name, marker), root / name)
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # render every cell (no windowing), so the last cell's widget is in the page
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.token=",
         "--ServerApp.password=", "--ServerApp.ip=127.0.0.1", "--allow-root",
         "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=None", f"--ServerApp.root_dir={root}"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_notebook_04_slider_redraws_the_figure(jupyterlab, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        run_notebook_and_move_slider(page, jupyterlab, tmp_path)
    finally:
        shot = tmp_path / "notebook04.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        page.close()


def run_all(page, url, notebook, ready_selector, timeout_ms=180_000):
    """Open ``notebook``, run all cells, wait for ``ready_selector``; on failure say what the
    notebook printed to stderr and which cells ran.

    A Run All issued while the kernel is still connecting can run nothing, or stop after the first
    cell: whenever the kernel is idle with code cells still unrun ("[ ]:"), Run All is issued again."""
    # ?reset: a workspace with this notebook only (no tab of another test's notebook, whose cells would match too)
    page.goto(f"{url}/lab/tree/{notebook}?reset", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000, state="attached")
    prompts, ready = page.locator(".jp-InputPrompt"), page.locator(ready_selector).first
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    dialogs, issued, deadline = [], [], time.time() + timeout_ms / 1000
    while not ready.is_visible():
        texts = [p.strip() for p in prompts.all_inner_texts()]
        if "[ ]:" in texts and "[*]:" not in texts and idle.count() and (not issued or time.time() - issued[-1] > 10):
            dialog = page.locator(".jp-Dialog")
            if dialog.count():  # e.g. the kernel picker while the session starts: take its default
                dialogs.append(dialog.first.inner_text()[:300])
                dialog.first.locator(".jp-Dialog-button.jp-mod-accept").first.click(timeout=5_000)
            try:
                page.click(".lm-MenuBar-itemLabel:text-is('Run')", timeout=5_000)
                page.click(".lm-Menu-itemLabel:text-is('Run All Cells')", timeout=5_000)
            except Exception:  # a dialog opened meanwhile: close the menu if one is open; the next round answers it
                if not page.locator(".jp-Dialog").count():
                    page.keyboard.press("Escape")
            issued.append(time.time())
        if time.time() > deadline:
            errors = page.locator("[data-mime-type='application/vnd.jupyter.stderr']")
            text = [errors.nth(k).inner_text()[:1500] for k in range(errors.count())]
            raise AssertionError(f"{notebook}: {ready_selector!r} never appeared after {len(issued)} Run All; "
                                 f"prompts {texts}; stderr {text}; dialogs {dialogs}")
        time.sleep(0.5)


def run_notebook_and_move_slider(page, url, tmp_path):
    """Open notebook 04, run all cells, move the backward-slope slider; compare before/after."""
    run_all(page, url, "04_proxygrad.ipynb", ".widget-slider >> nth=2")
    slider = page.locator(".widget-slider").nth(2)  # a, b, backward slope, steps
    summary = page.locator(".widget-html:has-text('of the optimum')").last
    figure = page.locator(".widget-output img").last
    figure.wait_for(timeout=60_000)
    before_src, before_text = figure.get_attribute("src"), summary.inner_text()
    assert "backward slope" in slider.inner_text()
    handle = slider.locator(".noUi-handle")
    handle.focus()
    record_texts(page, ".widget-html", "of the optimum")
    for _ in range(4):  # 0.5 -> 0.3 in one quick burst: the convolution toy falls back into a pattern
        handle.press("ArrowLeft")
    page.locator(".widget-html:has-text('ProxyGrad 0.3:')").wait_for(timeout=60_000)
    deadline = time.time() + 60
    while figure.get_attribute("src") == before_src and time.time() < deadline:
        time.sleep(0.5)
    after_src, after_text = figure.get_attribute("src"), summary.inner_text()
    assert after_src != before_src, "the figure did not change after moving the slider"
    assert after_text != before_text and "ProxyGrad 0.3:" in after_text
    time.sleep(3)  # no queued rerun of an intermediate value (0.45, 0.4, 0.35) lands afterwards
    assert figure.get_attribute("src") == after_src and summary.inner_text() == after_text, \
        "a stale rerun replaced the final value's figure"
    stale = [t for t in page.evaluate("window.__seen") if any(f"ProxyGrad {v}:" in t for v in ("0.45", "0.4", "0.35"))]
    assert not stale, f"the burst reran intermediate values: {stale}"


def record_texts(page, selector, containing):
    """From now on, keep every text the last ``selector`` element containing ``containing`` shows
    (in ``window.__seen``): what a burst of slider moves drew on the way, not only where it ended."""
    page.evaluate("""([selector, containing]) => {
        window.__seen = [];
        const el = [...document.querySelectorAll(selector)].filter(e => e.innerText.includes(containing)).pop();
        new MutationObserver(() => window.__seen.push(el.innerText))
            .observe(el, {subtree: true, childList: true, characterData: true});
    }""", [selector, containing])


def test_notebook_08_explorer_redraws_on_layer_change(jupyterlab, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        layer_selector = ".widget-dropdown select:has(option[value='net._conv_head'])"
        run_all(page, jupyterlab, "08_deep_visualization.ipynb", layer_selector)
        layer = page.locator(layer_selector).first
        grid = page.locator(".widget-image").nth(1)  # input view, then the channel grid
        grid.wait_for(timeout=60_000)
        status = page.locator(".widget-html:has-text('net._')").first  # names the current layer
        before_src, before_status = grid.get_attribute("src"), status.inner_text()
        layer.select_option("net._conv_head")
        page.locator(".widget-html:has-text('net._conv_head')").first.wait_for(timeout=180_000)
        deadline = time.time() + 30
        while grid.get_attribute("src") == before_src and time.time() < deadline:
            time.sleep(0.3)
        after_src, after_status = grid.get_attribute("src"), status.inner_text()
    finally:
        shot = tmp_path / "notebook08.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        page.close()
    assert after_src != before_src, "the channel grid did not change after choosing another layer"
    assert "1280 channels" in after_status and after_status != before_status


def test_the_widget_lessons_are_the_notebooks_own_cells():
    """What the browser runs is cut from the committed notebooks, not a copy that can drift."""
    for name, marker in WIDGET_CELLS.items():
        committed = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        lesson = widget_lesson(ROOT / "notebooks" / name, marker)
        ids = {c.id: c.source for c in committed.cells}
        assert all(ids[c.id] == c.source for c in lesson.cells), name
        code = [c.source for c in lesson.cells if c.cell_type == "code"]
        assert len(code) == SETUP_CELLS + 1 and marker in code[-1], name
        assert "proxylab.setup(" in code[1] and all(c.outputs == [] for c in lesson.cells if c.cell_type == "code")
