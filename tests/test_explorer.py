"""The explorer's callbacks, by setting widget values."""
import datetime
import io

import numpy as np
import pytest
import torch
from PIL import Image

from proxylab import models
from proxylab.explorer import Explorer, candidate_layers, load_image, sample_images, tile


@pytest.fixture(scope="module")
def explorer():
    return Explorer(models.imagenet_model("efficientnet-lite0", device="cpu"), size=96, am_size=64, steps=3)


def test_sample_images_ship_with_matplotlib():
    images = sample_images(64)
    assert len(images) >= 2
    for x in images.values():
        assert x.shape == (3, 64, 64) and x.min() >= -1 and x.max() <= 1


def test_layer_change_redraws_grid_and_reorders_channels(explorer):
    before, options = explorer.grid.value, explorer.channel.options
    explorer.layer.value = "net._conv_head"
    assert explorer.grid.value != before
    assert len(explorer.channel.options) == 1280 != len(options)
    strengths = [float(label.split("mean ")[1].rstrip(")")) for label, _ in explorer.channel.options[:5]]
    assert strengths == sorted(strengths, reverse=True)  # strongest channel first


def test_image_change_uses_cache_and_redraws(explorer):
    explorer.layer.value = "net._blocks.3"
    first = explorer.grid.value
    explorer.image.value = list(explorer.images)[1]
    assert explorer.grid.value != first
    cached = explorer._cache[explorer.image.value]
    explorer.layer.value = "net._blocks.5"
    assert explorer._cache[explorer.image.value] is cached  # no new forward pass for a layer change


def test_visualize_channel_with_each_rule(explorer):
    explorer.layer.value = "net._blocks.10"
    explorer.channel.value = explorer.channel.options[0][1]
    for rule in ("relu", "proxygrad", "guided", "noisy"):
        explorer.rule.value = rule
        r = explorer.visualize_channel()
        assert r.images.shape == (1, 3, 64, 64)
        assert explorer.spec() in explorer.status.value
    top = explorer.top_activations()
    assert [v for _, v in top] == sorted((v for _, v in top), reverse=True)
    assert explorer.top_view.value[:4] == b"\x89PNG"


def test_upload_adds_and_selects_the_image(explorer):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(buf, format="PNG")
    explorer.upload.value = ({"name": "mine.png", "type": "image/png", "size": len(buf.getvalue()),
                              "content": memoryview(buf.getvalue()),
                              "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)},)
    assert explorer.image.value == "mine.png" and "mine.png" in explorer.images
    assert explorer.images["mine.png"].shape == (3, 96, 96)


def test_helpers():
    assert load_image(__import__("matplotlib").cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), 32).shape == (3, 32, 32)
    grid = tile(torch.randn(10, 5, 5), cell=8)
    assert grid.min() >= 0 and grid.max() <= 1 and grid.shape == (3 * 9 + 1, 4 * 9 + 1)  # 4 columns, 3 rows
    layers = candidate_layers(models.imagenet_model("efficientnet-lite0", device="cpu"))
    assert "net._conv_stem" in layers and "net._blocks.0" in layers and layers["net._conv_head"][0] == 1280


def test_an_upload_that_is_not_an_image_is_one_line_in_the_status(explorer):
    images_before = dict(explorer.images)
    explorer.upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 5, "content": memoryview(b"hello"),
                              "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)},)
    assert "error: cannot identify image file" in explorer.status.value
    assert explorer.images.keys() == images_before.keys()  # nothing half-added; the explorer still works
    explorer.layer.value = list(explorer.layers)[0]
    assert "error" not in explorer.status.value
