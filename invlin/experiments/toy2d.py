"""P4Inv flows on 2-D toy densities, each next to an affine-coupling flow without P4Inv layers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from invlin.experiments.coupling import coupling_flow, matched_coupling_flow
from invlin.experiments.datasets import TOY_DENSITIES, toy_density, toy_log_density
from invlin.experiments.dense import DenseLinear
from invlin.experiments.models import MERGE_EVERY, MODELS
from invlin.experiments.train import count_parameters, fit, mean_nll, nll_per_sample
from invlin.nn import BentIdentity, InvertibleSequential, P4InvLinear, P4Scheduler
from invlin.oracle import ExactMatrix, evaluate
from invlin.testing import allowed_ratio, inverse_ratio, logdet_ratio

__all__ = [
    "MERGE_EVERY",
    "MODELS",
    "LayerDrift",
    "ToyResult",
    "merge_periods",
    "p4_flow",
    "region_fraction",
    "run_toy2d",
]

GRID = 120
EXTENT = 4.0
REGION_MASS = 0.95


@dataclass
class LayerDrift:
    """A P4 layer's tracked state against the oracle's evaluation of its exact merge path."""

    layer: str
    merges: int
    kappa: float
    inverse_ratio: float
    logdet_error: float
    logdet_ratio: float
    sign_ok: bool
    allowed: float

    @property
    def passed(self) -> bool:
        return (
            self.sign_ok
            and self.inverse_ratio <= self.allowed
            and self.logdet_ratio <= self.allowed
        )


@dataclass
class ToyResult:
    """One model trained on one density.

    ``test_nll`` and ``optimum`` (the true density's entropy on the same test set) in nats;
    ``region_fraction``: share of the model's samples inside the region holding
    :data:`REGION_MASS` of the true mass (``region_truth``: the test set's own share); P4
    scheduler counters and per-layer drift for models with P4 layers; the density on a grid."""

    density: str
    model: str
    label: str
    parameters: int
    test_nll: float
    optimum: float
    region_fraction: float
    region_truth: float
    seconds: float
    counters: dict[str, int] = field(default_factory=dict)
    drift: list[LayerDrift] = field(default_factory=list)
    log_density: np.ndarray | None = None  # (GRID, GRID) on [−EXTENT, EXTENT]²
    samples: np.ndarray | None = None  # (1000, 2) test samples, for the plot
    trace: list[float] = field(default_factory=list)


def p4_flow(
    blocks: int, generator: torch.Generator | None = None, *, dense: bool = False
) -> InvertibleSequential:
    """``blocks`` × (P4InvLinear(2) → BentIdentity) followed by a final P4InvLinear(2).

    ``dense=True`` builds the control: a :class:`DenseLinear` (the same map trained directly,
    with as many parameters) in place of every P4InvLinear, starting at the same matrix."""
    layers: list[torch.nn.Module] = []
    for _ in range(blocks):
        layers += [P4InvLinear(2, init="orthogonal", generator=generator), BentIdentity()]
    layers.append(P4InvLinear(2, init="orthogonal", generator=generator))
    if dense:
        layers = [
            DenseLinear(2, init=m.weight) if isinstance(m, P4InvLinear) else m for m in layers
        ]
    return InvertibleSequential(*layers)


def _layer_drift(name: str, layer: P4InvLinear, rec: dict[str, np.ndarray]) -> LayerDrift:
    exact = ExactMatrix.from_float(rec[f"{name}/a0"])
    for u, v in zip(rec[f"{name}/u"], rec[f"{name}/v"], strict=True):
        exact.apply(u, v)
    truth = evaluate(exact)
    k = len(rec[f"{name}/c"])
    inv = inverse_ratio(exact.to_float(), layer.weight_inverse.detach().cpu().numpy())
    ld = logdet_ratio(
        float(layer.logabsdet), truth.logabsdet, n=2, kappa=truth.kappa, dtype="float64"
    )
    return LayerDrift(
        name,
        k,
        truth.kappa,
        inv.value,
        ld.abs_error,
        ld.value,
        int(layer.sign) == truth.sign,
        allowed_ratio(k),
    )


@torch.no_grad()
def _grid_log_density(flow: torch.nn.Module, device: str) -> np.ndarray:
    ticks = torch.linspace(-EXTENT, EXTENT, GRID)
    xx, yy = torch.meshgrid(ticks, ticks, indexing="xy")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1).to(device)
    return (-nll_per_sample(flow, pts)).reshape(GRID, GRID).cpu().numpy()


@torch.no_grad()
def region_fraction(
    flow: torch.nn.Module,
    name: str,
    threshold: float,
    samples: int = 4000,
    seed: int = 0,
    device: str = "cpu",
) -> float:
    """Share of ``samples`` draws from ``flow`` (inverse of N(0, I)) where the true log-density
    of ``name`` is at least ``threshold``; non-finite samples count as outside."""
    z = torch.randn(samples, 2, generator=torch.Generator().manual_seed(seed)).to(device)
    x = flow.inverse(z)[0].double().cpu().numpy()
    ok = np.all(np.isfinite(x), axis=1)
    lp = np.full(samples, -np.inf)
    lp[ok] = toy_log_density(name, x[ok])
    return float(np.mean(lp >= threshold))


def _totals(layers: Iterable[P4InvLinear]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for layer in layers:
        for key, val in layer.counters.items():
            totals[key] = totals.get(key, 0) + val
    return totals


def _build(
    model: str,
    *,
    blocks: int,
    couplings: int,
    hidden: int,
    p4_parameters: int,
    generator: torch.Generator,
) -> tuple[torch.nn.Module, str]:
    if model == "p4_bent":
        return p4_flow(blocks, generator=generator), f"P4Inv + bent identity ×{blocks}"
    if model == "dense_bent":
        flow = p4_flow(blocks, generator=generator, dense=True)
        return flow, f"control: dense W + bent identity ×{blocks}, no P4"
    if model == "coupling_matched":
        flow, h = matched_coupling_flow(2, 4, p4_parameters)
        return flow, f"affine coupling ×4 (hidden {h}), matched to P4Inv + bent identity"
    if model == "realnvp":
        flow = coupling_flow(2, couplings, hidden, mixing="alternate")
        return flow, f"RealNVP ×{couplings} (hidden {hidden}), alternating masks"
    flow = coupling_flow(2, couplings, hidden, mixing="p4", generator=generator)
    return flow, f"RealNVP ×{couplings} (hidden {hidden}) with P4Inv mixing"


def merge_periods(merge_every: int | dict[str, int] | None = None) -> dict[str, int]:
    """The merge period of each P4 model: :data:`MERGE_EVERY`, overridden by one period for
    all (an int) or by a ``{model: period}`` mapping; ValueError for anything else."""
    periods = dict(MERGE_EVERY)
    if isinstance(merge_every, int) and not isinstance(merge_every, bool):
        periods = dict.fromkeys(MERGE_EVERY, merge_every)
    elif isinstance(merge_every, dict):
        periods.update(merge_every)
    elif merge_every is not None:
        periods = {}
    if sorted(periods) != sorted(MERGE_EVERY) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in periods.values()
    ):
        raise ValueError(
            f"merge_every must be a positive int or map {tuple(MERGE_EVERY)} to "
            f"positive ints, got {merge_every!r}"
        )
    return periods


def run_toy2d(
    densities: Iterable[str] = TOY_DENSITIES,
    *,
    models: Iterable[str] = tuple(MODELS),
    steps: int = 2000,
    blocks: int = 16,
    couplings: int = 8,
    hidden: int = 24,
    batch: int = 512,
    lr: float = 5e-3,
    merge_every: int | dict[str, int] | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: Callable[[str, int, float], None] | None = None,
) -> list[ToyResult]:
    """Train each of ``models`` (keys of :data:`MODELS`) on each density and evaluate it.

    All models are trained the same way: Adam at ``lr``, ``steps`` steps of ``batch`` samples
    drawn from a 200 000-sample pool (seeded). Models with P4 layers are trained with the
    :class:`P4Scheduler` (merge every ``merge_every`` steps — one period for all, or a
    ``{model: period}`` mapping over :data:`MERGE_EVERY`, the default — forced every 10 merges,
    merge history recorded) and their penalty is added to the loss; afterwards every P4 layer's
    tracked inverse, log|det| and sign are compared with the oracle's evaluation of the exact
    matrix of its merge path. ``coupling_matched`` gets the hidden width that matches the
    parameter count of ``p4_bent`` (built with ``blocks`` blocks even when not trained).
    Evaluation: mean test NLL over 20 000 held-out samples (another seed), the true density's
    entropy on those samples, and the share of 4000 model samples inside the region that holds
    95 % of the true mass.
    """
    models = list(models)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"models must be among {tuple(MODELS)}, got {unknown}")
    periods = merge_periods(merge_every)
    p4_parameters = count_parameters(p4_flow(blocks))
    results: list[ToyResult] = []
    for name in densities:
        test_np = toy_density(name, 20_000, seed + 1)
        true_lp = toy_log_density(name, test_np)
        optimum = float(-true_lp.mean())
        threshold = float(np.quantile(true_lp, 1.0 - REGION_MASS))
        region_truth = float(np.mean(true_lp >= threshold))
        test = torch.tensor(test_np, dtype=torch.float32, device=device)
        pool = torch.tensor(toy_density(name, 200_000, seed), dtype=torch.float32, device=device)
        for model in models:
            gen = torch.Generator().manual_seed(seed)

            def sample(b: int, pool=pool, gen=gen) -> torch.Tensor:
                return pool[torch.randint(0, pool.shape[0], (b,), generator=gen).to(pool.device)]

            torch.manual_seed(seed)
            flow, label = _build(
                model,
                blocks=blocks,
                couplings=couplings,
                hidden=hidden,
                p4_parameters=p4_parameters,
                generator=torch.Generator(device=device).manual_seed(seed),
            )
            flow = flow.to(device)
            opt = torch.optim.Adam(flow.parameters(), lr=lr)
            layers = {n: m for n, m in flow.named_modules() if isinstance(m, P4InvLinear)}
            p4_layers = tuple(layers.values())
            sched = None
            if layers:
                sched = P4Scheduler(
                    flow,
                    opt,
                    merge_every=periods[model],
                    force_every=10 * periods[model],
                    record=True,
                )
            start = time.perf_counter()
            trace = fit(
                flow,
                sample,
                opt,
                steps=steps,
                batch=batch,
                extra_loss=None
                if not layers
                else (lambda ls=p4_layers: sum(m.penalty() for m in ls)),
                after_step=None if sched is None else sched.step,
                progress=None
                if progress is None
                else (lambda s, loss, tag=f"{name} {model}": progress(tag, s, loss)),
            )
            seconds = time.perf_counter() - start
            drift: list[LayerDrift] = []
            if sched is not None:
                rec = sched.history.arrays()
                drift = [_layer_drift(n, m, rec) for n, m in layers.items()]
            results.append(
                ToyResult(
                    name,
                    model,
                    label,
                    count_parameters(flow),
                    mean_nll(flow, test),
                    optimum,
                    region_fraction(flow, name, threshold, seed=seed + 2, device=device),
                    region_truth,
                    seconds,
                    _totals(layers.values()),
                    drift,
                    _grid_log_density(flow, device),
                    test_np[:1000],
                    trace,
                )
            )
    return results
