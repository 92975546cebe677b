"""CUDA tests: the torch layers on a GPU agree with the CPU and keep their dtypes and devices."""

from __future__ import annotations

import pytest
import torch

from invlin.nn.monitor import DriftMonitor
from invlin.nn.p4 import P4InvLinear
from invlin.nn.scheduler import P4Scheduler
from invlin.testing import assert_forward, assert_inverse, assert_logabsdet, kappa1

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEV = "cuda"


def _pair(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    cpu = P4InvLinear(n, init="orthogonal", generator=g)
    with torch.no_grad():
        cpu.u.copy_(0.1 * torch.randn(n, generator=g))
    gpu = P4InvLinear(n).to(DEV)
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu


def test_p4_state_and_outputs_live_on_the_device():
    _, gpu = _pair()
    assert all(b.device.type == "cuda" for b in gpu.buffers())
    assert gpu.weight.dtype == torch.float64 and gpu.u.dtype == torch.float32
    x = torch.randn(64, 32, device=DEV)
    y, ld = gpu(x)
    assert y.device.type == "cuda" and ld.device.type == "cuda" and ld.shape == (64,)
    xr, _ldi = gpu.inverse(y)
    assert xr.device.type == "cuda" and xr.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_p4_gpu_matches_cpu(dtype):
    cpu, gpu = _pair()
    gpu = gpu.to(dtype)
    x = torch.randn(128, 32)
    y_cpu, ld_cpu = cpu.double()(x.double())
    y_gpu, ld_gpu = gpu(x.to(DEV, dtype))
    kappa = kappa1((cpu.weight + torch.outer(cpu.u.double(), cpu.v.double())).detach())
    assert_forward(
        out=y_gpu.float().cpu().detach(), expected=y_cpu.detach(), kappa=kappa, dtype=dtype
    )
    assert_logabsdet(
        out=ld_gpu.float().cpu().detach(), expected=ld_cpu.detach(), n=32, kappa=kappa, dtype=dtype
    )
    xr, _ = gpu.inverse(y_gpu)
    assert_forward(out=xr.float().cpu().detach(), expected=x, kappa=kappa, dtype=dtype)


def test_p4_merges_and_monitor_on_gpu_track_the_cpu_state():
    cpu, gpu = _pair(seed=1)
    cpu.monitor = gpu.monitor = DriftMonitor(every=10)
    for _ in range(50):
        with torch.no_grad():
            cpu.u.normal_(std=0.02)
            gpu.u.copy_(cpu.u)
            gpu.v.copy_(cpu.v)
        assert cpu.merge() == gpu.merge()
        with torch.no_grad():
            gpu.v.copy_(cpu.v)
    assert_inverse(cpu.weight, out=gpu.weight_inverse.cpu(), updates=50)
    assert_logabsdet(
        out=float(gpu.logabsdet),
        expected=float(cpu.logabsdet),
        n=32,
        kappa=kappa1(cpu.weight),
        dtype="float64",
        updates=50,
    )
    assert int(gpu.sign) == int(cpu.sign)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cached_products_on_gpu_keep_the_products_and_the_bits(dtype):
    from invlin.nn import cached_products
    from invlin.nn.p4_cache import ProductCache

    _, gpu = _pair(n=64, seed=2)
    gpu = gpu.to(dtype)
    x = torch.randn(128, 64, device=DEV, dtype=dtype)
    plain = [t.detach() for t in (*gpu(x), *gpu.inverse(x))]
    assert not gpu.products_cached  # nothing kept off the CPU by default
    with cached_products():
        first = [t.detach() for t in (*gpu(x), *gpu.inverse(x))]
        assert len(gpu.products_cached) == 2
        torch.cuda.synchronize()
        again = [t.detach() for t in (*gpu(x), *gpu.inverse(x))]
        with torch.no_grad():
            gpu.u.add_(0.01)  # seen: the version moves
        moved = [t.detach() for t in (*gpu(x), *gpu.inverse(x))]
    assert all(torch.equal(a, b) for a, b in zip(plain, first, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(moved[0], first[0])
    assert torch.equal(moved[0], gpu(x)[0].detach())  # outside: recomputed, same values
    assert ProductCache.usable(x) is False


def test_scheduler_with_adam_on_gpu():
    layer = P4InvLinear(16).to(DEV)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    sched = P4Scheduler(torch.nn.Sequential(layer), opt)
    for _ in range(20):
        x = torch.randn(32, 16, device=DEV)
        y, ld = layer(x)
        loss = (y**2).mean() - ld.mean() + layer.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    assert layer.merges > 0
    assert all(
        t.device.type == "cuda"
        for s in opt.state.values()
        for t in s.values()
        if torch.is_tensor(t) and t.ndim > 0
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lu_layer_and_activation_on_gpu_match_cpu(dtype):
    from invlin.nn.activations import LeakySoftplus
    from invlin.nn.lu import LULinear

    torch.manual_seed(0)
    cpu = LULinear(48).double()
    gpu = LULinear(48).to(DEV, dtype)
    gpu.load_state_dict({k: v.to(dtype) for k, v in cpu.state_dict().items()})
    ref = LULinear(48).double()
    ref.load_state_dict({k: v.to(dtype).double() for k, v in cpu.state_dict().items()})
    x = torch.randn(256, 48, dtype=torch.float64)
    y_ref, ld_ref = ref(x)
    y, ld = gpu(x.to(DEV, dtype))
    assert y.dtype == dtype and y.device.type == "cuda"
    kappa = kappa1(ref.weight().detach())
    assert_forward(out=y.float().cpu().detach(), expected=y_ref.detach(), kappa=kappa, dtype=dtype)
    assert_logabsdet(
        out=ld.float().cpu().detach(), expected=ld_ref.detach(), n=48, kappa=kappa, dtype=dtype
    )
    xr, _ = gpu.inverse(y)
    assert_forward(out=xr.float().cpu().detach(), expected=x, kappa=kappa, dtype=dtype)
    act = LeakySoftplus().to(DEV)
    t = torch.linspace(-50, 50, 10001, device=DEV, dtype=dtype)
    back, _ = act.inverse(act(t)[0])
    assert back.device.type == "cuda" and back.dtype == dtype
    # |δx| ≤ |δy| / f'(x) ≤ |δy| / α and ‖y‖₁ ≤ ‖x‖₁ + n·log 2 ≈ ‖x‖₁ on this grid, so the
    # normwise condition number of the inverse is at most 1/α = 10.
    assert_forward(
        out=back.float().cpu()[None], expected=t.float().cpu()[None], kappa=10.0, dtype=dtype
    )


def test_lunet_log_prob_on_gpu():
    from invlin.nn.lunet import LUNet

    torch.manual_seed(1)
    net = LUNet(16, blocks=3).to(DEV)
    x = torch.randn(64, 16, device=DEV)
    lp = net.log_prob(x)
    assert lp.shape == (64,) and lp.device.type == "cuda" and torch.isfinite(lp).all()
    cpu = LUNet(16, blocks=3)
    cpu.load_state_dict({k: v.cpu() for k, v in net.state_dict().items()})
    # float32 on both sides; the error of log p is bounded by the conditioning of the whole map.
    kappa = 1.0
    for m in cpu.modules():
        if hasattr(m, "upper_diag"):
            kappa *= kappa1(m.weight().detach())
    assert_forward(
        out=lp.cpu().detach()[None],
        expected=cpu.log_prob(x.cpu()).detach()[None],
        kappa=kappa,
        dtype=torch.float32,
    )


def test_compiled_training_loss_on_gpu_matches_eager():
    """torch.compile with inductor (Triton kernels) on a P4Inv flow's loss: one graph, the
    eager values, merges followed without recompiling."""
    from invlin.nn import BentIdentity, InvertibleSequential

    torch._dynamo.reset()
    n = 32
    g = torch.Generator().manual_seed(3)
    flow = InvertibleSequential(
        P4InvLinear(n, init="orthogonal", generator=g),
        BentIdentity(),
        P4InvLinear(n, init="orthogonal", generator=g),
    ).to(DEV)
    x = torch.randn(256, n, generator=g).to(DEV)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    sched = P4Scheduler(flow, opt, merge_every=1)

    def outputs(x):
        z, ld = flow(x)
        return (
            z,
            ld,
            (0.5 * z.square().sum(-1) - ld).mean()
            + sum(m.penalty() for m in sched.layers.values()),
        )

    compiled = torch.compile(outputs, fullgraph=True)  # a graph break raises
    for _ in range(4):
        z, ld, loss = compiled(x)
        with torch.no_grad():
            ez, eld, _ = outputs(x)
        # the map is two P4 layers and a BentIdentity (slopes in (1/2, 3/2)): κ ≤ κ₁κ₂·3
        kappa = 3.0
        for m in sched.layers.values():
            kappa *= kappa1((m.weight + torch.outer(m.u.double(), m.v.double())).detach().cpu())
        assert_forward(out=z.detach().cpu(), expected=ez.cpu(), kappa=kappa, dtype="float32")
        assert_logabsdet(
            out=ld.detach().cpu(), expected=eld.cpu(), n=n, kappa=kappa, dtype="float32"
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    assert sum(c["merges"] for c in sched.counters.values()) == 8
    torch._dynamo.reset()
