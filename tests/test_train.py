"""Training: datasets in their real on-disk formats, checkpoints, resume after a kill, DDP, sweep, table."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from proxylab import data, training_grids
from proxylab.cli import main as cli
from proxylab.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def jpg(path, seed, size=(24, 20), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


CALTECH_CLASSES = {"BACKGROUND_Google": 31, "accordion": 31, "airplanes": 34, "Faces": 40}
CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani"]
# image id -> (class id, path), in CUB's naming; classes interleaved, test images spread over the ids
CUB_IMAGES = {i: (1 + i % 4, f"{CUB_CLASSES[i % 4]}/{CUB_CLASSES[i % 4][4:]}_{i:04d}_{7000 + i}.jpg")
              for i in range(1, 13)}
CUB_IMAGES[6] = (3, f"{CUB_CLASSES[2]}/Sooty Albatross 0006.jpg")  # a path with spaces: images.txt splits once
CUB_TEST_IDS = {2, 5, 7, 12}


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    """Tiny Caltech101, CUB-200-2011 and Flowers102 trees in their real layouts."""
    root = tmp_path / "data"
    cal = root / "caltech101" / "101_ObjectCategories"
    for c, (name, n) in enumerate(CALTECH_CLASSES.items()):  # classes of unequal size, like the real ones
        for i in range(1, n + 1):
            jpg(cal / name / f"image_{i:04d}.jpg", 100 * c + i, mode="L" if name == "Faces" else "RGB")
    cub = root / "CUB_200_2011"
    lines, split, labels = [], [], []
    for i, (cls, rel) in CUB_IMAGES.items():
        jpg(cub / "images" / rel, i, mode="L" if i == 3 else "RGB")  # CUB holds a few gray images
        lines.append(f"{i} {rel}")
        split.append(f"{i} {int(i not in CUB_TEST_IDS)}")
        labels.append(f"{i} {cls}")
    (cub / "images.txt").write_text("\n".join(lines) + "\n")
    (cub / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (cub / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (cub / "classes.txt").write_text("".join(f"{c} {name}\n" for c, name in enumerate(CUB_CLASSES, 1)))
    from scipy.io import savemat
    fl = root / "flowers-102"
    for i in range(1, 11):
        jpg(fl / "jpg" / f"image_{i:05d}.jpg", 50 + i)
    savemat(fl / "imagelabels.mat", {"labels": np.array([[1, 2, 1, 2, 3, 3, 1, 2, 3, 1]])})
    savemat(fl / "setid.mat", {"trnid": np.array([[1, 2, 3]]), "valid": np.array([[4, 5]]),
                                "tstid": np.array([[6, 7, 8, 9, 10]])})
    import torchvision
    # the fixture cannot match the real files' md5 sums; everything else is the real code path
    monkeypatch.setattr(torchvision.datasets.Flowers102, "_file_dict",
                        {k: (v[0], None) for k, v in torchvision.datasets.Flowers102._file_dict.items()})
    monkeypatch.setenv("PROXYLAB_DATA", str(root))
    return root


def test_caltech101_split_is_drawn_per_class_and_drops_background(fake_data):
    """The paper's protocol: 20 training and 10 test images from each class, drawn with the seed."""
    from collections import Counter

    train, test = data.raw_splits("caltech101", seed=3)
    full = train.dataset
    assert "BACKGROUND_Google" not in full.categories and len(full.categories) == 3
    assert Counter(full.y[i] for i in train.indices) == {0: 20, 1: 20, 2: 20}
    assert Counter(full.y[i] for i in test.indices) == {0: 10, 1: 10, 2: 10}
    assert set(train.indices).isdisjoint(test.indices)
    assert all(full[i][1] == full.y[i] for i in train.indices[::7])  # the label the dataset gives that image
    assert data.raw_splits("caltech101", seed=3)[0].indices == train.indices
    assert data.raw_splits("caltech101")[0].indices == data.raw_splits("caltech101", seed=0)[0].indices  # seed 0 by default
    other, other_test = data.raw_splits("caltech101", seed=4)
    for c in range(3):  # another seed draws other images within every class
        assert {i for i in train.indices if full.y[i] == c} != {i for i in other.indices if full.y[i] == c}
        assert {i for i in test.indices if full.y[i] == c} != {i for i in other_test.indices if full.y[i] == c}
    tr, te, n = data.load("caltech101", image_size=16, seed=3)
    x, y = tr[0]
    assert x.shape == (3, 16, 16) and n == 101


def test_cub_labels_images_and_split_follow_the_files(fake_data):
    """Every sample is the image its id names, labelled with its class (0-based), in the official split."""
    train, test = data.raw_splits("cub200")
    for ds, ids in ((train, sorted(set(CUB_IMAGES) - CUB_TEST_IDS)), (test, sorted(CUB_TEST_IDS))):
        assert len(ds) == len(ids)
        for k, i in enumerate(ids):
            cls, rel = CUB_IMAGES[i]
            img, label = ds[k]
            assert label == cls - 1 and CUB_CLASSES[label] == rel.split("/")[0]
            with Image.open(fake_data / "CUB_200_2011" / "images" / rel) as expected:
                assert img.mode == "RGB" and np.array_equal(np.asarray(img), np.asarray(expected.convert("RGB")))
    assert {label for _, label in (train[k] for k in range(len(train)))} == {0, 1, 2, 3}
    assert data.CUB200().samples == train.samples  # the training split unless asked otherwise
    assert train.classes == test.classes == [0, 1, 2, 3]


