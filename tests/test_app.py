"""The slope playground as a student uses it: ``python3 dev.py app`` on a free port, opened in
Debian's chromium; a slider moves the figure and the reported fractions, Run draws a class
visualization; nothing is fetched from outside this machine. Skipped only without chromium
(never in CI: PROXYLAB_REQUIRE_BROWSER=1)."""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browsing import free_port
from test_browser import record_texts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def playground(tmp_path):
    port = free_port()
    log = open(tmp_path / "voila.log", "w")
    proc = subprocess.Popen([sys.executable, "dev.py", "app", "--port", str(port), "--no-browser"], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, PROXYLAB_VENV=sys.prefix))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=60)
            break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("the playground did not start: " + (tmp_path / "voila.log").read_text()[-2000:])
    yield url
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_sliders_and_run_in_the_browser(playground, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, remote = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))
            or remote.append(r.url))
    try:
        page.goto(playground)
        page.wait_for_selector(".widget-slider .noUi-handle", timeout=180_000)
        assert "import ipywidgets" not in page.inner_text("body")  # no code shows
        assert page.locator(".cm-editor, .CodeMirror").count() == 0
        summary = page.locator(".widget-html-content:has-text('of the optimum')").first
        summary.wait_for(timeout=60_000)
        before = summary.inner_text()
        image_before = page.locator(".widget-output img").first.get_attribute("src")
        assert "Leaky ReLU" in before and "ProxyGrad" in before, before
        handle = page.locator(".widget-slider:has-text('backward slope') .noUi-handle").first
        handle.focus()
        t0 = time.perf_counter()
        page.keyboard.press("ArrowLeft")  # one step: 0.6 -> 0.55, as a released slider
        page.wait_for_function(  # the Output is cleared and refilled: look the image up each time
            "(old) => { const i = document.querySelector('.widget-output img'); return i && i.getAttribute('src') !== old; }",
            arg=image_before, timeout=60_000)
        seconds = time.perf_counter() - t0
        after = summary.inner_text()
        assert after != before and "ProxyGrad 0.55" in after, (before, after)
        print(f"slider release to redrawn figure: {seconds:.2f} s")
        image_one = page.locator(".widget-output img").first.get_attribute("src")
        record_texts(page, ".widget-html-content", "of the optimum")
        for _ in range(5):  # a quick burst, 0.55 -> 0.3: the figure ends at the final value, no stale queue
            page.keyboard.press("ArrowLeft")
        page.locator(".widget-html-content", has_text=re.compile(r"ProxyGrad 0\.3[ :]")).first.wait_for(timeout=60_000)
        time.sleep(3)  # a queued rerun of 0.5 ... 0.35 would replace it now
        burst = summary.inner_text()
        assert re.search(r"ProxyGrad 0\.3[ :]", burst), burst
        assert page.locator(".widget-output img").first.get_attribute("src") != image_one
        stale = [t for t in page.evaluate("window.__seen") if re.search(r"ProxyGrad 0\.(5|45|4|35)[ :]", t)]
        assert not stale, f"the burst reran intermediate values: {stale}"
        page.locator("button:has-text('Run')").first.click()
        status = page.locator(".widget-html-content:has-text('original-network logit')").first
        status.wait_for(timeout=120_000)
        page.locator(".widget-output img").nth(1).wait_for(timeout=60_000)  # the toy figure and the AM image
        assert errors == [] and remote == [], (errors, remote)
    finally:
        page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
        print(f"screenshot: {tmp_path / 'playground.png'}")
        page.close()


def run_playground(monkeypatch):
    """The playground's code cells, executed here as Voilà would (no display)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setattr("IPython.display.display", lambda *a, **kw: None)
    nb = json.loads((ROOT / "app" / "playground.ipynb").read_text())
    scope = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), scope)
    return scope


def test_a_model_that_cannot_load_is_one_line_in_the_playground(monkeypatch):
    from proxylab import models

    def unavailable(*a, **kw):
        raise models.ModelUnavailable("could not load the weights (offline)")

    monkeypatch.setattr(models, "imagenet_model", unavailable)
    scope = run_playground(monkeypatch)
    assert scope["am_panel"].status.value == ""  # nothing is loaded until the first Run
    scope["am_panel"].button.click()
    assert scope["am_panel"].status.value == '<span style="color:#b00020">error: could not load the weights (offline)</span>'
    assert "local_maxima" not in scope["toys"].explorers  # the toy tabs still work
    scope["toys"].tabs.selected_index = 2
    assert scope["toys"].explorers["local_maxima"].results


def test_the_playground_loads_the_network_at_the_first_run_only(monkeypatch):
    from proxylab import models

    loads = []
    real = models.imagenet_model

    def counted(*a, **kw):
        loads.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(models, "imagenet_model", counted)
    scope = run_playground(monkeypatch)
    toys = scope["toys"]
    assert loads == [] and list(toys.explorers) == ["sparse"]  # opening the page runs one toy, loads no model
    panel = scope["am_panel"]
    panel.steps.value = 2
    panel.button.click()
    panel.button.click()
    assert len(loads) == 1 and "original-network logit" in panel.status.value
