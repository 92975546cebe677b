"""P4InvLinear's product cache and y − b buffer: reused only for unchanged values, never stale."""

from __future__ import annotations

import contextlib
import math
import threading

import pytest
import torch

import invlin.nn.p4 as p4_module
from invlin.nn import P4InvLinear, cached_products, p4_ops
from invlin.nn.p4_cache import ProductCache
from invlin.reference.rank_one import Guard

N, BATCH = 6, 10  # BATCH ≥ N: the matrices are formed and cached


def _layer(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    layer = P4InvLinear(N, init="orthogonal", generator=g, dtype=dtype, guard=Guard.off())
    with torch.no_grad():
        layer.u.copy_(0.3 * torch.randn(N, generator=g, dtype=dtype))
        layer.bias.copy_(torch.randn(N, generator=g, dtype=dtype))
    return layer


def _fresh(layer):
    copy = P4InvLinear(N, init=layer.weight.detach().clone(), dtype=layer.u.dtype)
    copy.load_state_dict(layer.state_dict())
    return copy


def _calls(layer):
    x = torch.randn(BATCH, N, generator=torch.Generator().manual_seed(9), dtype=layer.u.dtype)
    y, ld = layer(x)
    xi, ldi = layer.inverse(y.detach())
    return [t.detach().clone() for t in (y, ld, xi, ldi)]


def _equal(a, b):
    return all(torch.equal(s, t) for s, t in zip(a, b, strict=True))


@pytest.fixture
def spy(monkeypatch):
    """Counts how often the forward and inverse products are computed."""
    counts = {"forward": 0, "inverse": 0}
    for kind in counts:
        real = getattr(p4_module, f"{kind}_products")

        def wrapped(*args, _real=real, _kind=kind, **kwargs):
            counts[_kind] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(p4_module, f"{kind}_products", wrapped)
    return counts


def test_unchanged_values_reuse_the_products_and_give_the_same_bits(spy):
    layer = _layer()
    first = _calls(layer)
    second = _calls(layer)
    assert spy == {"forward": 1, "inverse": 1}
    assert _equal(first, second) and _equal(second, _calls(_fresh(layer)))
    assert spy == {"forward": 2, "inverse": 2}  # the copy computed its own once


@pytest.mark.parametrize(
    "change",
    ["u in place", "v in place", "u via .data", "v via .data", "u element", "bias in place"],
)
def test_a_changed_parameter_changes_the_outputs(change, spy):
    layer = _layer(1)
    before = _calls(layer)
    with torch.no_grad():
        if change == "u in place":
            layer.u.add_(0.05)
        elif change == "v in place":
            layer.v.mul_(1.1)
        elif change == "u via .data":  # bypasses the version counter, as gradcheck does
            layer.u.data.add_(0.05)
        elif change == "v via .data":
            layer.v.data[2] += 0.5
        elif change == "u element":
            layer.u[3] = -0.2
        else:
            layer.bias.add_(1.0)
    after = _calls(layer)
    recomputed = dict(spy)
    assert not torch.equal(after[0], before[0]) and not torch.equal(after[2], before[2])
    assert _equal(after, _calls(_fresh(layer)))  # and they are the new values' outputs
    if change != "bias in place":
        assert not torch.equal(after[1], before[1])  # log|det| follows u and v
        assert recomputed == {"forward": 2, "inverse": 2}
    else:  # b is applied per call, not kept
        assert recomputed == {"forward": 1, "inverse": 1}


@pytest.mark.parametrize("change", ["merge", "refresh", "correct", "state copy_", "load"])
def test_a_changed_state_changes_the_outputs(change):
    layer = _layer(2, dtype=torch.float64)
    other = _layer(3, dtype=torch.float64)
    _calls(layer)
    if change == "merge":
        assert layer.merge(force=True)
        with torch.no_grad():
            layer.u.normal_(std=0.1)  # v was redrawn by the merge, u is zero: make it live
    elif change == "refresh":
        with torch.no_grad():
            layer.weight.mul_(2.0)  # A changed, X and log|det| refreshed from it below
        layer.refresh()
    elif change == "correct":
        with torch.no_grad():
            layer.weight_inverse.mul_(1 + 1e-6)  # planted drift, removed by the correction
        assert layer.correct()
    elif change == "state copy_":
        with torch.no_grad():
            layer.weight.copy_(other.weight)
            layer.weight_inverse.copy_(other.weight_inverse)
            layer.logabsdet.copy_(other.logabsdet)
            layer.sign.copy_(other.sign)
    else:
        layer.load_state_dict(other.state_dict())
    assert _equal(_calls(layer), _calls(_fresh(layer)))


def test_functional_call_uses_the_substituted_parameters():
    layer = _layer(4)
    _calls(layer)
    x = torch.randn(BATCH, N)
    u = layer.u.detach() + 0.1
    y, ld = torch.func.functional_call(layer, {"u": u}, (x,))
    with torch.no_grad():
        layer.u.copy_(u)
    y2, ld2 = layer(x)
    assert torch.equal(y, y2) and torch.equal(ld, ld2)


def test_returned_log_determinants_are_not_the_cached_tensors():
    layer = _layer(5)
    x = torch.randn(N)  # one sample: log|det| of shape (), writable in place
    with torch.no_grad():
        _, ld = layer(torch.randn(BATCH, N))
        _, ld1 = layer(x)
        ld1 += 100.0
        _, ld2 = layer(x)
    assert torch.equal(ld2, ld[0])


def test_inverse_outputs_do_not_share_the_reused_buffer():
    layer = _layer(6)
    y1, y2 = torch.randn(BATCH, N), torch.randn(BATCH, N)
    x1, _ = layer.inverse(y1)
    keep = x1.detach().clone()
    x2, _ = layer.inverse(y2)
    assert torch.equal(x1, keep) and not torch.equal(x1, x2)
    assert torch.equal(layer(x1)[0].detach(), layer(x1)[0].detach())


def test_concurrent_inverses_agree_with_serial_ones():
    layer = _layer(7)
    ys = [torch.randn(BATCH, N, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    with torch.no_grad():
        serial = [layer.inverse(y)[0] for y in ys]
    results: dict[int, torch.Tensor] = {}

    def run(i):
        with torch.no_grad():
            for _ in range(50):
                results[i] = layer.inverse(ys[i])[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(results[i], serial[i]) for i in range(8))


def test_products_are_kept_only_on_the_cpu_outside_transforms():
    layer = _layer(8)
    x = torch.randn(BATCH, N)
    with torch.no_grad():
        plain = layer(x)
        mapped = torch.func.vmap(layer)(x)  # per-sample calls: nothing kept or reused
    assert torch.equal(plain[1], mapped[1])
    assert not ProductCache.usable(torch.empty(0, device="meta"))


def test_cached_log_determinant_is_copied_out_for_a_single_feature():
    # n = 1: one sample already fills the n×n threshold, so its log|det| comes from the cache.
    layer = P4InvLinear(1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.u.fill_(0.5)
        _, ld1 = layer(torch.ones(1))
        ld1 += 100.0  # the caller's tensor, not the cache's
        _, ld2 = layer(torch.ones(1))
    c = 1.0 + 0.5 * float(layer.v.detach()[0])  # det(1 + u v) for A = 1
    assert float(ld2) == pytest.approx(math.log(abs(c)), rel=1e-6)
    outs = [layer(torch.ones(1))[1] for _ in range(2)]  # autograd: two outputs, two nodes
    torch.autograd.backward([o.sum() for o in outs])
    assert layer.u.grad is not None and torch.isfinite(layer.u.grad).all()
    kept = layer.products_cached
    values = [t for p in kept for t in (p.matrix, *p.factor, p.logdet)]
    assert kept and all(not isinstance(t, torch.Tensor) or not t.requires_grad for t in values)


@pytest.mark.parametrize("n", [1, N])  # n = 1: one sample fills the n×n threshold (cached path)
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_a_returned_log_determinant_written_in_place_leaves_later_calls_alone(
    n, direction, scalar_form
):
    # Whether the products were kept (CPU) or made for this call only (device form), the
    # log|det| a call returns must be the caller's own tensor.
    layer = P4InvLinear(n, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        layer.u.fill_(0.3)
    call = layer if direction == "forward" else layer.inverse
    t = torch.randn(n, generator=torch.Generator().manual_seed(10))  # one sample: shape ()
    with torch.no_grad():
        _, first = call(t)
        keep = first.clone()
        first += 100.0
        _, again = call(t)
    assert torch.equal(again, keep)


# -- cached_products(): the opt-in, version-keyed form that also works off the CPU -------------


def _outputs_and_grads(layer, *, cached):
    """Forward and inverse outputs (bit patterns) and the parameter gradients of both."""
    x = torch.randn(BATCH, N, generator=torch.Generator().manual_seed(11), dtype=layer.u.dtype)
    ctx = cached_products() if cached else contextlib.nullcontext()
    layer.zero_grad(set_to_none=True)
    with ctx:
        y, ld = layer(x)
        xi, ldi = layer.inverse(y.detach() + 0.5)
        (y.square().sum() + ld.sum() + xi.sum() + 2 * ldi.sum()).backward()
    grads = [p.grad.clone() for p in (layer.u, layer.v, layer.bias)]
    return [t.detach().clone() for t in (y, ld, xi, ldi)] + grads


def test_cached_products_keep_the_products_on_every_form_with_the_same_bits(scalar_form, spy):
    layer = _layer(12)
    plain = _outputs_and_grads(layer, cached=False)
    spy.update(forward=0, inverse=0)
    first = _outputs_and_grads(layer, cached=True)
    second = _outputs_and_grads(layer, cached=True)
    # The host form reuses what the plain calls kept; the device form, which keeps nothing
    # outside the context, makes each product once inside it and reuses it after that.
    assert spy == (
        {"forward": 0, "inverse": 0} if scalar_form == "host" else {"forward": 1, "inverse": 1}
    )
    assert _equal(first, plain) and _equal(second, plain)


@pytest.mark.parametrize(
    "change", ["u in place", "optimizer step", "merge", "state copy_", "load", "u replaced"]
)
def test_cached_products_see_every_change_made_by_a_tensor_operation(change, scalar_form):
    layer, other = _layer(13, dtype=torch.float64), _layer(14, dtype=torch.float64)
    with cached_products():
        before = _calls(layer)
        if change == "u in place":
            with torch.no_grad():
                layer.u.add_(0.05)
        elif change == "optimizer step":
            opt = torch.optim.SGD(layer.parameters(), lr=0.1)
            layer(torch.randn(BATCH, N, dtype=torch.float64))[0].sum().backward()
            opt.step()
        elif change == "merge":
            assert layer.merge(force=True)
            with torch.no_grad():
                layer.u.normal_(std=0.1)
        elif change == "state copy_":
            with torch.no_grad():
                for name in ("weight", "weight_inverse", "logabsdet", "sign"):
                    getattr(layer, name).copy_(getattr(other, name))
        elif change == "load":
            layer.load_state_dict(other.state_dict())
        else:  # a new tensor behind the same parameter (new data pointer)
            layer.u.data = layer.u.data + 0.05
        after = _calls(layer)
    assert not torch.equal(after[0], before[0])
    assert _equal(after, _calls(_fresh(layer)))


def test_cached_products_trust_versions_inside_and_compare_values_again_outside():
    # The documented limit: a write through .data keeps u's version, so inside the context
    # the kept products are used unchanged; outside, the CPU's value compare sees the write,
    # and entries made inside (without a copy of u and v) are never used there.
    layer = _layer(15)
    with cached_products():
        before = _calls(layer)
        layer.u.data.add_(0.05)
        assert _equal(_calls(layer), before)  # not seen: the contract, as documented
    after = _calls(layer)
    assert not torch.equal(after[0], before[0])
    assert _equal(after, _calls(_fresh(layer)))
    with cached_products():
        inside = _calls(layer)  # an entry without copies of u and v...
    layer.v.data.mul_(1.5)
    assert _equal(_calls(layer), _calls(_fresh(layer)))  # ...is not used outside
    assert not _equal(_calls(layer), inside)


def test_cached_products_nest_and_end_with_their_block():
    meta = torch.empty(0, device="meta")  # off the host: kept only inside cached_products()
    assert not ProductCache.usable(meta)
    with cached_products():
        with cached_products():
            assert ProductCache.usable(meta)
        assert ProductCache.usable(meta)  # the outer block still holds after the inner ends
    with pytest.raises(RuntimeError, match="boom"), cached_products():
        raise RuntimeError("boom")
    assert not ProductCache.usable(meta)  # ended, also by an exception


def test_the_penalty_reuses_the_forward_products_inside_cached_products(monkeypatch):
    # Device form: outside the context the penalty computes Xu and c again; inside it takes
    # them from the forward's entry, and the value and gradients are the same bits.
    calls = [0]
    real = p4_ops.factor

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(p4_ops, "factor", counted)
    results = []
    for cached in (False, True):
        layer = _layer(16)
        layer.penalty_bounds = (-0.01, 0.01)  # active: the penalty has a gradient
        ctx = cached_products() if cached else contextlib.nullcontext()
        calls[0] = 0
        with p4_ops.device_form(), ctx:
            _, ld = layer(torch.randn(BATCH, N, generator=torch.Generator().manual_seed(1)))
            pen = layer.penalty(1.0)
            (ld.sum() + pen).backward()
        results.append((calls[0], pen.detach(), layer.u.grad, layer.v.grad))
    (n_plain, *plain), (n_cached, *cached_) = results
    assert n_cached < n_plain
    assert all(torch.equal(a, b) for a, b in zip(plain, cached_, strict=True))
    assert float(plain[0]) > 0.0


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


@pytest.mark.parametrize("grad", [False, True])
def test_p4_inverse_copies_a_kept_tensor_log_determinant(grad):
    # p4_inverse(kept=True) must not hand out the products' own log|det| tensor (the layer
    # keeps its products between calls); with kept=False it may. Tensor products (the form
    # used off the CPU) are built directly, since on the CPU the layer keeps host floats.
    from invlin.nn.p4_ops import Parts, factor, inverse_products, p4_inverse

    layer = P4InvLinear(4, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        layer.u.fill_(0.2)
    x_s = layer.weight_inverse
    f = factor(layer.u.detach(), layer.v.detach(), x_s)
    parts = Parts(layer.u, layer.v, layer.bias, layer.weight, x_s, layer.logabsdet)
    products = inverse_products(x_s.float(), parts._replace(v=layer.v.detach()), f)
    kept = products.logdet.clone()
    y = torch.randn(6, 4, generator=torch.Generator().manual_seed(12))
    with torch.set_grad_enabled(grad):
        _, ld = p4_inverse(y, x_s.float(), parts, products, kept=True)
    assert ld.data_ptr() != products.logdet.data_ptr()
    with torch.no_grad():
        ld[0].add_(100.0)  # a view of the caller's own memory
    assert torch.equal(products.logdet, kept)
