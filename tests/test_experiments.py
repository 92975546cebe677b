"""Tests of the experiments: data, the coupling baseline, and short runs of both commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from invlin.cli import main
from invlin.experiments.coupling import AffineCoupling, coupling_flow, matched_coupling_flow
from invlin.experiments.datasets import TOY_DENSITIES, digits, toy_density
from invlin.experiments.train import count_parameters, nll_per_sample
from invlin.testing import assert_forward, assert_logabsdet, kappa1


@pytest.mark.parametrize("name", TOY_DENSITIES)
def test_toy_densities_are_seeded_and_shaped(name):
    a, b = toy_density(name, 500, seed=3), toy_density(name, 500, seed=3)
    assert a.shape == (500, 2) and np.array_equal(a, b)
    assert not np.array_equal(a, toy_density(name, 500, seed=4))
    assert np.all(np.abs(a) < 4.0)


def test_toy_density_structure():
    eight = toy_density("eight_gaussians", 4000)
    radius = np.linalg.norm(eight, axis=1)
    assert abs(np.median(radius) - 2.0) < 0.05  # centres on the circle of radius 2
    angles = np.round(np.arctan2(eight[:, 1], eight[:, 0]) / (np.pi / 4)) % 8
    assert len(np.unique(angles)) == 8
    board = toy_density("checkerboard", 4000)
    cells = np.floor(board + 2.0).astype(int)
    assert np.all((cells.sum(axis=1) % 2) == 0)  # only the (i + j) even cells
    with pytest.raises(ValueError, match="name must be one of"):
        toy_density("spiral", 3)


def test_digits_are_bundled():
    data, levels = digits()
    assert data.shape == (1797, 64) and levels == 17
    assert data.min() == 0 and data.max() == 16


def test_coupling_is_invertible_and_logdet_matches_jacobian():
    torch.manual_seed(0)
    flow = coupling_flow(4, 3, hidden=8).double()
    for layer in flow:
        for p in layer.net[-1].parameters():
            torch.nn.init.normal_(p, std=0.5)  # leave the identity initialisation
    x = torch.randn(4, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: flow(t)[0], x)
    kappa = kappa1(jac)
    assert_logabsdet(
        out=flow(x)[1].detach(),
        expected=torch.linalg.slogdet(jac)[1],
        n=4,
        kappa=kappa,
        dtype="float64",
    )
    y, ld = flow(x[None])
    xr, ldi = flow.inverse(y)
    assert_forward(out=xr.detach(), expected=x[None], kappa=kappa, dtype="float64")
    assert torch.equal(ldi, -ld)  # s is computed from x_A = y_A, bit for bit
    with pytest.raises(ValueError, match="mask"):
        AffineCoupling(3, torch.ones(2, dtype=torch.bool))


def test_matched_coupling_flow_has_about_the_target_count():
    flow, hidden = matched_coupling_flow(64, 4, 33_000)
    assert abs(count_parameters(flow) - 33_000) / 33_000 < 0.05 and hidden > 2


def test_nll_of_identity_flow_is_standard_normal():
    flow = coupling_flow(3, 1, hidden=4)  # zero-initialised last layer: the identity map
    x = torch.randn(10, 3, dtype=torch.float32)
    expected = 0.5 * (x**2).sum(-1) + 1.5 * math.log(2 * math.pi)
    assert torch.allclose(nll_per_sample(flow, x).detach(), expected, rtol=1e-6)


@pytest.mark.slow
def test_train_toy2d_command_runs_and_checks_drift(tmp_path, capsys):
    code = main(
        [
            "train",
            "toy2d",
            "--steps",
            "15",
            "--blocks",
            "3",
            "--couplings",
            "2",
            "--hidden",
            "4",
            "--densities",
            "eight_gaussians",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads((tmp_path / "toy2d.json").read_text())
    models = [r["model"] for r in data["results"]]
    assert models == ["p4_bent", "dense_bent", "coupling_matched", "realnvp", "realnvp_p4"]
    by = {r["model"]: r for r in data["results"]}
    # Default merge periods: p4_bent every 10 steps (one merge per layer in 15 steps),
    # realnvp_p4 every step.
    assert by["p4_bent"]["counters"]["merges"] == 4 and len(by["p4_bent"]["drift"]) == 4
    assert by["realnvp_p4"]["counters"]["merges"] == 2 * 15
    for r in (by["p4_bent"], by["realnvp_p4"]):
        assert all(d["sign_ok"] for d in r["drift"])
    assert not by["realnvp"]["drift"] and not by["dense_bent"]["counters"]
    for r in data["results"]:
        # No model beats the true density's entropy on average (Gibbs' inequality); 0.1 nats
        # is far above the sampling error of the 20 000-sample mean.
        assert math.isfinite(r["test_nll"]) and r["test_nll"] > r["optimum"] - 0.1
        assert 0.0 <= r["region_fraction"] <= 1.0
    assert (tmp_path / "toy2d_eight_gaussians.png").stat().st_size > 1000
    assert "p4_bent: P4 counters" in out and "within the oracle bound: 4/4" in out
    assert "true density (optimum)" in (tmp_path / "toy2d.md").read_text()
    threads = torch.get_num_threads()
    assert (
        main(
            [
                "train",
                "toy2d",
                "--merge-every",
                "2",
                "p4_bent=3",
                "--steps",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert torch.get_num_threads() == threads  # --threads (default 1) is undone on return


@pytest.mark.slow
def test_train_digits_command_runs(tmp_path):
    assert (
        main(
            ["train", "digits", "--steps", "5", "--blocks", "2", "--out", str(tmp_path), "--quiet"]
        )
        == 0
    )
    data = json.loads((tmp_path / "digits.json").read_text())
    for r in data["results"]:
        # Dequantised bits/dim of 17-level data: positive and finite; a useless model gives
        # about log2(17) ≈ 4.1 plus the Gaussian mismatch, never less than 0.
        assert 0 < r["test_bits_per_dim"] < 50
        assert r["density_ms_per_image"] > 0 and r["sampling_ms_per_image"] > 0
    assert (tmp_path / "digits_samples.png").exists()
