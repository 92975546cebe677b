"""Theme 6 — cross-implementation: NumPy reference, torch CPU (float64/float32) and CUDA agree;
merging and train/eval mode do not change what a layer computes.

* The same path through the NumPy reference and the torch layer (state in the case's dtype, or
  float64 state with float32 parameters; on CUDA too when a GPU is present) gives inverses whose
  columns agree within the sum of both allowances — each is within the path allowance P of the
  truth, so ‖x_a − x_b‖₁/‖x*‖₁ ≤ P·nκ(ε_a + ε_b) — the same signs while both determine them
  (theme 2), and log|det| within the sum of both log|det| allowances.
* Merge invariance: before and after ``merge`` the layer computes the same map. Forward outputs
  agree within 30 units of nε(‖|A| + |u||v|ᵀ‖₁‖x‖₁ + ‖y‖₁) per row (two products, one with the
  rounded A + u vᵀ); inverse outputs (Sherman–Morrison on the fly vs the merged inverse) within
  twice the path allowance against n·κ·ε.
* Train/eval agreement: in any interleaving of mode switches, float32 calls (which cache the
  cast state), merges and inverse calls, every output equals — bit for bit — that of a fresh
  copy of the layer (state dict round trip, no cache) in the same mode.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tracking import oracle_path, run_path, sign_determined, steer
from hypothesis import given
from hypothesis import strategies as st

from invlin.nn.lu import LULinear
from invlin.nn.p4 import P4InvLinear
from invlin.reference.rank_one import Guard
from invlin.testing import THRESHOLD, ToleranceError, assert_forward, assert_sign, eps
from invlin.testing.reproduce import reproducible
from invlin.testing.strategies import lu_factors, seeds, update_paths

KINDS = ("benign", "sign_flip", "mixed", "crossing")
CUDA = torch.cuda.is_available()


def _compare(case, other: str, device: str = "cpu") -> float:
    ref = run_path(case, "numpy")
    got = run_path(case, other, device=device)
    truth = oracle_path(case.a0, ref.applied)
    allow = truth.allowance()
    if len(got.applied) != len(ref.applied):
        raise ToleranceError(
            f"{other} applied {len(got.applied)} updates, NumPy {len(ref.applied)}"
        )
    determined = min(sign_determined(ref, truth), sign_determined(got, truth))
    coarse, fine = sorted((ref.dtype, got.dtype), key=eps, reverse=True)
    widen = 1.0 + eps(fine) / eps(coarse)
    worst = 0.0
    for j in range(len(ref.applied) + 1):
        n, kappa = case.n, truth.kappas[j]
        r = assert_forward(
            out=got.inverses[j].T,
            expected=ref.inverses[j].T,
            kappa=n * kappa,
            dtype=coarse,
            threshold=allow.inverse[j] * widen,
        )
        if j < determined:
            assert_sign(out=got.signs[j], expected=ref.signs[j])
        unit = n * kappa * eps(coarse)
        if not abs(got.logdets[j] - ref.logdets[j]) <= allow.logabsdet[j] * widen * unit:
            raise ToleranceError(
                f"log|det| after {j} updates: {other} {got.logdets[j]!r} vs "
                f"NumPy {ref.logdets[j]!r}, more than "
                f"{allow.logabsdet[j] * widen:.4g} units of {unit:.3g}"
            )
        worst = max(worst, r.value / (allow.inverse[j] * widen))
    return worst


REPRO = """
from invlin.reference import Guard, TrackedMatrix
import torch
from invlin.nn import P4InvLinear
t = TrackedMatrix(case.a0, dtype=case.dtype, guard=Guard.off())
layer = P4InvLinear(case.n, bias=False, init=torch.from_numpy(case.a0.astype('float64')),
                    guard=Guard.off(), monitor=None, state_dtype=getattr(torch, case.dtype),
                    dtype=getattr(torch, case.dtype))
for u, v in case.updates():
    t.update(u, v)
    with torch.no_grad():
        layer.u.copy_(torch.from_numpy(u)); layer.v.copy_(torch.from_numpy(v))
    layer.merge()
