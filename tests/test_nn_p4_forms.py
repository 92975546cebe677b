"""P4InvLinear's two forms of the per-call scalars (host floats on the CPU, 0-dim tensors
elsewhere) and its autograd entry points give the same values."""

from __future__ import annotations

import pytest
import torch
from p4_helpers import (
    BATCHES,
    make_layer,
    operands,
)

from invlin.nn import P4InvLinear, p4_ops


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_host_scalars_agree_with_the_tensor_form_used_off_the_cpu(dtype):
    # On the CPU c, log|c| and log|det| are host floats; on a GPU 0-dim tensors. Both forms run
    # here on the CPU (the tensor one is called directly) and must give the same values.
    from invlin.nn.p4_ops import Parts, factor, forward_products, inverse_products

    a, u, v, _, _ = operands(n=6)
    xinv = torch.linalg.inv(a)
    logabsdet = torch.linalg.slogdet(a)[1]
    parts = Parts(u.to(dtype), v.to(dtype), None, a, xinv, logabsdet)
    fwd = forward_products(a.to(dtype), parts)
    xu, c, log_c = fwd.factor
    ld = fwd.logdet
    t = factor(u.to(dtype), v.to(dtype), xinv)
    assert isinstance(c, float) and isinstance(ld, float)
    assert torch.equal(xu, t.xu) and c == float(t.c)  # the same float64 sum
    assert log_c == pytest.approx(float(t.log_c), rel=4 * torch.finfo(torch.float64).eps)
    assert ld == pytest.approx(float(logabsdet + t.log_c), rel=1e-15)
    host = inverse_products(xinv.to(dtype), parts, fwd.factor)
    tensor = inverse_products(xinv.to(dtype), parts, t)
    assert torch.equal(host.matrix, tensor.matrix)  # M: Xu / c divides by c rounded to dtype
    assert host.logdet == pytest.approx(float(tensor.logdet), rel=torch.finfo(dtype).eps)


def test_the_device_form_runs_on_the_cpu_when_forced(scalar_form, monkeypatch):
    # The scalar_form fixture must really switch paths, or its "device" runs would only repeat
    # the host ones: off the host, c is a 0-dim tensor, nothing is cached, and the merge
    # gathers its scalars with one cat.
    from invlin.nn.p4_ops import Parts, forward_products

    layer = P4InvLinear(6, init="orthogonal", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.u.fill_(0.1)
    parts = Parts(layer.u, layer.v, layer.bias, layer.weight, layer.weight_inverse, layer.logabsdet)
    products = forward_products(layer.weight.float(), parts)
    c, ld = products.factor.c, products.logdet
    device = scalar_form == "device"
    assert isinstance(c, torch.Tensor) == device and isinstance(ld, torch.Tensor) == device
    layer(torch.randn(8, 6))
    layer.inverse(torch.randn(8, 6))
    assert bool(layer.products_cached) != device
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

    layer = P4InvLinear(
        6, init="orthogonal", generator=torch.Generator().manual_seed(2), penalty_bounds=(2.0, 15.0)
    )  # log|c| ≈ 0 < 2: the penalty is active
    with torch.no_grad():
        layer.u.normal_(std=0.2, generator=torch.Generator().manual_seed(3))
    x = torch.randn(batch, 6, generator=torch.Generator().manual_seed(4))
    fast = _run_layer(layer, x)
    names = ("_FORWARD", "_INVERSE", "_PENALTY")
    for name, fn in zip(
        names,
        (p4_ops._Forward, p4_ops._Inverse, p4_ops._Penalty),
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

    monkeypatch.delattr(torch._C, "_FunctionBase")
    assert p4_ops._apply.__wrapped__(p4_ops._Forward) == p4_ops._Forward.apply


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


def test_device_form_switches_the_form_nests_and_ends_with_its_block():
    # Inside device_form() a CPU layer takes the device form: tensor c, nothing kept between
    # calls; the form returns when the outermost block ends, also by an exception.
    layer = make_layer(4)
    x = torch.randn(8, 4, dtype=torch.float64)
    with p4_ops.device_form():
        with p4_ops.device_form():
            assert not p4_ops.on_host(x)
        assert not p4_ops.on_host(x)  # the outer block still holds after the inner ends
        layer(x)
        assert not layer.products_cached
        assert isinstance(p4_ops.factor(layer.u, layer.v, layer.weight_inverse).c, torch.Tensor)
    with pytest.raises(RuntimeError, match="boom"), p4_ops.device_form():
        raise RuntimeError("boom")
    assert p4_ops.on_host(x)
    layer(x)
    assert len(layer.products_cached) == 1  # the host form keeps the forward's products
