"""The command line the way users get it wrong and machines break: every case ends in one line
on stderr with a non-zero exit code, no traceback, and no finished work lost."""
import json
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from proxylab import cli as cli_module
from proxylab import data, train as train_module
from proxylab.cli import main as cli

TRAIN = ["train", "--dataset", "fashion-mnist", "--arch", "pfnet18", "--subset", "128", "--batch-size", "32",
         "--quiet"]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_an_unloadable_model_is_one_line(tmp_path, capsys, monkeypatch):
    def offline(**kw):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    assert cli(["visualize", "--model", "resnet18", "--steps", "1", "--out", str(tmp_path / "v")]) == 2
    line = one_line(capsys)
    assert "ResNet18 ImageNet weights" in line and "--model efficientnet-lite0" in line


@pytest.mark.parametrize("command", [["visualize", "--steps", "1", "--size", "32"], TRAIN + ["--epochs", "1"],
                                     ["reproduce", "figure4"], ["sweep"]])
def test_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli([*command, "--out", str(blocker / "sub")]) == 2
    assert "cannot write to" in one_line(capsys)


def test_a_full_disk_during_a_checkpoint_keeps_the_last_one(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_save, calls = torch.save, []

    def save(obj, path, *a, **kw):
        calls.append(path)
        if len(calls) == 2:  # the second epoch's checkpoint
            with open(path, "wb") as f:
                f.write(b"half a checkpoint")
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 128 vs 64: "
                               "No space left on device")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(torch, "save", save)
    assert cli([*TRAIN, "--epochs", "3", "--out", str(out)]) == 2
    line = one_line(capsys)
    assert "could not write the checkpoint" in line and "No space left on device" in line
    assert "previous checkpoint.pt is kept" in line
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert list(out.glob(".*tmp")) == []  # the half-written file is gone
    monkeypatch.setattr(torch, "save", real_save)
    assert cli([*TRAIN, "--epochs", "3", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3


def test_ctrl_c_during_training_keeps_the_finished_epochs(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_evaluate, calls = train_module.evaluate, []

    def evaluate(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*a, **kw)

    monkeypatch.setattr(train_module, "evaluate", evaluate)
    assert cli([*TRAIN, "--epochs", "2", "--out", str(out)]) == 130
    assert "finished epochs and jobs are kept" in one_line(capsys)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)
    assert cli([*TRAIN, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    assert [h["epoch"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2]


def test_ctrl_c_during_am_is_one_line(tmp_path, capsys, monkeypatch):
    from proxylab import am

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(am, "visualize", interrupted)
    assert cli(["visualize", "--steps", "1", "--size", "32", "--out", str(tmp_path / "v")]) == 130
    one_line(capsys)


def test_an_interrupted_download_leaves_no_dataset_behind(tmp_path, capsys, monkeypatch):
    """torchvision's Caltech101 counts any 101_ObjectCategories folder as the dataset; a download
    cut in the middle must not leave one in place."""
    from test_train import jpg

    monkeypatch.setenv("PROXYLAB_DATA", str(tmp_path / "data"))

    def cut(self):  # the first image arrives, then the connection drops
        jpg(Path(self.root) / "101_ObjectCategories" / "accordion" / "image_0001.jpg", 1)
        raise ConnectionResetError(104, "Connection reset by peer")

    def complete(self):
        for c in ("BACKGROUND_Google", "accordion", "airplanes"):  # torchvision drops the first
            for i in range(1, 31):
                jpg(Path(self.root) / "101_ObjectCategories" / c / f"image_{i:04d}.jpg", i)

    monkeypatch.setattr(torchvision.datasets.Caltech101, "download", cut)
    assert cli(["data", "caltech101", "--download"]) == 2
    assert "Connection reset by peer" in one_line(capsys)
    assert not (tmp_path / "data" / "caltech101").exists()
    assert cli(["data", "caltech101"]) == 2  # still missing, and says how to get it
    assert "--download" in one_line(capsys)
    monkeypatch.setattr(torchvision.datasets.Caltech101, "download", complete)
    assert cli(["data", "caltech101", "--download"]) == 0
    assert "40 training and 20 test images" in capsys.readouterr().out  # 2 classes x (20 + 10)
    assert not any(p.name.startswith(".partial") for p in (tmp_path / "data").iterdir())
    assert len(data.caltech101().categories) == 2


def test_an_unexpected_error_is_one_line_and_can_show_its_traceback(tmp_path, capsys, monkeypatch):
    def bug(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli_module, "cmd_info", bug)
    monkeypatch.delenv("PROXYLAB_TRACEBACK", raising=False)
    assert cli(["info"]) == 1
    line = one_line(capsys)
    assert "unexpected ZeroDivisionError: division by zero" in line
    assert "rerun with PROXYLAB_TRACEBACK=1 for the traceback" in line  # the variable the user must set
    monkeypatch.setenv("PROXYLAB_TRACEBACK", "0")
    assert cli(["info"]) == 1 and "PROXYLAB_TRACEBACK=1" in one_line(capsys)
    monkeypatch.setenv("PROXYLAB_TRACEBACK", "1")  # the name the message gives, not the module's constant
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        cli(["info"])


def test_a_run_too_short_to_mean_anything_says_so(tmp_path, capsys, monkeypatch):
    assert cli([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "only 4 optimizer steps" in err and "do not quote" in err  # 128 images / 32
    monkeypatch.setattr(cli_module, "MEANINGFUL_STEPS", 4)
    assert cli([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert "do not quote" not in capsys.readouterr().err


def test_table_of_a_missing_folder(tmp_path, capsys):
    assert cli(["table", str(tmp_path / "nothing")]) == 2
    assert "is not a folder" in one_line(capsys)
