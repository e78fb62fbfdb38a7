"""Certified maxima: the MILP's maximum is the network's global maximum over the box (checked
against a dense grid on 2-input networks and against the network itself at the argmax), and
AM never beats it."""
import numpy as np
import pytest
import torch
from torch import nn

from proxylab import certify


def grid_max(model, output, n=601):
    g = np.linspace(-1, 1, n)
    X = torch.tensor(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2))
    with torch.no_grad():
        return model.double()(X)[:, output].max().item()


@pytest.mark.parametrize("widths", [[8], [8, 8], [6, 6, 6]])
@pytest.mark.parametrize("bounds", ["interval", "lp"])
def test_the_certified_maximum_is_the_global_one(widths, bounds):
    for seed in range(3):
        model = certify.mlp(2, widths, 3, seed=seed)
        for output in range(3):
            c = certify.certified_max(model, output, bounds=bounds)
            assert c.optimal and c.gap == 0 and c.checked
            with torch.no_grad():  # the network itself, in float64, at the solver's argmax
                at_x = model.double()(torch.tensor(c.x)[None])[0, output].item()
            model.float()
            assert at_x == pytest.approx(c.value, abs=1e-9)
            best_on_grid = grid_max(model, output)
            model.float()
            assert best_on_grid <= c.value + 1e-9           # nothing on the grid beats it
            assert best_on_grid >= c.value - 0.02 * (1 + abs(c.value))  # and the grid comes close to it


def test_units_need_binaries_only_where_their_sign_is_open():
    model = certify.mlp(2, [8], 1, seed=0)
    with torch.no_grad():
        model[3].weight.fill_(-1.0)  # every last-layer unit weighs negatively: no binary at all
    c = certify.certified_max(model, 0)
    assert c.binaries == 0 and c.optimal
    assert c.value - 1e-3 <= grid_max(model, 0) <= c.value + 1e-9


def test_a_time_limit_gives_a_proven_gap_not_a_false_optimum():
    model = certify.mlp(64, [48, 48], 10, seed=0)
    c = certify.certified_max(model, 0, time_limit=0.5, bounds="interval")
    assert c.checked and c.bound >= c.value
    if not c.optimal:
        assert c.gap > 0


def test_am_never_beats_the_certificate():
    model = certify.mlp(16, [12, 12], 4, seed=1).eval().requires_grad_(False)
    c = certify.certified_max(model, 2)
    starts = (torch.randn(16, 16, generator=torch.Generator().manual_seed(0)) * 0.1).clamp(-1, 1)
    for spec in ("relu", "proxygrad:0.3", "guided"):
        r = certify.am_runs(model, 2, spec, starts, steps=60, lr=0.2, polish_steps=40)
        assert max(r["values"]) <= c.value + 1e-5
        assert r["x"].abs().max() <= 1


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)), "ReLU"),
    (nn.Sequential(nn.Linear(4, 3), nn.ReLU()), "ends in a Linear"),
])
def test_networks_it_cannot_certify_are_refused(model, message):
    with pytest.raises(ValueError, match=message):
        certify.certified_max(model, 0)


def test_bad_output_and_bounds_are_refused():
    model = certify.mlp(2, [4], 3)
    with pytest.raises(ValueError, match="0..2"):
        certify.certified_max(model, 3)
    with pytest.raises(ValueError, match="interval"):
        certify.certified_max(model, 0, bounds="exact")