def test_flowers_train_and_val_merged(fake_data):
    train, test = data.raw_splits("flowers102")
    assert len(train) == 5 and len(test) == 5


@pytest.mark.parametrize("name, hint", [("caltech101", "--download"), ("cub200", "CUB_200_2011.tgz"),
                                        ("flowers102", "--download")])
def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch, name, hint):
    monkeypatch.setenv("PROXYLAB_DATA", str(tmp_path / "empty"))
    with pytest.raises(data.DatasetMissing, match=hint):
        data.raw_splits(name)


def test_normalization_stats_are_cached_per_split_and_size(fake_data):
    train, _ = data.raw_splits("cub200")
    mean, std = data.channel_stats("cub200", train, size=16)
    stats = json.loads((fake_data / "stats.json").read_text())
    assert stats["cub200:8@16"]["mean"] == mean and len(std) == 3
    tr, _, _ = data.load("cub200", image_size=16)
    assert tr.normalize.mean == mean and tr.normalize.std == std
    (fake_data / "stats.json").write_text(json.dumps({"cub200:8@16": {"mean": [0.5] * 3, "std": [0.25] * 3}}))
    assert data.channel_stats("cub200", train, size=16) == ([0.5] * 3, [0.25] * 3)  # read, not recomputed
    assert data.channel_stats("cub200", train, size=20) != ([0.5] * 3, [0.25] * 3)  # another size: computed


def test_caltech101_statistics_follow_each_seeds_split(fake_data):
    """Each seed draws its own Caltech101 split: its statistics come from its own training images,
    whatever order the seeds run in (never another split's, which would hold this one's test images)."""
    first = {seed: data.load("caltech101", image_size=16, seed=seed)[0].normalize.mean for seed in (0, 1)}
    (fake_data / "stats.json").unlink()
    second = {seed: data.load("caltech101", image_size=16, seed=seed)[0].normalize.mean for seed in (1, 0)}
    assert first == second and first[0] != first[1]
    for seed in (0, 1):
        train, _ = data.raw_splits("caltech101", seed)
        x = torch.stack([data.T.Resize((16, 16), antialias=True)(data._to_rgb_tensor(train[i][0])) for i in range(len(train))])
        assert torch.allclose(torch.tensor(first[seed]), x.mean(dim=(0, 2, 3)), atol=1e-5)


def test_augmentation_is_seeded_per_sample_and_epoch(fake_data):
    tr, te, _ = data.load("cub200", image_size=16, seed=1)
    epoch0 = [tr[i][0] for i in range(len(tr))]
    assert all(torch.equal(a, tr[i][0]) for i, a in enumerate(epoch0))  # same sample, same epoch: same image
    tr.epoch = 5
    assert any(not torch.equal(a, tr[i][0]) for i, a in enumerate(epoch0))  # new epoch: new crops and flips
    te.epoch = 5  # no augmentation on the test set: every epoch sees the plain resized, normalized image
    img, _ = te.base[te.indices[0]]
    plain = te.normalize(data.T.Resize((16, 16), antialias=True)(data._to_rgb_tensor(img)))
    assert torch.equal(te[0][0], plain)


def test_prepared_images_are_standardized_with_their_splits_statistics(fake_data):
    """Resized (antialiased, 24x20 -> 8x8) and normalized as the statistics were computed, the training
    images have mean 0 and std 1 per channel; the test images go through the same resize."""
    tr, te, _ = data.load("cub200", image_size=8)
    tr.augment = False
    x = torch.stack([tr[i][0] for i in range(len(tr))])
    assert x.shape == (8, 3, 8, 8)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5)
    raw = torch.stack([data._to_rgb_tensor(tr.base[i][0]) for i in tr.indices])
    assert torch.tensor(tr.normalize.std).max() < 0.5 * raw.std(dim=(0, 2, 3)).min()  # averaged, not aliased
    img, label = te.base[te.indices[1]]
    assert te[1][1] == label and torch.allclose(te[1][0] * torch.tensor(te.normalize.std)[:, None, None]
                                                + torch.tensor(te.normalize.mean)[:, None, None],
                                                data.T.Resize((8, 8), antialias=True)(data._to_rgb_tensor(img)), atol=1e-5)


