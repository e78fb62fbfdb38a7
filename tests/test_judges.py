"""Held-out judges: three offline ImageNet models, each recognizing the real photographs that ship
inside scikit-image and scikit-learn, and refusing to judge images it made itself."""
import pytest
import torch

from proxylab import am, models

PHOTOS = {"chelsea": ("Egyptian cat", "tiger cat", "tabby"), "coffee": ("espresso",), "china": ("palace",)}


def photo(name):
    if name == "china":
        from sklearn.datasets import load_sample_image

        return models.photo_tensor(load_sample_image("china.jpg"))
    from skimage import data

    return models.photo_tensor(getattr(data, name)())


@pytest.fixture(scope="module")
def lites():
    return {name: models.imagenet_model(name, device="cpu") for name in models.LITE_SIZES}


def test_three_offline_models_at_their_native_sizes(lites):
    assert {n: m.input_size for n, m in lites.items()} == {"efficientnet-lite0": 224, "efficientnet-lite1": 240,
                                                          "efficientnet-lite2": 260}
    firsts = [next(m.parameters()) for m in lites.values()]
    assert not torch.equal(firsts[0][:8], firsts[1][:8])  # three networks, not one loaded thrice


@pytest.mark.parametrize("name, classes", PHOTOS.items())
def test_each_judge_recognizes_real_photographs(lites, name, classes):
    x = photo(name)
    for judge_name, judge in lites.items():
        maker = lites["efficientnet-lite0" if judge_name != "efficientnet-lite0" else "efficientnet-lite1"]
        scores = {c: am.judge(x, [models.class_index(c)], judge, maker) for c in classes}
        assert any(bool(s["top1"][0]) for s in scores.values()), f"{judge_name} does not see {name}"
        assert sum(s["probability"][0].item() for s in scores.values()) > 0.3


def test_a_judge_refuses_the_images_of_its_own_network(lites):
    images = torch.zeros(2, 3, 64, 64)
    with pytest.raises(ValueError, match="made these images"):
        am.judge(images, [1, 2], lites["efficientnet-lite0"], lites["efficientnet-lite0"])
    twin = models.imagenet_model("efficientnet-lite0", device="cpu")  # the same weights, loaded again
    with pytest.raises(ValueError, match="made these images"):
        am.judge(images, [1, 2], twin, lites["efficientnet-lite0"])


def test_judge_scores_at_the_judges_size_and_ranks_the_target(lites):
    judge = lites["efficientnet-lite2"]
    seen = []
    handle = judge.register_forward_pre_hook(lambda m, i: seen.append(i[0].shape[-1]))
    x = photo("coffee")
    out = am.judge(torch.cat([x[..., :224, :224]] * 2), [models.class_index("espresso"), 0], judge,
                   lites["efficientnet-lite0"])
    handle.remove()
    assert seen == [260]
    with torch.no_grad():
        p = judge(torch.nn.functional.interpolate(x[..., :224, :224], size=(260, 260), mode="bilinear",
                                                  antialias=True)).softmax(1)[0]
    assert out["probability"][0].item() == pytest.approx(p[models.class_index("espresso")].item(), rel=1e-4)
    assert out["top1"].tolist() == [True, False] and out["top5"][0]
    assert out["probability"][1].item() == pytest.approx(p[0].item(), rel=1e-3)
    with pytest.raises(ValueError, match="one target per image"):
        am.judge(x, [1, 2], judge, lites["efficientnet-lite0"])
