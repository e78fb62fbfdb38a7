"""The slope playground in a classroom: N students open it at once.

    python benchmarks/bench_classroom.py [--visitors 1 4 8] [--linger 60]

For each N, one Voilà server (``python3 dev.py app``, the course's own settings in app/voila.json)
and one headless chromium with N separate browser contexts (N students) that open the page at the
same moment. Reported per N:

- seconds from opening the page to a usable slider (the first toy problem has run and its summary is
  drawn), median and slowest of the N;
- memory per visitor: the unique memory (USS) of the N kernels divided by N, after every page is
  usable, and again after one visitor pressed Run (the class-visualization network is loaded only
  then, in that visitor's kernel);
- kernels alive ``--linger`` seconds after the pages are closed, for pages closed as a browser closes
  a tab (Voilà's unload beacon shuts the kernel down) and for pages that vanish without a word (a
  killed browser, a laptop put to sleep: the idle culler of app/voila.json must remove them).

The numbers depend on the machine and what else runs on it: read them side by side, in one run.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "dev.py"), "app", "--port", str(port), "--no-browser"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, PROXYLAB_VENV=sys.prefix))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=60)  # renders once: a kernel starts and is left for the culler
            return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("the playground did not start")


def kernels(server: subprocess.Popen) -> list[psutil.Process]:
    return [p for p in psutil.Process(server.pid).children(recursive=True)
            if "ipykernel_launcher" in " ".join(p.cmdline())]


def uss_mb(procs) -> float:
    """The kernels' unique memory (USS: what ending them frees). Their resident size (RSS) also counts
    the shared libraries every kernel maps once for all (torch's alone is ~0.5 GB), so it overstates
    what one more visitor costs."""
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().uss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def one_class(n: int, linger: float, close_politely: bool) -> dict:
    from playwright.sync_api import sync_playwright

    server, url = start_server()
    time.sleep(2)
    before = {p.pid for p in kernels(server)}  # the warm-up render's kernel
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            pages = [browser.new_context().new_page() for _ in range(n)]
            t0 = time.perf_counter()
            for page in pages:  # all at once: each goto returns when the page starts loading
                page.goto(url, wait_until="commit")
            usable = []
            for page in pages:
                page.locator(".widget-html-content:has-text('of the optimum')").first.wait_for(timeout=600_000)
                usable.append(time.perf_counter() - t0)
            ours = [p for p in kernels(server) if p.pid not in before]
            per_visitor = uss_mb(ours) / n
            pages[0].locator("button:has-text('Run')").first.click()
            pages[0].locator(".widget-html-content:has-text('original-network logit')").first.wait_for(timeout=600_000)
            per_visitor_run = uss_mb(ours) / n
            for page in pages:
                page.close(run_before_unload=close_politely)
            if not close_politely:
                browser.close()  # the connections drop without an unload
            t_closed = time.time()
            time.sleep(linger)
            left = len([p for p in kernels(server) if p.pid not in before])
            if close_politely:
                browser.close()
        return {"visitors": n, "usable_median_s": statistics.median(usable), "usable_max_s": max(usable),
                "mb_per_visitor": per_visitor, "mb_per_visitor_after_run": per_visitor_run,
                "kernels_left": left, "after_s": round(time.time() - t_closed)}
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--linger", type=float, default=60.0, help="seconds to wait after the pages close")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; pages closed, then "
          f"kernels counted {args.linger:.0f} s later")
    print(f"{'visitors':>8} {'closed as':>12} {'usable (median / max) s':>24} {'MB per visitor (USS)':>21} "
          f"{'after one Run':>14} {'kernels left':>13}")
    for n in args.visitors:
        for polite in (True, False):
            r = one_class(n, args.linger, polite)
            print(f"{n:8d} {'tab closed' if polite else 'vanished':>12} {r['usable_median_s']:11.1f} / "
                  f"{r['usable_max_s']:<10.1f} {r['mb_per_visitor']:21.0f} {r['mb_per_visitor_after_run']:14.0f} "
                  f"{r['kernels_left']:>6d} of {n}", flush=True)


if __name__ == "__main__":
    main()