@pytest.mark.parametrize("size, pad", [(16, 2), (8, 1)])
def test_augmentation_is_a_reflect_padded_crop_and_a_flip(fake_data, size, pad):
    """Each augmented training image is the plain one shifted by up to size/8 pixels (reflect padding,
    at least 1) and maybe mirrored; over samples and epochs every shift and both flips occur."""
    tr, _, _ = data.load("cub200", image_size=size, seed=2)
    seen = set()
    for epoch in range(6):
        tr.epoch = epoch
        for i in range(len(tr)):
            tr.augment = False
            plain = tr[i][0]
            tr.augment = True
            x = tr[i][0]
            padded = torch.nn.functional.pad(plain[None], (pad,) * 4, mode="reflect")[0]
            found = [(dy, dx, flip) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for flip in (0, 1)
                     if torch.equal(x, (lambda c: c.flip(-1) if flip else c)(padded[:, dy:dy + size, dx:dx + size]))]
            assert found, f"sample {i}, epoch {epoch}: not a crop of the padded image"
            seen |= set(found)
    assert {dy for dy, _, _ in seen} == {dx for _, dx, _ in seen} == set(range(2 * pad + 1))
    assert {flip for _, _, flip in seen} == {0, 1}
    args = (tr.base, tr.indices, size, tr.normalize.mean, tr.normalize.std)
    unseeded, seed0 = data.Prepared(*args, augment=True), data.Prepared(*args, augment=True, seed=0)
    assert all(torch.equal(unseeded[i][0], seed0[i][0]) for i in range(len(tr)))  # seed 0 unless told otherwise


def test_missing_datasets_name_their_folder_and_how_to_get_them(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    monkeypatch.setenv("PROXYLAB_DATA", str(empty))
    expected = {
        "caltech101": f"Caltech101 not found under {empty / 'caltech101'}. Download it with "
                      "'python -m proxylab data caltech101 --download' (needs internet).",
        "cub200": f"CUB-200-2011 not found under {empty / 'CUB_200_2011'}. Download it with 'python -m proxylab "
                  f"data cub200 --download' (needs internet) or unpack CUB_200_2011.tgz into {empty}.",
        "flowers102": f"Flowers102 not found under {empty / 'flowers-102'}. Download it with "
                      "'python -m proxylab data flowers102 --download' (needs internet)."}
    for name, message in expected.items():
        with pytest.raises(data.DatasetMissing) as err:
            data.raw_splits(name)
        assert str(err.value) == message
    for call in (lambda: data.raw_splits("mnist"), lambda: data.load("mnist")):
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == "unknown dataset 'mnist'; choose one of fashion-mnist, caltech101, cub200, flowers102"


def test_downloads_arrive_through_a_staging_folder(fake_data, tmp_path, monkeypatch):
    """Caltech101, CUB-200-2011 and Flowers102 asked with download=True are fetched (here: copied from
    the fixture, in place of the network) into a staging folder and moved into the data root whole."""
    import shutil

    import torchvision
    from torchvision.datasets import utils as tv_utils

    fresh, fetched = tmp_path / "fresh", []

    def caltech_download(self):  # torchvision's Caltech101 roots itself at ROOT/caltech101
        fetched.append(("caltech101", Path(self.root)))
        shutil.copytree(fake_data / "caltech101", self.root, dirs_exist_ok=True)

    def cub_archive(url, download_root, filename=None, **kw):
        fetched.append((url, filename, Path(download_root)))
        shutil.copytree(fake_data / "CUB_200_2011", Path(download_root) / "CUB_200_2011")

    def flowers_download(self):
        fetched.append(("flowers102", Path(self.root)))
        shutil.copytree(fake_data / "flowers-102", Path(self.root) / "flowers-102", dirs_exist_ok=True)

    monkeypatch.setattr(torchvision.datasets.Caltech101, "download", caltech_download)
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", cub_archive)
    monkeypatch.setattr(torchvision.datasets.Flowers102, "download", flowers_download)
    for name in ("caltech101", "cub200", "flowers102"):  # not asked to download: nothing fetched
        with pytest.raises(data.DatasetMissing):
            data.raw_splits(name, root=fresh)
    with pytest.raises(data.DatasetMissing):  # nor by default
        data.CUB200(fresh)
    assert fetched == []
    train, test = data.raw_splits("caltech101", root=fresh, download=True)
    assert len(train.dataset.categories) == 3 and (len(train), len(test)) == (60, 30)
    assert fetched == [("caltech101", fresh / ".partial-caltech101" / "caltech101")]
    train, test = data.raw_splits("cub200", root=fresh, download=True)
    assert (len(train), len(test)) == (8, 4)
    assert fetched[1:] == [(data.CUB200.URL, "CUB_200_2011.tgz", fresh / ".partial-CUB_200_2011")]
    train, test = data.raw_splits("flowers102", root=fresh, download=True)
    assert (len(train), len(test)) == (5, 5)
    assert fetched[2:] == [("flowers102", fresh / ".partial-flowers-102")]
    assert sorted(p.name for p in fresh.iterdir()) == ["CUB_200_2011", "caltech101", "flowers-102"]
    for name in ("caltech101", "cub200", "flowers102"):  # there now: not fetched again
        data.raw_splits(name, root=fresh, download=True)
    assert len(fetched) == 3
    with pytest.raises(data.DatasetMissing):  # load does not download unless asked
        data.load("cub200", image_size=8, root=tmp_path / "fresh2")
    tr, te, n = data.load("cub200", image_size=8, root=tmp_path / "fresh2", download=True)
    assert (len(tr), len(te), n) == (8, 4, 200) and len(fetched) == 4
    assert "cub200:8@8" in json.loads((tmp_path / "fresh2" / "stats.json").read_text())  # cached under that root
    assert not (fake_data / "stats.json").exists()


def test_sample_batch_looks_for_caltech101_under_the_root_given(fake_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PROXYLAB_DATA", str(tmp_path / "empty"))
    x, _, name = data.sample_batch(12, 8, root=fake_data)
    assert name == "caltech101" and x.shape == (12, 3, 8, 8)
    monkeypatch.setenv("PROXYLAB_DATA", str(fake_data))  # Caltech101 in the default place, not under the root given
    assert data.sample_batch(4, 8, root=tmp_path / "fm")[2] == "fashion-mnist"  # so: the offline Fashion-MNIST


def test_sample_batch_downscales_without_aliasing(tmp_path):
    """A 1-pixel checkerboard shrunk 3x comes out flat gray (antialiased), not as a coarser checkerboard."""
    from PIL import Image

    cal = tmp_path / "caltech101" / "101_ObjectCategories"
    board = (np.indices((24, 24)).sum(0) % 2 * 255).astype(np.uint8)
    for c, n in (("BACKGROUND_Google", 1), ("boards", 6), ("flat", 6)):
        (cal / c).mkdir(parents=True)
        for i in range(n):
            pixels = board if c == "boards" else np.full((24, 24), 40 * i, np.uint8)
            Image.fromarray(np.stack([pixels] * 3, -1)).save(cal / c / f"image_{i + 1:04d}.jpg", format="PNG")
    x, y, name = data.sample_batch(12, 8, dataset="caltech101", root=tmp_path)
    assert name == "caltech101" and sorted(y.tolist()) == [0] * 6 + [1] * 6
    assert x.std(dim=(2, 3)).max() < 0.05 * x.std()  # every image flat; the batch's images differ


def test_sample_batch_takes_caltech101_when_it_is_on_disk(fake_data):
    """``dataset="auto"``: the paper's Caltech101 when it is there (gray images replicated to RGB)."""
    assert data.caltech101_available() and not data.caltech101_available(fake_data / "elsewhere")
    x, y, name = data.sample_batch()
    assert name == "caltech101" and x.shape == (32, 3, 64, 64) and y.shape == (32,)  # Figure 4's batch
    assert torch.equal(x, data.sample_batch(32, 64, seed=0, dataset="caltech101")[0])  # seed 0 by default
    assert not torch.equal(x, data.sample_batch(32, 64, seed=1)[0])
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)  # standardized per channel
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)
    assert set(y.tolist()) <= {0, 1, 2}


