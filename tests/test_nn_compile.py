"""torch.compile: a flow's forward, NLL, penalty and backward trace to one graph that gives the
eager values, follows merges without recompiling, and inverses still refuse singular maps."""

from __future__ import annotations

import math

import pytest
import torch
from torch._dynamo.backends.registry import lookup_backend

from invlin.nn import (
    BentIdentity,
    InvertibleSequential,
    LeakySoftplus,
    LULinear,
    LUNet,
    P4InvLinear,
    P4Scheduler,
    cached_products,
)
from invlin.testing import assert_forward, assert_logabsdet, kappa1


class _Counting:
    """aot_eager (dynamo + AOTAutograd, no code generation: no compiler needed) that counts the
    graphs it is given (a first compile may be given its graph twice: dynamo restarts its
    analysis once to specialise Python floats)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, inputs: list) -> object:
        self.graphs += 1
        return lookup_backend("aot_eager")(gm, inputs)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _flow(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    flow = InvertibleSequential(
        P4InvLinear(n, init="orthogonal", generator=g, dtype=dtype),
        BentIdentity(),
        P4InvLinear(n, init="orthogonal", generator=g, dtype=dtype),
        LeakySoftplus(),
        LULinear(n, dtype=dtype),
    )
    with torch.no_grad():
        for m in flow:
            if isinstance(m, P4InvLinear):
                m.u.copy_(0.3 * torch.randn(n, generator=g, dtype=dtype))
                m.bias.copy_(torch.randn(n, generator=g, dtype=dtype))
            if isinstance(m, LULinear):
                for p in m.parameters():
                    p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=dtype))
    return flow


def _kappa(flow):
    """Condition number of the flow's map, bounded by the product of its layers' (the
    activations': max/min slope, BentIdentity's in (1/2, 3/2), LeakySoftplus's in [α, 1])."""
    k = 1.0
    for m in flow:
        if isinstance(m, P4InvLinear):
            k *= kappa1((m.weight + torch.outer(m.u.double(), m.v.double())).detach())
        elif isinstance(m, LULinear):
            k *= kappa1(m.weight().detach().double())
        elif isinstance(m, BentIdentity):
            k *= 3.0
        else:
            k /= m.alpha
    return k


def _outputs(flow, x):
    """(z, log|det|, NLL + penalties) of the flow, as a training step computes them."""
    z, ld = flow(x)
    loss = (0.5 * z.square().sum(-1) - ld).mean()
    for m in flow:
        if isinstance(m, P4InvLinear):
            loss = loss + m.penalty()
    return z, ld, loss


@pytest.mark.slow
def test_a_flow_compiles_to_one_graph_with_the_eager_values_and_gradients():
    flow = _flow(5, torch.float64)
    x = torch.randn(7, 5, dtype=torch.float64)
    compiled = torch.compile(_outputs, backend=_Counting(), fullgraph=True)  # a break raises
    z, ld, loss = compiled(flow, x)
    ez, eld, eloss = _outputs(flow, x)
    kappa = _kappa(flow)
    assert_forward(out=z.detach(), expected=ez.detach(), kappa=kappa, dtype="float64")
    assert_logabsdet(out=ld.detach(), expected=eld.detach(), n=5, kappa=kappa, dtype="float64")
    params = list(flow.parameters())
    assert len(params) == 10  # u, v, b twice; L, U, diag(U), b
    got = torch.autograd.grad(loss, params)
    want = torch.autograd.grad(eloss, params)
    for g, e in zip(got, want, strict=True):
        # a gradient is a product of the (κ-conditioned) map's Jacobians: judge it on κ²
        assert_forward(
            out=g.reshape(1, -1), expected=e.reshape(1, -1), kappa=kappa**2, dtype="float64"
        )


@pytest.mark.slow
def test_compiled_steps_follow_merges_without_recompiling():
    """A float32 flow with float64 state trained by a compiled loss: after every merge (A, A⁻¹
    and log|det A| changed in place, u reset) the graph computes what the eager layers do."""
    n, steps = 6, 8
    flow = _flow(n, torch.float32, seed=1)
    x = torch.randn(32, n, generator=torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    sched = P4Scheduler(flow, opt, merge_every=1)
    backend = _Counting()
    compiled = torch.compile(_outputs, backend=backend, fullgraph=True)
    states, graphs = set(), []
    for _ in range(steps):
        z, ld, loss = compiled(flow, x)
        with torch.no_grad():
            ez, eld, _ = _outputs(flow, x)
        kappa = _kappa(flow)
        assert_forward(out=z.detach(), expected=ez, kappa=kappa, dtype="float32")
        assert_logabsdet(out=ld.detach(), expected=eld, n=n, kappa=kappa, dtype="float32")
        states.add(float(flow[0].logabsdet))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        graphs.append(backend.graphs)
    assert graphs[0] >= 1 and graphs[-1] == graphs[0]  # compiled once, never again
    assert sum(c["merges"] for c in sched.counters.values()) == 2 * steps
    assert len(states) == steps  # the state changed at every step


def test_products_are_not_kept_while_compiling():
    """Inside cached_products() a write through .data is not seen by the eager cache; the
    compiled graph keeps nothing between calls and sees it."""
    layer = _flow(4, torch.float64)[0]
    x = torch.randn(8, 4, dtype=torch.float64)
    compiled = torch.compile(layer, backend=_Counting(), fullgraph=True)
    with cached_products():
        compiled(x)
        layer.u.data.mul_(-2.0)  # keeps the version: invisible to the version checks
        y, _ = compiled(x)
    with torch.no_grad():
        w = layer.weight + torch.outer(layer.u, layer.v)
        expected = x @ w.T + layer.bias
    assert_forward(out=y.detach(), expected=expected, kappa=kappa1(w), dtype="float64")


def test_compiled_inverse_matches_and_refuses_a_singular_map():
    layer = _flow(4, torch.float64)[0]
    y = torch.randn(8, 4, dtype=torch.float64)
    # one break: the singularity check reads c on the host, eagerly
    assert torch._dynamo.explain(layer.inverse)(y).graph_break_count == 1
    inverse = torch.compile(layer.inverse, backend=_Counting())
    x, ld = inverse(y)
    ex, eld = layer.inverse(y)
    w = (layer.weight + torch.outer(layer.u, layer.v)).detach()
    assert_forward(out=x.detach(), expected=ex.detach(), kappa=kappa1(w), dtype="float64")
    assert_logabsdet(out=ld.detach(), expected=eld.detach(), n=4, kappa=kappa1(w), dtype="float64")
    singular = P4InvLinear(4, init=torch.eye(4, dtype=torch.float64), dtype=torch.float64)
    with torch.no_grad():  # c = 1 + vᵀA⁻¹u = 1 − 1 = 0 exactly
        singular.u.copy_(torch.tensor([1.0, 0, 0, 0]))
        singular.v.copy_(torch.tensor([-1.0, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"singular: c = 1 \+ vᵀA⁻¹u = 0\.0"):
        torch.compile(singular.inverse, backend=_Counting())(y)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 5), (5,), (2, 3, 5)])  # fewer rows than n, 1-D, 3-D
def test_compiled_forward_and_penalty_for_every_input_shape(shape, bias):
    layer = P4InvLinear(
        5,
        bias=bias,
        init="orthogonal",
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(6),
    )
    with torch.no_grad():
        layer.u.copy_(
            0.3 * torch.randn(5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        )

    def f(x):
        y, ld = layer(x)
        return y, ld, layer.penalty()

    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    y, ld, p = torch.compile(f, backend=_Counting(), fullgraph=True)(x)
    ey, eld, ep = f(x)
    assert y.shape == ey.shape and ld.shape == eld.shape == shape[:-1]
    w = (layer.weight + torch.outer(layer.u, layer.v)).detach()
    kappa = kappa1(w)
    assert_forward(
        out=y.detach().reshape(-1, 5),
        expected=ey.detach().reshape(-1, 5),
        kappa=kappa,
        dtype="float64",
    )
    assert_logabsdet(out=ld.detach(), expected=eld.detach(), n=5, kappa=kappa, dtype="float64")
    wrt = [x, layer.u, layer.v]
    got = torch.autograd.grad(y.square().sum() + ld.sum() + p, wrt)
    want = torch.autograd.grad(ey.square().sum() + eld.sum() + ep, wrt)
    for g, e in zip(got, want, strict=True):
        assert_forward(
            out=g.reshape(1, -1), expected=e.reshape(1, -1), kappa=kappa**2, dtype="float64"
        )


def test_lunet_nll_compiles_to_one_graph():
    net = LUNet(6, blocks=3, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    x = torch.randn(10, 6, dtype=torch.float64)

    def f(x):
        return (*net(x), net.nll(x))

    z, ld, nll = torch.compile(f, backend=_Counting(), fullgraph=True)(x)
    ez, eld, enll = f(x)
    kappa = 1.0 / net[1].alpha ** 2  # two activations, slopes in [α, 1]
    for m in net:
        if isinstance(m, LULinear):
            kappa *= kappa1(m.weight().detach())
    assert_forward(out=z.detach(), expected=ez.detach(), kappa=kappa, dtype="float64")
    assert_logabsdet(out=ld.detach(), expected=eld.detach(), n=6, kappa=kappa, dtype="float64")
    # NLL = mean(½‖z‖² + ½n·log 2π − log|det|): its terms' errors, amplified by the cancellation
    # Σ|terms| / |NLL|
    terms = (0.5 * ez.square().sum(-1) + 3 * math.log(2 * math.pi) + eld.abs()).mean()
    cancel = float((terms / enll.abs()).detach())
    assert_forward(
        out=nll.detach().reshape(1, 1),
        expected=enll.detach().reshape(1, 1),
        kappa=kappa * max(cancel, 1.0),
        dtype="float64",
    )
