"""P4Scheduler: merges on schedule, optimizer-state resets, history, one gathered read per step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from p4_helpers import (
    explicit_matrix,
)

from invlin.nn import P4InvLinear
from invlin.nn.monitor import DriftMonitor
from invlin.nn.scheduler import MergeHistory, P4Scheduler, reset_optimizer_state
from invlin.oracle import ExactMatrix, evaluate
from invlin.testing import (
    assert_forward,
    assert_inverse,
    assert_logabsdet,
    assert_sign,
    kappa1,
)


@pytest.mark.parametrize(
    ("opt_cls", "kwargs"),
    [
        (torch.optim.Adam, {"lr": 1e-2}),
        (torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9}),
        (torch.optim.Adagrad, {"lr": 1e-2, "initial_accumulator_value": 0.5}),
        (torch.optim.RMSprop, {"lr": 1e-3}),
    ],
)
def test_scheduler_resets_optimizer_state_of_v_only(opt_cls, kwargs, scalar_form):
    torch.manual_seed(0)
    model = torch.nn.Sequential(P4InvLinear(4), torch.nn.Linear(4, 4))
    opt = opt_cls(model.parameters(), **kwargs)
    sched = P4Scheduler(model, opt, merge_every=2, force_every=None)
    p4 = model[0]
    x = torch.randn(16, 4)
    for step in range(1, 5):
        opt.zero_grad()
        y, ld = model[0](x)
        loss = (model[1](y) ** 2).mean() - ld.mean()
        loss.backward()
        opt.step()
        before = {
            id(p): {k: (t.clone() if torch.is_tensor(t) else t) for k, t in opt.state[p].items()}
            for p in model.parameters()
        }
        merged = sched.step()
        if step % 2:
            assert merged == {}
            continue
        assert merged == {"0": True}
        fresh_opt = opt_cls([torch.nn.Parameter(p4.v.detach().clone())], **kwargs)
        fresh = next(iter(fresh_opt.state.values()), {})
        assert set(opt.state.get(p4.v, {})) == set(fresh)
        for key, val in fresh.items():
            assert torch.equal(torch.as_tensor(opt.state[p4.v][key]), torch.as_tensor(val))
        for p in (p4.u, p4.bias, *model[1].parameters()):
            for key, val in before[id(p)].items():
                assert torch.equal(torch.as_tensor(opt.state[p][key]), torch.as_tensor(val))


def test_reset_optimizer_state_rejects_foreign_parameters():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="params"):
        reset_optimizer_state(opt, [torch.nn.Parameter(torch.zeros(2))])


def test_scheduler_history_round_trip(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(P4InvLinear(3), P4InvLinear(3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = P4Scheduler(model, opt, record=True)
    for _ in range(4):
        for layer in model:
            with torch.no_grad():
                layer.u.normal_(std=0.1)
        sched.step()
    path = sched.history.save(tmp_path / "hist.npz")
    data = MergeHistory.load(path)
    assert set(data) == {"0", "1"}
    rec = data["0"]
    assert rec["u"].shape == (4, 3) and rec["c"].shape == (4,)
    a = rec["a0"] + sum(np.outer(u, v) for u, v in zip(rec["u"], rec["v"], strict=True))
    assert np.allclose(a, model[0].weight.numpy(), rtol=0, atol=1e-14)
    assert rec["sign"][-1] == int(model[0].sign)


def _three_layers(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.Sequential(*(P4InvLinear(5, init="orthogonal", generator=g) for _ in range(3)))


def _perturb(model, step):
    """The same in-place changes of u and v for two copies: normal steps, one that the guard
    refuses (log|c| far below its bound) and one non-finite u."""
    g = torch.Generator().manual_seed(100 + step)
    with torch.no_grad():
        for i, layer in enumerate(model):
            layer.u.copy_(0.2 * torch.randn(5, generator=g))
            if step == 2 and i == 1:  # c = 1 + vᵀA⁻¹u ≈ 1e-9: refused (the step is not forced)
                vx = layer.v.double() @ layer.weight_inverse
                layer.u.copy_((layer.u.double() * (1e-9 - 1) / (vx @ layer.u.double())).float())
            if step == 3 and i == 2:
                layer.u[0] = float("nan")


def test_scheduler_reads_all_merge_decisions_at_once_with_the_same_results(scalar_form):
    from benchmarks.ops import count_ops

    batched, single = _three_layers(3), _three_layers(3)
    sched = P4Scheduler(batched, torch.optim.SGD(batched.parameters(), lr=0.1), force_every=None)
    results = []
    for step in range(5):
        _perturb(batched, step)
        _perturb(single, step)
        counts = count_ops(lambda: results.append(sched.step()))
        if scalar_form == "device":  # one transfer for the three layers' decisions
            assert counts["reads"] == 1
        for layer in single:
            layer.merge()
        for a, b in zip(batched, single, strict=True):
            assert a.counters == b.counters
            for (name, t), (_, e) in zip(
                a.state_dict().items(), b.state_dict().items(), strict=True
            ):
                assert torch.equal(t, e), name
    # the cases were met: c ≈ 1e-9 refused by the guard, a NaN in u reset
    assert results[2]["1"] is False and results[3]["2"] is False
    assert [layer.counters["nonfinite_resets"] for layer in batched] == [0, 0, 1]
    merges = sum(layer.counters["merges"] for layer in batched)
    assert (
        merges
        == 15 - sum(layer.counters["refusals"] for layer in batched)
        == 15 - sum(not ok for r in results for ok in r.values())
    )


def test_scheduler_uses_a_subclass_merge():
    class Logged(P4InvLinear):
        def merge(self, force=False):
            self.calls = getattr(self, "calls", 0) + 1
            return super().merge(force)

    model = torch.nn.Sequential(Logged(3), P4InvLinear(3))
    sched = P4Scheduler(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with torch.no_grad():
        model[0].u.fill_(0.1)
        model[1].u.fill_(0.1)
    assert sched.step() == {"0": True, "1": True}
    assert model[0].calls == 1


_FLOATS = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("state_dtype", _FLOATS)
@pytest.mark.parametrize("dtype", _FLOATS)
@pytest.mark.parametrize("rows", [3, 7])  # fewer rows than n (rank-one term on the rows), more
def test_every_state_and_compute_dtype_runs_a_training_step(scalar_form, state_dtype, dtype, rows):
    # Forward, inverse, penalty, backward, merge and a drift check in every pairing of state and
    # compute dtype: outputs and gradients in the compute dtype, finite, and the inverse undoing
    # the forward to the precision of the coarser of the two dtypes (X is held in the state
    # dtype, the products are formed in the compute dtype), judged by the tolerance engine.
    g = torch.Generator().manual_seed(0)
    # no monitor on the layer: it would repair a wrong merge before the check below sees it
    layer = P4InvLinear(
        5,
        init="orthogonal",
        state_dtype=state_dtype,
        dtype=dtype,
        generator=g,
        penalty_bounds=(-0.01, 0.01),
    )
    with torch.no_grad():
        layer.u.copy_(0.2 * torch.randn(5, generator=g))
        layer.bias.copy_(torch.randn(5, generator=g))
    x = torch.randn(rows, 5, generator=g).to(dtype)
    y, ld = layer(x)
    x2, ld2 = layer.inverse(y.detach())
    pen = layer.penalty()
    assert all(t.dtype == dtype for t in (y, ld, x2, ld2, pen))
    (
        y.float().square().sum()
        + ld.float().sum()
        + pen.float()
        + x2.float().sum()
        + ld2.float().sum()
    ).backward()
    for p in (layer.u, layer.v, layer.bias):
        assert p.grad is not None and p.grad.dtype == dtype and bool(torch.isfinite(p.grad).all())
    assert float(pen.detach()) > 0  # the penalty is active, so its gradient path ran
    coarser = max((dtype, state_dtype), key=lambda d: torch.finfo(d).eps)
    assert_forward(
        out=x2.detach().double(),
        expected=x.double(),
        kappa=kappa1(explicit_matrix(layer)),
        dtype=coarser,
    )
    assert torch.equal(ld2.detach(), -ld.detach())  # the same log|det|, negated
    assert layer.merge()  # one guarded update of an orthogonal A: merged, A⁻¹ a fresh-size error
    assert_inverse(
        layer.weight.double(),
        out=layer.weight_inverse.double(),
        dtype=str(state_dtype).removeprefix("torch."),
        updates=1,
    )
    assert layer.check_drift() in ("none", "correct", "refresh")  # runs in every dtype
    assert layer.weight.dtype == state_dtype and bool(torch.isfinite(layer(x)[0]).all())


@pytest.mark.slow
def test_long_float32_training_run_stays_within_bounds(scalar_form):
    """20 000 scheduler steps of a float32 layer (float64 state) against the oracle."""
    n, steps = 16, 20_000
    torch.manual_seed(3)
    layer = P4InvLinear(n, init="orthogonal", monitor=DriftMonitor(every=50))
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    sched = P4Scheduler(torch.nn.Sequential(layer), opt, record=True)
    target = torch.linalg.qr(torch.randn(n, n))[0] @ torch.diag(torch.linspace(0.5, 2.0, n))
    for _ in range(steps):
        x = torch.randn(32, n)
        y, _ld = layer(x)
        loss = ((y - x @ target.T) ** 2).mean() + layer.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    rec = sched.history.arrays()
    exact = ExactMatrix.from_float(rec["0/a0"])
    for u, v in zip(rec["0/u"], rec["0/v"], strict=True):
        exact.apply(u, v)
    truth = evaluate(exact)
    k = len(rec["0/c"])
    assert k > steps // 2  # most steps merged
    assert_sign(out=int(layer.sign), expected=truth.sign)
    assert_inverse(exact.to_float(), out=layer.weight_inverse, updates=k)
    assert_logabsdet(
        out=float(layer.logabsdet),
        expected=truth.logabsdet,
        n=n,
        kappa=truth.kappa,
        dtype="float64",
        updates=k,
    )