# --------------------------------------------------------------------------- the loop's parts, without training
def test_global_batches_are_seeded_per_epoch_and_cover_the_data_in_order_of_the_permutation():
    from proxylab.train import GlobalBatchSampler

    plain = GlobalBatchSampler(128, 32, seed=0, shuffle=False)
    assert list(plain) == [list(range(k, k + 32)) for k in range(0, 128, 32)]  # in order, from the first sample
    assert len(plain) == 4
    s = GlobalBatchSampler(100, 32, seed=5)
    first = list(s)
    assert len(s) == len(first) == 3 and all(len(b) == 32 for b in first)  # the last 4 are dropped
    assert sorted(i for b in first for i in b) != list(range(96))  # a shuffled choice of 96 of the 100
    assert first == list(GlobalBatchSampler(100, 32, seed=5))  # the same seed and epoch: the same batches
    s.epoch = 1
    assert list(s) != first and list(s) == list(s)
    assert list(GlobalBatchSampler(100, 32, seed=6)) != first
    whole = GlobalBatchSampler(100, 32, seed=5, drop_last=False)
    assert len(whole) == 4 and sorted(i for b in whole for i in b) == list(range(100))
    ranks = [GlobalBatchSampler(100, 32, seed=5, rank=r, world=2) for r in (0, 1)]
    assert [b[r::2] for b in first for r in (0, 1)] == [b for pair in zip(*ranks) for b in pair]


def test_lr_schedule_is_what_multisteplr_gives():
    """Milestones are epochs (at least the first), each dropping the LR once, as torch's scheduler does."""
    from proxylab.train import lr_milestones, lr_schedule

    for epochs, fractions in ((3, (0.1,)), (7, (0.5, 0.5, 0.9)), (10, (0.25, 0.75)), (4, (1.0,))):
        cfg = TrainConfig(epochs=epochs, lr=0.02, lr_milestones=fractions, lr_gamma=0.5).validate()
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, lr_milestones(cfg), cfg.lr_gamma)
        actual = []
        for _ in range(epochs):
            actual.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert lr_schedule(cfg) == pytest.approx(actual)
    assert lr_schedule(TrainConfig(epochs=3, lr=1.0, lr_milestones=(0.1,), lr_gamma=0.5).validate()) == [1.0, 0.5, 0.5]


class NotAWeight:  # importable, so an unrestricted unpickler would rebuild it
    pass


