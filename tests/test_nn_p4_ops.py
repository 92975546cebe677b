"""The fused P4Inv kernels: values, gradients (incl. double backward) and the cached checks."""

from __future__ import annotations

import math

import pytest
import torch

from invlin.nn import P4InvLinear
from invlin.nn.p4_ops import perturbed_linear, sherman_morrison_linear
from invlin.testing import assert_forward, kappa1


def _operands(n=5, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q + 0.1 * torch.randn(n, n, generator=g, dtype=torch.float64)
    u, v, b = (0.3 * torch.randn(n, generator=g, dtype=torch.float64) for _ in range(3))
    x = torch.randn(batch, n, generator=g, dtype=torch.float64)
    return a, u, v, b, x


# Fewer rows than n (the rank-one term applied to the output) and more (folded into the matrix).
BATCHES = [3, 12]


@pytest.mark.parametrize("batch", BATCHES)
def test_perturbed_linear_matches_the_explicit_matrix(batch):
    a, u, v, b, x = _operands(batch=batch)
    m = a + torch.outer(u, v)
    assert_forward(
        out=perturbed_linear(x, a, u, v, b), expected=x @ m.T + b, kappa=kappa1(m), dtype="float64"
    )
    assert_forward(
        out=perturbed_linear(x, a, u, v, None), expected=x @ m.T, kappa=kappa1(m), dtype="float64"
    )


@pytest.mark.parametrize("batch", BATCHES)
def test_sherman_morrison_linear_matches_a_dense_solve(batch):
    a, u, v, b, y = _operands(seed=1, batch=batch)
    xinv = torch.linalg.inv(a)
    xu = xinv @ u
    c = 1 + v @ xu
    m = a + torch.outer(u, v)
    expected = torch.linalg.solve(m, (y - b).T).T
    out = sherman_morrison_linear(y, xinv, xu, v, c, b)
    assert_forward(out=out, expected=expected, kappa=kappa1(m), dtype="float64")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_gradients_and_double_backward(with_bias, batch):
    a, u, v, b, x = _operands(n=4, seed=2, batch=batch)
    xinv = torch.linalg.inv(a)
    args = [t.clone().requires_grad_() for t in (x, u, v, b)]

    def fwd(x, u, v, b):
        return perturbed_linear(x, a, u, v, b if with_bias else None)

    assert torch.autograd.gradcheck(fwd, args)
    assert torch.autograd.gradgradcheck(fwd, args)
    xu = (xinv @ u).requires_grad_()
    c = (1 + v @ xinv @ u).requires_grad_()
    args = [
        x.clone().requires_grad_(),
        xu,
        v.clone().requires_grad_(),
        c,
        b.clone().requires_grad_(),
    ]

    def inv(y, xu, v, c, b):
        return sherman_morrison_linear(y, xinv, xu, v, c, b if with_bias else None)

    assert torch.autograd.gradcheck(inv, args)
    assert torch.autograd.gradgradcheck(inv, args)


def test_one_dimensional_input_and_vmap():
    a, u, v, b, x = _operands(seed=3)
    one = perturbed_linear(x[0], a, u, v, b)
    assert one.shape == (5,)
    batched = torch.func.vmap(lambda r: perturbed_linear(r, a, u, v, b))(x)
    assert torch.allclose(batched, perturbed_linear(x, a, u, v, b), rtol=1e-14, atol=0)


def test_inverse_raises_on_singular_factor_even_after_a_cached_check(scalar_form):
    layer = P4InvLinear(3, dtype=torch.float64)
    y = torch.randn(2, 3, dtype=torch.float64)
    layer.inverse(y)  # c checked and remembered for these parameters
    with torch.no_grad():  # c = 1 + vᵀu = 0 now, with A = I
        layer.v.copy_(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
        layer.u.copy_(torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="singular"):
        layer.inverse(y)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([-1.0, math.inf, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="singular"):
        layer.inverse(y)


def test_inverse_check_is_skipped_only_for_unchanged_parameters(monkeypatch):
    # A tensor c (on a GPU: reading it waits for the device) is checked once per value of X, u
    # and v; on the CPU c arrives as a host float and is checked on every call.
    layer = P4InvLinear(3, dtype=torch.float64)
    seen = []
    real = torch.isfinite

    def spy(t):
        seen.append(t.shape)
        return real(t)

    monkeypatch.setattr(torch, "isfinite", spy)
    c = layer.factor().detach()
    layer._require_nonsingular(c)
    layer._require_nonsingular(c)
    assert len(seen) == 1  # checked once
    with torch.no_grad():
        layer.u.add_(0.01)
    layer._require_nonsingular(layer.factor().detach())
    assert len(seen) == 2  # the in-place change bumped u's version
    with pytest.raises(ValueError, match="singular"):
        layer._require_nonsingular(0.0)
    with pytest.raises(ValueError, match="singular"):
        layer._require_nonsingular(float("nan"))


def test_merge_accepts_finite_state_whose_sum_overflows_and_refuses_overflow(scalar_form):
    # The merge proves finiteness by two sums and checks entry by entry only when a sum is not
    # finite: a finite state whose sum overflows must still merge ...
    a = torch.diag(torch.tensor([0.9e308, 0.9e308, 1.0, 1.0], dtype=torch.float64))
    layer = P4InvLinear(4, init=a, dtype=torch.float64)
    assert not math.isfinite(float(layer.weight.sum()))
    with torch.no_grad():
        layer.u.copy_(torch.tensor([0.0, 0.0, 1e-3, 0.0]))
        layer.v.copy_(torch.tensor([0.0, 0.0, 0.1, 0.1]))
    assert layer.merge(force=True)
    assert torch.isfinite(layer.weight).all() and layer.merges == 1
    # ... and an update that overflows is refused with the state untouched (c = 1 is fine).
    layer = P4InvLinear(4, dtype=torch.float64)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([1e300, 0.0, 0.0, 0.0], dtype=torch.float64))
        layer.v.copy_(torch.tensor([0.0, 1e10, 0.0, 0.0]))
    assert float(layer.factor().detach()) == 1.0
    assert not layer.merge(force=True)
    assert torch.equal(layer.weight, torch.eye(4, dtype=torch.float64))
    assert layer.refusals == 1 and layer.nonfinite_resets == 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_host_scalars_agree_with_the_tensor_form_used_off_the_cpu(dtype):
    # On the CPU c, log|c| and log|det| are host floats; on a GPU 0-dim tensors. Both forms run
    # here on the CPU (the tensor one is called directly) and must give the same values.
    from invlin.nn.p4_ops import _factor, forward_products, inverse_products

    a, u, v, _, _ = _operands(n=6)
    xinv = torch.linalg.inv(a)
    logabsdet = torch.linalg.slogdet(a)[1]
    _, xu, c, log_c, ld = forward_products(a.to(dtype), u.to(dtype), v.to(dtype), xinv, logabsdet)
    log_c_t, c_t, xu_t = _factor(u.to(dtype), v.to(dtype), xinv)
    assert isinstance(c, float) and isinstance(ld, float)
    assert torch.equal(xu, xu_t) and c == float(c_t)  # the same float64 sum
    assert log_c == pytest.approx(float(log_c_t), rel=4 * torch.finfo(torch.float64).eps)
    assert ld == pytest.approx(float(logabsdet + log_c_t), rel=1e-15)
    host = inverse_products(xinv.to(dtype), v.to(dtype), logabsdet, xu, c)
    tensor = inverse_products(xinv.to(dtype), v.to(dtype), logabsdet, xu, c_t)
    assert torch.equal(host[0], tensor[0])  # M: a / c divides by c rounded to dtype both ways
    assert host[4] == pytest.approx(float(tensor[4]), rel=torch.finfo(dtype).eps)


def test_the_device_form_runs_on_the_cpu_when_forced(scalar_form, monkeypatch):
    # The scalar_form fixture must really switch paths, or its "device" runs would only repeat
    # the host ones: off the host, c is a 0-dim tensor, nothing is cached, and the merge
    # gathers its scalars with one cat.
    from invlin.nn.p4_ops import forward_products

    layer = P4InvLinear(6, init="orthogonal", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.u.fill_(0.1)
    _, _, c, _, ld = forward_products(
        layer.weight.float(), layer.u, layer.v, layer.weight_inverse, layer.logabsdet
    )
    device = scalar_form == "device"
    assert isinstance(c, torch.Tensor) == device and isinstance(ld, torch.Tensor) == device
    layer(torch.randn(8, 6))
    layer.inverse(torch.randn(8, 6))
    assert bool(layer._products._entries) != device
    cats = []
    real_cat = torch.cat
    monkeypatch.setattr(torch, "cat", lambda *a, **k: cats.append(1) or real_cat(*a, **k))
    assert layer.merge()
    assert len(cats) == (1 if device else 0)


def _run_layer(layer, x):
    """Forward, inverse and penalty of ``layer`` (below the penalty's bound, so every node has
    a gradient), and the parameters' gradients of their sum."""
    layer.zero_grad()
    y, ld = layer(x)
    xi, ldi = layer.inverse(y)
    pen = layer.penalty()
    (y.square().sum() + ld.sum() + xi.sum() + ldi.sum() + pen + layer.log_abs_det()).backward()
    return [t.detach() for t in (y, ld, xi, ldi, pen)] + [
        p.grad.clone() for p in (layer.u, layer.v, layer.bias)
    ]


@pytest.mark.parametrize("batch", BATCHES)
def test_the_c_entry_point_equals_the_public_function_apply(batch, monkeypatch):
    # The layer applies its autograd Functions through torch's C entry point (see _apply), a
    # private API: it must give the very values and gradients of the public Function.apply.
    from invlin.nn import p4_ops

    layer = P4InvLinear(
        6, init="orthogonal", generator=torch.Generator().manual_seed(2), penalty_bounds=(2.0, 15.0)
    )  # log|c| ≈ 0 < 2: the penalty is active
    with torch.no_grad():
        layer.u.normal_(std=0.2, generator=torch.Generator().manual_seed(3))
    x = torch.randn(batch, 6, generator=torch.Generator().manual_seed(4))
    fast = _run_layer(layer, x)
    names = ("_FORWARD", "_INVERSE", "_LOG_ABS_FACTOR", "_PENALTY")
    for name, fn in zip(
        names,
        (p4_ops._Forward, p4_ops._Inverse, p4_ops._LogAbsFactor, p4_ops._Penalty),
        strict=True,
    ):
        assert getattr(p4_ops, name) != fn.apply  # the C entry point is in use
        monkeypatch.setattr(p4_ops, name, fn.apply)
    public = _run_layer(layer, x)
    for f, p in zip(fast, public, strict=True):
        assert torch.equal(f, p)
    assert float(fast[4]) > 0  # the penalty is active, so its node has a gradient too
    assert all(g.abs().sum() > 0 for g in fast[5:])


def test_without_the_c_entry_point_the_public_apply_is_used(monkeypatch):
    from invlin.nn import p4_ops

    monkeypatch.delattr(torch._C, "_FunctionBase")
    assert p4_ops._apply.__wrapped__(p4_ops._Forward) == p4_ops._Forward.apply


@pytest.mark.parametrize("grad", [False, True])
def test_p4_inverse_copies_a_kept_tensor_log_determinant(grad):
    # p4_inverse(kept=True) must not hand out the products' own log|det| tensor (the layer
    # keeps its products between calls); with kept=False it may. Tensor products (the form
    # used off the CPU) are built directly, since on the CPU the layer keeps host floats.
    from invlin.nn.p4_ops import _factor, inverse_products, p4_inverse

    layer = P4InvLinear(4, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        layer.u.fill_(0.2)
    x_s = layer.weight_inverse
    _, c, xu = _factor(layer.u.detach(), layer.v.detach(), x_s)
    products = inverse_products(x_s.float(), layer.v.detach(), layer.logabsdet, xu, c)
    kept = products[4].clone()
    y = torch.randn(6, 4, generator=torch.Generator().manual_seed(12))
    with torch.set_grad_enabled(grad):
        _, ld = p4_inverse(
            y, x_s.float(), x_s, layer.u, layer.v, layer.bias, layer.logabsdet, products, kept=True
        )
    assert ld.data_ptr() != products[4].data_ptr()
    with torch.no_grad():
        ld[0].add_(100.0)  # a view of the caller's own memory
    assert torch.equal(products[4], kept)


def test_penalty_host_tensor_and_relu_forms_agree_bit_for_bit():
    # P(t) = relu(lo − t)² + relu(t − hi)² is computed as d² with d = t − clamp(t, lo, hi) on
    # tensors and on host floats: both must give the definition's bits, slope included, at and
    # beyond the bounds and for ±inf and NaN.
    import math

    from invlin.nn.p4_ops import _penalty_excess, _penalty_host, _penalty_value, _penalty_wslope

    lo, hi, weight = -2.0, 15.0, 0.1
    inf, nan = math.inf, math.nan
    ts = [-inf, -1e300, -7.3, -2.0, -2.0 + 1e-15, 0.0, 3.1, 15.0, 15.5, 1e300, inf, nan]
    for log_c in ts:
        for logabsdet in (0.0, -4.2, 9.9, 30.0):
            t = torch.tensor([log_c, log_c + logabsdet], dtype=torch.float64)
            below, above = torch.relu(lo - t), torch.relu(t - hi)
            value = weight * (below.square() + above.square()).sum()
            slope = weight * (2 * (above - below).sum())
            d = _penalty_excess(
                torch.tensor(log_c, dtype=torch.float64),
                torch.tensor(logabsdet, dtype=torch.float64),
                lo,
                hi,
            )
            host = _penalty_host(log_c, logabsdet, lo, hi, weight)
            for got, want in (
                (_penalty_value(d, weight), value),
                (host[0], value),
                (_penalty_wslope(d, weight), slope),
                (host[1], slope),
            ):
                got = torch.as_tensor(got, dtype=torch.float64)
                assert torch.equal(got, want) or (got.isnan() and want.isnan()), (
                    log_c,
                    logabsdet,
                    float(got),
                    float(want),
                )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_fused_rounding_gives_the_bits_of_an_operation_and_a_cast(dtype):
    # _into(op, a, b, dtype) writes op(a, b) into a dtype tensor: the same bits as
    # op(a, b).to(dtype), one kernel instead of two where nothing records; recorded, the
    # operation and the cast stay (differentiable).
    from benchmarks.ops import count_ops
    from invlin.nn.p4_ops import _into, _widened

    g = torch.Generator().manual_seed(3)
    k = torch.randn((), generator=g, dtype=torch.float64) * 1e3
    vec = torch.randn(257, generator=g, dtype=torch.float64) * 1e-2
    for op, a, b in (
        (torch.mul, k, vec),
        (torch.add, k, vec),
        (torch.sub, -k, k / 7),
        (torch.mul, vec.square().sum(), 0.1),
        (torch.div, vec, k),
    ):
        want = op(a, b).to(dtype)
        got = _into(op, a, b, dtype)
        assert got.dtype == dtype and got.shape == want.shape
        assert torch.equal(got, want), (op, dtype)
        with torch.no_grad():
            assert count_ops(lambda op=op, a=a, b=b: _into(op, a, b, dtype))["kernels"] == 1
        assert count_ops(lambda op=op, a=a, b=b: _into(op, a, b, dtype))["kernels"] == (
            1 if dtype == torch.float64 else 2
        )  # grad mode on: the operation and a cast
    leaf = k.clone().requires_grad_()
    out = _into(torch.mul, leaf, vec, dtype)
    out.float().sum().backward()
    assert out.dtype == dtype and torch.equal(leaf.grad, vec.sum().to(torch.float64))
    # a narrower 0-dim gradient enters a float64 operation exactly: no cast of its own
    g32 = torch.tensor(0.3, dtype=torch.float32)
    assert _widened(g32, torch.float64) is g32
    assert _widened(k, torch.float32).dtype == torch.float32
