"""The explorer's callbacks, by setting widget values."""
import datetime
import io
import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from proxylab import am, models
from proxylab.explorer import Explorer, candidate_layers, load_image, png, sample_images, tile


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


def test_each_rule_gives_the_am_of_its_spec(explorer):
    """The explorer runs AM of the selected channel with the chosen rule and slope: the same images
    as am.visualize with that spec, a different image for every rule, shown and reported."""
    layer = "net._blocks.10"
    explorer.layer.value = layer
    channel = explorer.channel.options[0][1]
    explorer.channel.value, explorer.slope.value = channel, 0.3
    images = {}
    for rule, spec in (("relu", "relu"), ("proxygrad", "proxygrad:0.3"), ("guided", "guided"),
                       ("deconvnet", "deconvnet"), ("noisy", "noisy:0.3")):
        explorer.rule.value = rule
        assert str(explorer.spec()) == spec
        r = explorer.visualize_channel()
        direct = am.visualize(explorer.model, am.channel_target(layer, [channel]), spec, steps=3, size=64,
                              progress=False)
        assert r.spec == direct.spec and torch.equal(r.images, direct.images)
        assert explorer.am_view.value == png((r.images[0] + 1) / 2)
        assert f"{spec}: activation {direct.scores[0, 0]:.2f} -> <b>{direct.final[0]:.2f}</b>" in explorer.status.value
        images[rule] = r.images
    for a, b in itertools.combinations(images, 2):  # every rule's gradient moves the image its own way
        assert (images[a] - images[b]).abs().max() > 1e-3, (a, b)
    explorer.rule.value, explorer.slope.value = "proxygrad", 0.0
    assert str(explorer.spec()) == "relu"  # slope 0: the plain gradient
    explorer.slope.value = 0.05


def test_top_activations_rank_the_images_by_the_channels_maximum(explorer):
    explorer.layer.value = "net._blocks.10"
    channel = explorer.channel.options[0][1]
    explorer.channel.value = channel
    expected = {}
    for name, img in explorer.images.items():  # an independent forward pass per image
        out = []
        handle = explorer.model.get_submodule("net._blocks.10").register_forward_hook(lambda m, i, o: out.append(o))
        with torch.no_grad():
            explorer.model(img[None])
        handle.remove()
        expected[name] = out[0][0, channel].max().item()
    top = explorer.top_activations()
    assert [n for n, _ in top] == sorted(expected, key=lambda n: -expected[n])[:3]
    assert [v for _, v in top] == pytest.approx([expected[n] for n, _ in top], abs=1e-5)
    explorer.visualize_channel()
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