def test_checkpoints_are_read_as_weights_only(tmp_path):
    from proxylab.train import _load_checkpoint

    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3, "history": [{"lr": 0.1}]}, tmp_path / "good.pt")
    assert _load_checkpoint(tmp_path / "good.pt", "cpu")["epoch"] == 3
    torch.save({"model": NotAWeight()}, tmp_path / "pickle.pt")  # a pickle that runs code when loaded
    with pytest.raises(ValueError, match=r"^the checkpoint \S+pickle.pt is unreadable \(UnpicklingError\); it was "
                                         r"kept as it is. Delete it to start the run over, or pass another --out$"):
        _load_checkpoint(tmp_path / "pickle.pt", "cpu")


def test_checkpoint_entries_move_to_the_device_with_their_containers():
    from proxylab.train import _to

    moved = _to({"a": torch.ones(2), "b": [torch.zeros(1), (torch.ones(1), 3)], "c": "text"}, torch.device("meta"))
    assert moved["a"].device.type == "meta" and moved["c"] == "text"
    assert isinstance(moved["b"], list) and moved["b"][0].device.type == "meta"
    assert isinstance(moved["b"][1], tuple) and moved["b"][1][0].device.type == "meta" and moved["b"][1][1] == 3


def test_a_changed_configuration_names_every_change(tmp_path):
    from proxylab.train import ConfigMismatch, _check_same_protocol

    saved = TrainConfig(epochs=4).validate().protocol()
    _check_same_protocol(saved, TrainConfig(epochs=4, out="elsewhere").validate(), tmp_path)  # same protocol
    with pytest.raises(ConfigMismatch) as err:
        _check_same_protocol(saved, TrainConfig(epochs=4, lr=0.01, seed=2).validate(), tmp_path)
    assert str(err.value) == (f"{tmp_path} holds a run with another configuration (lr: 0.003 -> 0.01; seed: 0 -> 2); "
                              "resume it with its own settings, or choose another --out for the new ones")


def test_a_finished_run_counts_only_with_the_same_protocol(tmp_path):
    from proxylab.train import finished

    cfg = TrainConfig(epochs=4, out=str(tmp_path)).validate()
    assert finished(tmp_path, cfg) is None  # nothing there
    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 50.0, "protocol": cfg.protocol()}))
    assert finished(tmp_path, cfg)["test_accuracy"] == 50.0
    assert finished(str(tmp_path), TrainConfig(epochs=5).validate()) is None


@pytest.mark.parametrize("field, bad, message", [
    ("arch", "vgg", "unknown architecture 'vgg'; choose one of resnet18, pfnet18"),
    ("dataset", "mnist", "unknown dataset 'mnist'; choose one of fashion-mnist, caltech101, cub200, flowers102"),
    ("epochs", 0, "epochs must be >= 1, got 0"), ("batch_size", 0, "batch_size must be >= 1, got 0"),
    ("lr", 0.0, "lr must be > 0, got 0.0"),
    ("lr_milestones", (0.5, 0.0), r"lr milestones are fractions of the epochs in (0, 1], got (0.5, 0.0)"),
    ("lr_milestones", (1.5,), r"lr milestones are fractions of the epochs in (0, 1], got (1.5,)"),
    ("lr_gamma", 0.0, "lr gamma must be in (0, 1], got 0.0"), ("lr_gamma", 1.5, "lr gamma must be in (0, 1], got 1.5"),
    ("clip_grad_norm", 0.0, "clip_grad_norm must be > 0 or None (no clipping), got 0.0"),
    ("weight_decay", -0.1, "weight decay must be >= 0, got -0.1")])
def test_a_configuration_out_of_range_is_refused_with_its_reason(field, bad, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: bad}).validate()
    assert str(err.value) == message


def test_a_configuration_at_the_edges_of_its_ranges_is_valid():
    cfg = TrainConfig(epochs=1, batch_size=1, lr=2.0, lr_milestones=[1, 0.5], lr_gamma=1.0, clip_grad_norm=0.5,
                      weight_decay=0.0, activation="proxygrad:0.10").validate()
    assert cfg.lr_milestones == (1.0, 0.5) and cfg.activation == "proxygrad:0.1"  # the spec's one spelling
    assert TrainConfig(weight_decay=0.5, clip_grad_norm=None).validate().weight_decay == 0.5
    protocol = TrainConfig(out="somewhere", lr_milestones=(0.5,)).validate().protocol()
    assert "out" not in protocol and protocol["lr_milestones"] == [0.5]  # as JSON stores it, to compare with a saved one
    assert set(protocol) == {f for f in TrainConfig.__dataclass_fields__} - {"out"}
    assert json.loads(json.dumps(protocol)) == protocol


def test_the_process_layout_comes_from_torchruns_environment(monkeypatch):
    from proxylab.train import dist_env

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert dist_env() == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist_env() == (3, 4, 1)


def quick_cfg(out, **kw):
    base = dict(dataset="fashion-mnist", arch="pfnet18", activation="proxygrad:0.1", epochs=2, subset=128,
                batch_size=32, out=str(out), seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_a_folder_with_only_a_finished_runs_metrics_is_refused(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"protocol": {"epochs": 99}}))  # no checkpoint beside it
    for resume in (False, True):
        with pytest.raises(FileExistsError, match="holds a finished run of another configuration; choose another --out"):
            train(quick_cfg(out, epochs=1), resume=resume, progress=False)


