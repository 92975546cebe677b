"""Tests of the torch P4InvLinear layer, its drift monitor and the P4Scheduler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from invlin.nn.monitor import DriftMonitor
from invlin.nn.p4 import P4InvLinear
from invlin.nn.scheduler import MergeHistory, P4Scheduler, reset_optimizer_state
from invlin.oracle import ExactMatrix, evaluate
from invlin.reference.rank_one import Guard, TrackedMatrix
from invlin.testing import (
    assert_forward,
    assert_inverse,
    assert_logabsdet,
    assert_sign,
    kappa1,
)


def _layer(n=6, seed=0, dtype=torch.float64, **kw):
    g = torch.Generator().manual_seed(seed)
    layer = P4InvLinear(n, init="orthogonal", generator=g, dtype=dtype, **kw)
    with torch.no_grad():
        layer.u.copy_(0.3 * torch.randn(n, generator=g, dtype=dtype))
        layer.bias.copy_(torch.randn(n, generator=g, dtype=dtype))
    return layer


def _matrix(layer):
    return (layer.weight + torch.outer(layer.u.double(), layer.v.double())).detach().numpy()


def _state(layer):
    return tuple(
        getattr(layer, k).detach().clone()
        for k in ("weight", "weight_inverse", "logabsdet", "sign")
    )


def _same(s1, s2):
    return all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(s1, s2, strict=True))


def test_forward_inverse_logdet_match_explicit_perturbed_matrix(scalar_form):
    layer = _layer()
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    y, ld = layer(x)
    m = _matrix(layer)
    kappa = kappa1(m)
    expected = x.numpy() @ m.T + layer.bias.detach().numpy()
    assert y.shape == x.shape and ld.shape == (3, 4)
    assert_forward(out=y.detach(), expected=expected, kappa=kappa, dtype="float64")
    _sign, logdet = np.linalg.slogdet(m)
    assert_logabsdet(out=ld.detach(), expected=logdet, n=6, kappa=kappa, dtype="float64")
    xr, ldi = layer.inverse(y)
    assert_forward(out=xr.detach(), expected=x, kappa=kappa, dtype="float64")
    assert torch.equal(ldi, -ld)


def test_logdet_matches_autograd_jacobian(scalar_form):
    layer = _layer(5, seed=1)
    x = torch.randn(5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: layer(t)[0], x)
    _sign, logdet = torch.linalg.slogdet(jac)
    _, ld = layer(x)
    kappa = kappa1(jac)
    assert_logabsdet(out=ld.detach(), expected=logdet, n=5, kappa=kappa, dtype="float64")
    jinv = torch.autograd.functional.jacobian(lambda t: layer.inverse(t)[0], layer(x)[0].detach())
    assert_logabsdet(
        out=layer.inverse(layer(x)[0])[1].detach(),
        expected=torch.linalg.slogdet(jinv)[1],
        n=5,
        kappa=kappa,
        dtype="float64",
    )


def test_gradcheck_u_v_bias_forward_and_inverse(scalar_form):
    layer = _layer(4, seed=2)
    x = torch.randn(3, 4, dtype=torch.float64)
    params = tuple(p.detach().clone().requires_grad_() for p in (layer.u, layer.v, layer.bias))

    def call(method):
        def f(u, v, b):
            return (
                torch.func.functional_call(
                    layer, {"u": u, "v": v, "bias": b}, (x,), {} if method == "forward" else None
                )
                if method == "forward"
                else _inverse(u, v, b)
            )

        return f

    def _inverse(u, v, b):
        return torch.func.functional_call(
            _InverseCall(layer), {"l.u": u, "l.v": v, "l.bias": b}, (x,)
        )

    assert torch.autograd.gradcheck(call("forward"), params)
    assert torch.autograd.gradcheck(call("inverse"), params)


class _InverseCall(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.l = layer

    def forward(self, y):
        return self.l.inverse(y)


def test_penalty_inside_its_bounds_adds_no_gradient():
    # Inside the bounds P is flat: the penalty's backward adds nothing (and runs no operations),
    # so the gradients of forward + penalty are those of the forward alone, bit for bit.
    layer = P4InvLinear(
        4, init="orthogonal", dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        layer.u.copy_(torch.tensor([0.1, -0.2, 0.05, 0.3], dtype=torch.float64))
    x = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lo, hi = layer.penalty_bounds
    assert lo < float(torch.log(torch.abs(layer.factor().detach()))) < hi
    pen = layer.penalty()
    assert float(pen.detach()) == 0.0
    pen.backward()
    assert layer.u.grad is None and layer.v.grad is None
    grads = []
    for with_penalty in (False, True):
        layer.zero_grad(set_to_none=True)
        y, ld = layer(x)
        loss = y.square().sum() - ld.sum() + (layer.penalty() if with_penalty else 0.0)
        loss.backward()
        grads.append([p.grad.clone() for p in (layer.u, layer.v, layer.bias)])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_penalty_gradcheck_and_values(scalar_form):
    layer = P4InvLinear(3, dtype=torch.float64)
    assert float(layer.penalty().detach()) == 0.0  # c = 1, det = 1 inside the bounds
    with torch.no_grad():
        layer.u.copy_(torch.tensor([math.exp(-4.0) - 1, 0, 0], dtype=torch.float64))
        layer.v.copy_(torch.tensor([1.0, 0, 0], dtype=torch.float64))
    # log|c| = -4: P = (−2 − (−4))² = 4 for both terms (det A = 1) -> 0.1 · 8
    assert float(layer.penalty().detach()) == pytest.approx(0.8, rel=1e-12)
    # c = e^-4 sits below the lower bound, so gradcheck runs through the lower relu branch.
    u = layer.u.detach().clone().requires_grad_()
    v = layer.v.detach().clone().requires_grad_()

    class _Penalty(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = layer

        def forward(self):
            return self.l.penalty()

    def pen(u, v):
        return torch.func.functional_call(_Penalty(), {"l.u": u, "l.v": v}, ())

    assert torch.autograd.gradcheck(pen, (u, v))


def test_merge_leaves_function_unchanged_and_resets_perturbation(scalar_form):
    layer = _layer(8, seed=3)
    x = torch.randn(10, 8, dtype=torch.float64)
    y0, ld0 = layer(x)
    xi0, ldi0 = layer.inverse(y0.detach())
    m = _matrix(layer)
    assert layer.merge()
    assert torch.count_nonzero(layer.u) == 0
    y1, ld1 = layer(x)
    xi1, ldi1 = layer.inverse(y0.detach())
    kappa = kappa1(m)
    assert_forward(out=y1.detach(), expected=y0.detach(), kappa=kappa, dtype="float64", updates=1)
    assert_forward(out=xi1.detach(), expected=xi0.detach(), kappa=kappa, dtype="float64", updates=1)
    # The same lemma is evaluated before and after: log|det| agrees to rounding of one addition.
    assert_logabsdet(out=ld1.detach(), expected=ld0.detach(), n=8, kappa=kappa, dtype="float64")
    assert_logabsdet(out=ldi1.detach(), expected=ldi0.detach(), n=8, kappa=kappa, dtype="float64")
    assert_inverse(m, out=layer.weight_inverse, updates=1)


def test_train_and_eval_agree(scalar_form):
    layer = _layer(5, seed=4)
    x = torch.randn(4, 5, dtype=torch.float64)
    layer.train()
    y_train, ld_train = layer(x)
    layer.eval()
    y_eval, ld_eval = layer(x)
    assert torch.equal(y_train, y_eval) and torch.equal(ld_train, ld_eval)


def test_sign_and_init_options():
    assert int(P4InvLinear(3, init="reverse").sign) == -1  # one swap
    assert int(P4InvLinear(4, init="reverse").sign) == 1  # two swaps
    a = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    layer = P4InvLinear(2, init=a)
    assert int(layer.sign) == -1 and float(layer.logabsdet) == pytest.approx(math.log(6.0))
    orth = P4InvLinear(6, init="orthogonal").weight
    assert torch.allclose(orth @ orth.T, torch.eye(6, dtype=torch.float64), atol=1e-14)
    with pytest.raises(ValueError, match="init must be"):
        P4InvLinear(2, init="nope")
    with pytest.raises(ValueError, match="invertible"):
        P4InvLinear(2, init=torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"init must be a \(3, 3\) matrix"):
        P4InvLinear(3, init=torch.eye(2))
    with pytest.raises(ValueError, match="features"):
        P4InvLinear(0)


def test_state_dtype_survives_to_and_float32_compute():
    layer = P4InvLinear(4, init="orthogonal").float()
    assert layer.weight.dtype == torch.float64 and layer.u.dtype == torch.float32
    x = torch.randn(3, 4)
    y, ld = layer(x)
    assert y.dtype == torch.float32 and ld.dtype == torch.float32
    assert layer.inverse(y)[0].dtype == torch.float32
    follow = P4InvLinear(4, state_dtype=None).double()
    assert follow.weight.dtype == torch.float64
    follow = follow.float()
    assert follow.weight.dtype == torch.float32


def test_state_dict_round_trip_is_exact():
    layer = _layer(6, seed=5)
    for _ in range(5):
        with torch.no_grad():
            layer.u.normal_(std=0.1)
        layer.merge()
    sd = layer.state_dict()
    other = P4InvLinear(6, dtype=torch.float64)
    other.load_state_dict(sd)
    assert _same(_state(layer), _state(other))
    x = torch.randn(2, 6, dtype=torch.float64)
    assert torch.equal(layer(x)[0], other(x)[0])


def test_bad_inputs_and_nonfinite_perturbation(scalar_form):
    layer = _layer(4, seed=6)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 4\)"):
        layer(torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating"):
        layer(torch.ones(2, 4, dtype=torch.int64))
    before = _state(layer)
    with torch.no_grad():
        layer.v[1] = float("nan")
    assert layer.merge() is False
    assert _same(before, _state(layer))
    assert torch.count_nonzero(layer.u) == 0 and torch.isfinite(layer.v).all()
    assert layer.counters["nonfinite_resets"] == 1


def test_guard_refusal_keeps_state_and_perturbation(scalar_form):
    layer = P4InvLinear(3, dtype=torch.float64)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([math.exp(-7.0) - 1, 0, 0], dtype=torch.float64))
        layer.v.copy_(torch.tensor([1.0, 0, 0], dtype=torch.float64))
    before, u = _state(layer), layer.u.detach().clone()
    assert layer.merge() is False
    assert _same(before, _state(layer)) and torch.equal(layer.u, u)
    assert layer.merge(force=True) is True  # forced: bounds skipped
    assert float(layer.logabsdet) == pytest.approx(-7.0)


def test_agrees_with_numpy_reference_and_oracle_after_merges(scalar_form):
    n, k = 10, 200
    g = torch.Generator().manual_seed(7)
    layer = P4InvLinear(n, init="orthogonal", generator=g, dtype=torch.float64, guard=Guard.off())
    ref = TrackedMatrix(layer.weight.numpy(), guard=Guard.off())
    exact = ExactMatrix.from_float(layer.weight.numpy())
    for _ in range(k):
        with torch.no_grad():
            layer.u.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.05 / n**0.5)
        u, v = layer.u.detach().numpy().copy(), layer.v.detach().numpy().copy()
        assert layer.merge()
        ref.update(u, v)
        exact.apply(u, v)
    truth = evaluate(exact)
    assert_sign(out=int(layer.sign), expected=truth.sign)
    assert int(layer.sign) == ref.sign
    assert_inverse(exact.to_float(), out=layer.weight_inverse, updates=k)
    assert_forward(
        out=layer.weight_inverse,
        expected=ref.inverse,
        kappa=truth.kappa,
        dtype="float64",
        updates=k,
    )
    assert_logabsdet(
        out=float(layer.logabsdet),
        expected=truth.logabsdet,
        n=n,
        kappa=truth.kappa,
        dtype="float64",
        updates=k,
    )


def test_monitor_corrects_planted_drift_and_refreshes_large_drift(scalar_form):
    layer = P4InvLinear(12, init="orthogonal", dtype=torch.float64, monitor=DriftMonitor())
    with torch.no_grad():
        layer.weight_inverse.add_(1e-9 * torch.randn(12, 12, dtype=torch.float64))
    reading = layer.probe()
    assert reading.ratio > 100
    assert layer.check_drift() == "correct" and layer.corrections == 1
    assert_inverse(layer.weight, out=layer.weight_inverse)
    with torch.no_grad():
        layer.weight_inverse.add_(torch.randn(12, 12, dtype=torch.float64))
        layer.logabsdet.add_(0.5)
    assert layer.check_drift() == "refresh" and layer.refreshes == 1
    assert_inverse(layer.weight, out=layer.weight_inverse)
    assert float(layer.logabsdet) == pytest.approx(0.0, abs=1e-12)  # orthogonal: |det| = 1
    assert layer.check_drift() == "none"


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


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"penalty_bounds": ("a", 1.0)}, "penalty_bounds"),
        ({"penalty_bounds": (math.nan, 1.0)}, "penalty_bounds"),
        ({"penalty_bounds": (0.0, 1.0, 2.0)}, "penalty_bounds"),
        ({"penalty_bounds": (3.0, 1.0)}, "penalty_bounds"),
        ({"state_dtype": torch.int64}, "state_dtype"),
        ({"dtype": torch.int32}, "dtype"),
        ({"dtype": torch.complex64}, "dtype"),
        ({"monitor": "every merge"}, "monitor"),
        ({"guard": (0.0, 1.0)}, "guard"),
    ],
)
def test_bad_constructor_arguments_are_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must"):
        P4InvLinear(3, **kwargs)


@pytest.mark.parametrize("weight", [-0.1, math.inf, math.nan, "0.1", None, True])
def test_penalty_refuses_a_bad_weight(weight):
    layer = _layer(4)
    before = _state(layer)
    with pytest.raises(ValueError, match=r"^weight must be a finite number >= 0"):
        layer.penalty(weight=weight)
    assert _same(before, _state(layer))
    assert float(layer.penalty(weight=0).detach()) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"merge_every": None}, "merge_every"),
        ({"merge_every": True}, "merge_every"),
        ({"force_every": 0}, "force_every"),
        ({"correct_every": 2.0}, "correct_every"),
        ({"reset": ("w",)}, "reset"),
        ({"reset": "weight"}, "reset"),
        ({"reset": (1,)}, "reset"),
    ],
)
def test_scheduler_refuses_bad_settings_by_name(kwargs, name):
    layer = _layer(3)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=f"^{name} must"):
        P4Scheduler(layer, opt, **kwargs)
    with pytest.raises(ValueError, match=r"^optimizer must be a torch\.optim\.Optimizer"):
        P4Scheduler(layer, [opt])
    assert P4Scheduler(layer, opt, reset="bias").reset == ("bias",)  # one name as a string


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
        out=x2.detach().double(), expected=x.double(), kappa=kappa1(_matrix(layer)), dtype=coarser
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
