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
    assert_forward(out=y_gpu.float().cpu().detach(), expected=y_cpu.detach(), kappa=kappa,
                   dtype=dtype)
    assert_logabsdet(out=ld_gpu.float().cpu().detach(), expected=ld_cpu.detach(), n=32,
                     kappa=kappa, dtype=dtype)
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
    assert_logabsdet(out=float(gpu.logabsdet), expected=float(cpu.logabsdet), n=32,
                     kappa=kappa1(cpu.weight), dtype="float64", updates=50)
    assert int(gpu.sign) == int(cpu.sign)


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
    assert all(t.device.type == "cuda" for s in opt.state.values() for t in s.values()
               if torch.is_tensor(t) and t.ndim > 0)