def test_resume_trains_only_the_epochs_left(tmp_path, monkeypatch):
    """Interrupted after the first epoch's checkpoint, a resumed run trains the second epoch only and ends
    where an uninterrupted run ends (here with one parameter group: decay_norm_and_bias)."""
    import proxylab.train as train_module

    kw = dict(epochs=2, subset=64, decay_norm_and_bias=True)
    straight = train(quick_cfg(tmp_path / "a", **kw), resume=True, progress=False)  # nothing to resume: starts
    real_save = train_module.save_atomic

    def save_then_die(obj, path, *args):
        real_save(obj, path, *args)
        raise KeyboardInterrupt  # killed right after the checkpoint of epoch 1

    monkeypatch.setattr(train_module, "save_atomic", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(quick_cfg(tmp_path / "b", **kw), progress=False)
    monkeypatch.setattr(train_module, "save_atomic", real_save)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    epochs_loaded = []
    real_getitem = data.Prepared.__getitem__

    def getitem(self, i):
        if self.augment:
            epochs_loaded.append(self.epoch)
        return real_getitem(self, i)

    monkeypatch.setattr(data.Prepared, "__getitem__", getitem)
    resumed = train(quick_cfg(tmp_path / "b", **kw), resume=True, progress=False)
    assert set(epochs_loaded) == {2} and len(epochs_loaded) == 64  # one epoch of 2 batches of 32
    assert resumed["history"] == straight["history"] and resumed["test_loss"] == straight["test_loss"]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]


def test_cli_train_writes_metrics(tmp_path):
    out = tmp_path / "run"
    rc = cli(["train", "--dataset", "fashion-mnist", "--arch", "pfnet18", "--activation", "proxygrad:0.1",
              "--epochs", "1", "--subset", "128", "--seed", "0", "--out", str(out), "--quiet"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert {"test_accuracy", "epochs", "activation", "arch", "dataset", "seed"} <= set(m)
    assert m["activation"] == "proxygrad:0.1" and m["epochs"] == 1 and 0 <= m["test_accuracy"] <= 100
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    # no work is lost: a second run into the same folder is refused without --resume
    assert cli(["train", "--epochs", "1", "--subset", "128", "--out", str(out), "--quiet"]) == 2


def test_training_learns(tmp_path):
    m = train(quick_cfg(tmp_path / "r", arch="resnet18", activation="relu", epochs=3, subset=256), progress=False)
    losses = [h["train_loss"] for h in m["history"]]
    assert losses[-1] < losses[0]


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    straight = train(quick_cfg(tmp_path / "a", epochs=3), progress=False)
    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "proxylab", "train", "--dataset", "fashion-mnist", "--arch", "pfnet18",
           "--activation", "proxygrad:0.1", "--epochs", "3", "--subset", "128", "--batch-size", "32",
           "--seed", "0", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] < 3, "the run finished before it could be killed"
    assert not (out / "metrics.json").exists()
    resumed = train(quick_cfg(out, epochs=3), resume=True, progress=False)
    for key in ("test_accuracy", "test_loss", "train_loss"):
        assert resumed[key] == straight[key]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    # resuming a finished run does nothing and returns its metrics
    assert train(quick_cfg(out, epochs=3), resume=True, progress=False)["test_accuracy"] == straight["test_accuracy"]


# ``python -m proxylab ARGS`` that also logs, per process, each training sample it loads (epoch, index)
RECORD_SAMPLES = """import os, sys
from proxylab import data
from proxylab.cli import main

log = open(os.path.join(sys.argv.pop(1), f"seen-{os.environ.get('RANK', 0)}.txt"), "a")
real = data.Prepared.__getitem__


def getitem(self, i):
    if self.augment:  # a training sample: note the epoch and the sample
        log.write(f"{self.epoch} {i}\\n")
        log.flush()
    return real(self, i)


data.Prepared.__getitem__ = getitem
sys.exit(main(sys.argv[1:]))
"""


def read_seen(path) -> dict[int, list[int]]:
    seen = {}
    for line in path.read_text().splitlines():
        epoch, i = map(int, line.split())
        seen.setdefault(epoch, []).append(i)
    return seen


def test_ddp_two_processes_with_gloo(tmp_path, monkeypatch):
    """Each of two processes trains on its own half of every global batch (every second sample of
    it), so that together they see exactly what one process sees, and the replicas stay equal."""
    single_seen = {}
    real = data.Prepared.__getitem__

    def getitem(self, i):
        if self.augment:
            single_seen.setdefault(self.epoch, []).append(i)
        return real(self, i)

    monkeypatch.setattr(data.Prepared, "__getitem__", getitem)
    single = train(quick_cfg(tmp_path / "single", epochs=2, subset=256), progress=False)
    monkeypatch.setattr(data.Prepared, "__getitem__", real)
    out, logs = tmp_path / "ddp", tmp_path / "seen"
    logs.mkdir()
    (tmp_path / "record.py").write_text(RECORD_SAMPLES)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29500 + os.getpid() % 1000), str(tmp_path / "record.py"), str(logs),  # = python -m proxylab
           "train", "--dataset", "fashion-mnist", "--arch", "pfnet18", "--activation", "proxygrad:0.1", "--epochs",
           "2", "--subset", "256", "--batch-size", "32", "--seed", "0", "--out", str(out), "--quiet"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2
    assert m["replica_checksums"][0] == m["replica_checksums"][1]  # replicas stayed in sync
    assert len(list(out.glob("*.tmp"))) == 0 and (out / "checkpoint.pt").exists()
    seen = [read_seen(logs / f"seen-{rank}.txt") for rank in (0, 1)]
    assert sorted(single_seen) == sorted(seen[0]) == sorted(seen[1]) == [1, 2]
    assert single_seen[1] != single_seen[2]  # each epoch its own order
    for epoch, order in single_seen.items():
        assert len(order) == 256 and sorted(order) == list(range(256))  # 8 full batches of 32
        batches = [order[k:k + 32] for k in range(0, 256, 32)]
        for rank in (0, 1):  # rank r: samples r, r + 2, ... of each global batch, batch after batch
            assert seen[rank][epoch] == [i for b in batches for i in b[rank::2]]
    # same samples, same augmentation; only BatchNorm statistics are per process on CPU (measured:
    # 0.2 % apart in training loss, 0.3 % in test loss)
    losses_ddp = [h["train_loss"] for h in m["history"]]
    assert losses_ddp == pytest.approx([h["train_loss"] for h in single["history"]], rel=0.02)
    assert m["test_loss"] == pytest.approx(single["test_loss"], rel=0.02)