print(abs(t.inverse - layer.weight_inverse.numpy()).max())
"""


@given(case=update_paths(kinds=KINDS), other=st.sampled_from(("torch", "torch64")))
def test_numpy_and_torch_cpu_agree(case, other):
    with reproducible(REPRO, case=case):
        worst = _compare(case, other)
    steer("difference / allowance", worst)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@given(case=update_paths(kinds=KINDS), other=st.sampled_from(("torch", "torch64")))
def test_numpy_and_torch_cuda_agree(case, other):
    with reproducible(REPRO.replace("layer.merge()", "layer.merge()  # on cuda"), case=case):
        worst = _compare(case, other, device="cuda")
    steer("difference / allowance", worst)


@given(case=update_paths(kinds=KINDS), seed=seeds(), state64=st.booleans())
def test_merge_leaves_the_map_unchanged(case, seed, state64):
    dt = getattr(torch, case.dtype)
    layer = P4InvLinear(
        case.n,
        bias=True,
        init=torch.from_numpy(case.a0.astype(np.float64)),
        guard=Guard.off(),
        state_dtype=torch.float64 if state64 else dt,
        dtype=dt,
        generator=torch.Generator().manual_seed(seed),
    )
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((3, case.n))).to(dt)
    sdt = str(layer.weight.dtype).removeprefix("torch.")
    coarse = case.dtype if eps(case.dtype) >= eps(sdt) else sdt
    applied, inverses = [], []
    with torch.no_grad():
        layer.bias.copy_(torch.from_numpy(rng.standard_normal(case.n)))
    with reproducible(
        "# P4InvLinear(bias=True) over case.updates(): forward/inverse before and after each merge",
        case=case,
        seed=seed,
    ):
        for u, v in case.updates():
            with torch.no_grad():
                layer.u.copy_(torch.from_numpy(u))
                layer.v.copy_(torch.from_numpy(v))
                if float(layer.factor()) == 0:
                    continue
                y0, _ = layer(x)
                x0, _ = layer.inverse(y0)
                a = layer.weight.double().numpy()
                uv = np.abs(layer.u.double().numpy())[:, None] * np.abs(layer.v.double().numpy())
                step = (layer.u.double().numpy().copy(), layer.v.double().numpy().copy())
                if not layer.merge():
                    continue
                applied.append(step)
                y1, _ = layer(x)
                x1, _ = layer.inverse(y0)
            inverses.append((x0, x1))
            norm = float(np.abs(np.abs(a) + uv).sum(axis=0).max())
            for xr, ya, yb in zip(
                x.double().numpy(), y0.double().numpy(), y1.double().numpy(), strict=True
            ):
                unit = case.n * eps(coarse) * (norm * np.abs(xr).sum() + np.abs(ya).sum())
                err = float(np.abs(yb - ya).sum())
                if not err <= THRESHOLD * unit:
                    raise ToleranceError(
                        f"forward changed by the merge: {err:.4g} > 30 × {unit:.4g}"
                    )
        truth = oracle_path(case.a0, applied)
        allow = truth.allowance()
        for j, (x0, x1) in enumerate(inverses, start=1):
            assert_forward(
                out=x1,
                expected=x0,
                kappa=case.n * truth.kappas[j],
                dtype=coarse,
                threshold=2 * allow.inverse[j],
            )


def _fresh(layer):
    if isinstance(layer, P4InvLinear):
        copy = P4InvLinear(
            layer.features,
            init=layer.weight.detach().clone(),
            guard=Guard.off(),
            dtype=layer.u.dtype,
        )
    else:
        copy = LULinear(layer.features, dtype=layer.upper_diag.dtype)
    copy.load_state_dict(layer.state_dict())
    copy.train(layer.training)
    return copy


OPS = st.lists(
    st.sampled_from(("train", "eval", "forward32", "forward64", "inverse32", "merge")),
    min_size=1,
    max_size=12,
)


@given(
    case=update_paths(kinds=("benign", "sign_flip")), ops=OPS, lu=lu_factors(), use_lu=st.booleans()
)
def test_train_eval_and_cached_casts_agree_with_a_fresh_copy(case, ops, lu, use_lu):
    if use_lu:
        from _lu import torch_layer

        layer = torch_layer(lu, torch.float64)
        n = lu.n
    else:
        layer = P4InvLinear(
            case.n,
            init=torch.from_numpy(case.a0.astype(np.float64)),
            guard=Guard.off(),
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(0),
        )
        n = case.n
    x = torch.linspace(-1.0, 1.0, 2 * n, dtype=torch.float64).reshape(2, n)
    updates = iter(case.updates())
    with reproducible(
        f"# ops {ops} on a {'LULinear' if use_lu else 'P4InvLinear'}", case=case, lu=lu
    ):
        for op in ops:
            if op in ("train", "eval"):
                getattr(layer, op)()
                continue
            if op == "merge":
                if use_lu:
                    continue
                step = next(updates, None)
                if step is None:
                    continue
                with torch.no_grad():
                    layer.u.copy_(torch.from_numpy(step[0]))
                    layer.v.copy_(torch.from_numpy(step[1]))
                layer.merge()
                continue
            fresh = _fresh(layer)
            inp = x.float() if op.endswith("32") else x
            with torch.no_grad():
                if op.startswith("forward"):
                    got, want = layer(inp), fresh(inp)
                else:
                    y = fresh(inp)[0]
                    got, want = layer.inverse(y), fresh.inverse(y)
            for g, w in zip(got, want, strict=True):
                if not torch.equal(g, w):
                    raise ToleranceError(
                        f"{op} in {'train' if layer.training else 'eval'} mode "
                        f"differs from a fresh copy: max diff "
                        f"{float((g - w).abs().max()):.3g}"
                    )
