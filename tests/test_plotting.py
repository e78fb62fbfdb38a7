"""The display stretch of AM images, and the shipped images read back from their job files."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from PIL import Image

from proxylab import plotting
from proxylab.results import RESULTS_DIR, shipped


def test_stretch_maps_the_percentiles_to_black_and_white():
    rng = np.random.default_rng(0)
    img = 0.45 + 0.05 * rng.random((32, 32, 3))            # low-contrast gray, as pixel-space AM gives
    out = plotting.stretch(img)
    lo, hi = np.percentile(img, plotting.STRETCH)
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.allclose(out, np.clip((img - lo) / (hi - lo), 0, 1))
    assert (out == 0).mean() == pytest.approx(0.01, abs=0.005) and (out == 1).mean() == pytest.approx(0.01, abs=0.005)
    order = np.argsort(img, axis=None)                      # monotone: the stretch keeps the order of the pixels
    assert np.all(np.diff(out.ravel()[order]) >= 0)
    flat = np.full((8, 8), 0.5)
    assert np.array_equal(plotting.stretch(flat), flat)     # nothing to stretch: left as it is


def test_image_grid_says_when_it_stretches():
    import torch

    img = torch.rand(3, 16, 16) * 0.1
    plain = plotting.image_grid({"a": [img]}, ["c"], title="t")
    stretched = plotting.image_grid({"a": [img]}, ["c"], title="t", stretched=True)
    assert plotting.STRETCH_CAPTION not in plain._suptitle.get_text()
    assert stretched._suptitle.get_text() == "t\n" + plotting.STRETCH_CAPTION
    shown = stretched.axes[0].images[0].get_array()
    assert float(shown.max()) == 1.0 and float(plain.axes[0].images[0].get_array().max()) < 0.6


@pytest.mark.parametrize("name", ["table3", "figure3"])
def test_shipped_images_are_the_job_files_tiles(name):
    merged = shipped(name)
    rows, captions = plotting.shipped_images(merged, RESULTS_DIR / name)
    assert len(rows) == len(merged["rows"]) == len(captions)
    for (label, images), row in zip(rows.items(), merged["rows"]):
        assert len(images) == len(row["final_logits"])
        job = Image.open(RESULTS_DIR / name / row["images"]).convert("RGB")
        side = images[0].shape[0]
        assert images[0].shape == (side, side, 3) and side in (64, 224)
        last, pad = len(images) - 1, 2 if len(images) > 1 else 0  # one image is saved without padding
        assert job.width == pad + len(images) * (side + pad)
        x0 = pad + last * (side + pad)
        expected = np.asarray(job.crop((x0, pad, x0 + side, pad + side)), dtype=np.float64) / 255
        assert np.array_equal(images[last], expected)
        assert captions[list(rows).index(label)].split(", ")[0] == f"{row['final_logits'][0]:.1f}"


def test_stretched_and_raw_shows_the_stretched_grid_and_the_raw_one_under_a_click(monkeypatch):
    import base64
    import io

    import torch
    from IPython import display as ipd

    shown = []
    monkeypatch.setattr(ipd, "display", lambda obj: shown.append(obj))
    img = torch.rand(3, 16, 16) * 0.1
    plotting.stretched_and_raw({"a": [img, img]}, ["c1", "c2"], title="t")
    first, second = shown
    assert isinstance(first, ipd.Image) and first.format == "jpeg"
    assert second.data.startswith("<details><summary>raw images")
    raw = Image.open(io.BytesIO(base64.b64decode(second.data.split("base64,")[1].split("'")[0])))
    stretched = Image.open(io.BytesIO(first.data))
    assert raw.format == stretched.format == "JPEG"
    # the raw grid is darker-contrast: its pixels span less of the range than the stretched grid's
    spread = lambda im: np.percentile(np.asarray(im.convert("L")), 99) - np.percentile(np.asarray(im.convert("L")), 1)  # noqa: E731
    assert spread(stretched) > spread(raw)