def test_sweep_prints_the_paper_grid_through_the_runner(tmp_path, capsys):
    from proxylab import experiments
    from proxylab.runner import Folder

    exp = experiments.get("table4-paper")
    folder = Folder(tmp_path / "runs", exp, quick=False)
    first = exp.jobs(False)[0]
    folder.save(first, {"test_accuracy": 50.0}, 1.0, "cpu")
    rc = cli(["sweep", "--out", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 0 and "# 210 runs of table4-paper, 1 finished, 209 to do" in out
    assert out.count("-m proxylab train") == 209 and "--resume" in out and "reproduce table4-paper" in out
    assert str(folder.workdir(first)) not in out  # the finished one is not listed


def test_table_from_runs_with_paper_numbers(tmp_path):
    results = {("caltech101", "resnet18", "relu"): [55.0, 57.0], ("caltech101", "resnet18", "proxygrad:0.2"): [63.0, 62.0]}
    md = training_grids.table4(results, paper=True)
    assert "| caltech101 | resnet18 |" in md
    assert "**62.5±0.7 (n=2)**" in md and "56.0±1.4 (n=2)" in md
    assert "paper 56.0±0.6" in md and "paper 62.9±0.8" in md
    assert "ProxyGrad 0.2" in md.splitlines()[0]
    one = training_grids.table4({("fashion-mnist", "resnet18", "relu"): [73.6], ("fashion-mnist", "resnet18", "leaky:0.1"): [75.2]})
    assert "**" not in one and "75.2 (n=1)" in one  # one run per cell: no best to bold
    mixed = {**results, ("caltech101", "resnet18", "leaky:0.1"): [64.0]}
    assert "**" not in training_grids.table4(mixed)


def test_table_pools_runs_only_within_one_protocol(tmp_path, capsys):
    import shutil

    runs = tmp_path / "runs"
    train(quick_cfg(runs / "a", epochs=1, activation="leaky:0.1"), progress=False)
    train(quick_cfg(runs / "b", epochs=1, activation="leaky:0.1", seed=1), progress=False)
    train(quick_cfg(runs / "c", epochs=2, activation="leaky:0.1"), progress=False)  # another protocol
    cell = ("fashion-mnist", "pfnet18", "leaky:0.1")
    groups = training_grids.collect(runs)
    assert len(groups) == 2
    assert len(next(v for k, v in groups.items() if k.startswith("epochs=1,"))[cell]) == 2  # seeds 0 and 1
    assert len(next(v for k, v in groups.items() if k.startswith("epochs=2,"))[cell]) == 1
    shutil.copytree(runs / "a", runs / "a-copy")  # the same seed twice counts once
    assert len(next(v for k, v in training_grids.collect(runs).items() if k.startswith("epochs=1,"))[cell]) == 2
    assert cli(["table", str(runs)]) == 0
    out = capsys.readouterr().out
    assert out.count("protocol: epochs=") == 2 and "fashion-mnist | pfnet18" in out and "Leaky ReLU 0.1" in out


def test_bad_training_input(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        train(quick_cfg(tmp_path / "x", dataset="mnist"))
    with pytest.raises(ValueError, match=">= 0"):
        train(quick_cfg(tmp_path / "x", activation="proxygrad:-1"))
    with pytest.raises(ValueError, match="epochs"):
        train(quick_cfg(tmp_path / "x", epochs=0))


def test_trained_run_can_be_visualized(tmp_path):
    from proxylab import am
    from proxylab.train import load_for_am

    out = tmp_path / "r"
    train(quick_cfg(out, arch="resnet18", activation="relu", epochs=1), progress=False)
    model = load_for_am(out)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    r = am.visualize(model, [0, 1], "proxygrad:0.1", steps=3, size=32, progress=False)
    assert r.images.shape == (2, 3, 32, 32) and r.scores.shape == (4, 2)


# --------------------------------------------------------------------------- the recipe's choices
def test_lr_schedule_per_epoch():
    from proxylab.train import lr_schedule

    cfg = TrainConfig(epochs=8, lr=0.003).validate()  # drops after epochs 4 and 6
    assert lr_schedule(cfg) == pytest.approx([0.003] * 4 + [0.0003] * 2 + [0.00003] * 2)
    cfg = TrainConfig(epochs=10, lr=0.01, lr_milestones=(0.3,), lr_gamma=0.5).validate()
    assert lr_schedule(cfg) == pytest.approx([0.01] * 3 + [0.005] * 7)


def test_trained_lr_follows_the_schedule(tmp_path):
    m = train(quick_cfg(tmp_path / "r", epochs=3, lr_milestones=(0.34, 0.67)), progress=False)
    assert [h["lr"] for h in m["history"]] == pytest.approx([0.003, 0.0003, 0.00003])


def test_optimizer_settings():
    from proxylab import architectures
    from proxylab.train import make_optimizer

    model = architectures.build("resnet18", 10, "relu")
    opt = make_optimizer(model, TrainConfig().validate())
    assert opt.defaults["max_grad_norm"] is None and opt.defaults["lr"] == 0.003
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay_of[id(model.conv1.weight)] == 0.01 and decay_of[id(model.fc.weight)] == 0.01
    assert decay_of[id(model.bn1.weight)] == 0 and decay_of[id(model.bn1.bias)] == 0 and decay_of[id(model.fc.bias)] == 0
    assert len(decay_of) == len(list(model.parameters()))
    opt = make_optimizer(model, TrainConfig(clip_grad_norm=1.0, decay_norm_and_bias=True).validate())
    assert opt.defaults["max_grad_norm"] == 1.0
    assert {g["weight_decay"] for g in opt.param_groups} == {0.01}


def test_resume_refuses_a_changed_configuration_and_a_corrupt_checkpoint(tmp_path):
    from proxylab.train import ConfigMismatch

    out = tmp_path / "r"
    train(quick_cfg(out, epochs=1), progress=False)
    (out / "metrics.json").unlink()  # as if killed after the first epoch's checkpoint
    with pytest.raises(ConfigMismatch, match=r"lr: 0.003 -> 0.01"):
        train(quick_cfg(out, epochs=1, lr=0.01), resume=True, progress=False)
    with pytest.raises(ConfigMismatch, match="clip_grad_norm"):
        train(quick_cfg(out, epochs=1, clip_grad_norm=1.0), resume=True, progress=False)
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable.*kept.*Delete it"):
        train(quick_cfg(out, epochs=1), resume=True, progress=False)
    assert (out / "checkpoint.pt").read_bytes() == b"not a checkpoint"
    rc = cli(["train", "--subset", "128", "--batch-size", "32", "--arch", "pfnet18", "--activation", "proxygrad:0.1",
              "--epochs", "1", "--out", str(out), "--resume", "--quiet"])
    assert rc == 2


def test_last_incomplete_batch_is_dropped(tmp_path):
    """65 images in batches of 64: one full batch; the single leftover image (which breaks BatchNorm)
    is not trained on."""
    m = train(quick_cfg(tmp_path / "r", epochs=1, subset=65, batch_size=64, arch="resnet18"), progress=False)
    assert len(m["history"]) == 1
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(quick_cfg(tmp_path / "s", epochs=1, subset=40, batch_size=64), progress=False)


@pytest.mark.parametrize("n, batch, world", [(130, 64, 3), (65, 64, 2), (1000, 64, 4), (97, 32, 3)])
def test_every_process_gets_the_same_number_of_full_batches(n, batch, world):
    from proxylab.train import GlobalBatchSampler

    samplers = [GlobalBatchSampler(n, batch, seed=1, rank=r, world=world) for r in range(world)]
    counts = {len(list(s)) for s in samplers}
    assert counts == {n // batch}
    together = sorted(i for s in samplers for b in s for i in b)
    assert len(together) == (n // batch) * batch and len(set(together)) == len(together)


def test_evaluation_runs_in_eval_mode(tmp_path):
    from proxylab import architectures
    from proxylab.train import evaluate

    _, test_set, _ = data.load("fashion-mnist", 32, subset=64)
    model = architectures.build("resnet18", 10, "relu")
    before = model.bn1.running_mean.clone()
    model.train()
    loss, acc = evaluate(model, test_set, torch.device("cpu"), 0, 1)
    assert torch.equal(model.bn1.running_mean, before)  # train-mode BatchNorm would have updated it
    x = torch.stack([test_set[i][0] for i in range(len(test_set))])
    y = torch.tensor([test_set[i][1] for i in range(len(test_set))])
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model.eval()(x), y).item()
    assert loss == pytest.approx(expected, rel=1e-5)
