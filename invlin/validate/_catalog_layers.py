"""The per-library layer lists behind :func:`invlin.validate.catalog.catalog`."""

from __future__ import annotations

from collections.abc import Callable

import torch

from invlin._validation import positive_int
from invlin.validate.catalog import Entry, at_least, mlp, perturb, seeded, well_conditioned

__all__ = [
    "FLOWS",
    "conditional_seeded",
    "freia",
    "freia_conditional",
    "invlin",
    "nflows",
    "nflows_conditional",
    "normflows",
    "normflows_conditional",
    "pyro",
    "pyro_conditional",
    "zuko",
    "zuko_conditional",
]

_TAILS = "linear tails beyond ±3 (identity there), 8 bins"


def invlin() -> list[Entry]:
    """invlin's own layers."""
    from invlin.nn import (
        BentIdentity,
        InvertibleSequential,
        LeakySoftplus,
        LULinear,
        LUNet,
        P4InvLinear,
    )

    def p4(n: int) -> P4InvLinear:
        layer = P4InvLinear(n, init="orthogonal", generator=torch.Generator().manual_seed(0))
        perturb(layer, 0.3)
        layer.merge(force=True)  # a tracked state that is not the initial one
        return perturb(layer, 0.3)

    def lu(n: int) -> LULinear:
        return perturb(LULinear(n), 0.3)

    def chain(n: int) -> InvertibleSequential:
        return InvertibleSequential(p4(n), LeakySoftplus(0.1), lu(n), BentIdentity())

    return [
        Entry("P4InvLinear", seeded(p4), "orthogonal A, one forced merge, u, v, b perturbed"),
        Entry("LULinear", seeded(lu), "identity init + N(0, 0.3²) on every entry"),
        Entry("LeakySoftplus", seeded(lambda n: LeakySoftplus(0.1)), "alpha = 0.1"),
        Entry("BentIdentity", seeded(lambda n: BentIdentity()), ""),
        Entry("LUNet", seeded(lambda n: perturb(LUNet(n, blocks=2), 0.3)), "2 blocks"),
        Entry(
            "InvertibleSequential",
            seeded(chain),
            "P4InvLinear → LeakySoftplus → LULinear → BentIdentity",
        ),
    ]


def nflows() -> list[Entry]:
    """nflows 0.14 transforms (data → noise in ``forward``)."""
    import nflows.transforms as nt
    from nflows.nn.nets import ResidualNet
    from nflows.utils import create_alternating_binary_mask

    def net(n_in: int, n_out: int) -> torch.nn.Module:
        return ResidualNet(n_in, n_out, hidden_features=16, num_blocks=1)

    def actnorm(n: int) -> nt.ActNorm:
        layer = nt.ActNorm(n)
        layer.initialized.fill_(True)  # no data-dependent re-initialisation on first call
        return perturb(layer, 0.3)

    def coupling(cls: type, n: int, **kw: object) -> torch.nn.Module:
        at_least(n, 2, cls.__name__)
        return perturb(cls(create_alternating_binary_mask(n, even=True), net, **kw))

    def made(cls: type, n: int, **kw: object) -> torch.nn.Module:
        at_least(n, 2, cls.__name__)
        return perturb(cls(n, 16, **kw))

    rqs = {"tails": "linear", "tail_bound": 3.0, "num_bins": 8}
    return [
        Entry(
            "LULinear",
            seeded(lambda n: perturb(nt.LULinear(n), 0.3)),
            "identity init + noise; diag(U) = softplus(raw) + 1e-3",
        ),
        Entry(
            "LULinearCached",
            seeded(lambda n: perturb(nt.LULinear(n, using_cache=True), 0.3)),
            "LULinear with using_cache=True: eval mode keeps W, W⁻¹, log|det| (nflows' own cache)",
        ),
        Entry(
            "NaiveLinear",
            seeded(lambda n: perturb(nt.NaiveLinear(n))),
            "random orthogonal init + noise",
        ),
        Entry(
            "SVDLinear",
            seeded(lambda n: perturb(nt.SVDLinear(n, num_householder=2, identity_init=False))),
            "2 Householder reflections per factor",
        ),
        Entry("RandomPermutation", seeded(nt.RandomPermutation), ""),
        Entry("ActNorm", seeded(actnorm), "marked initialised, log-scale and shift perturbed"),
        Entry(
            "AffineCouplingTransform",
            seeded(lambda n: coupling(nt.AffineCouplingTransform, n)),
            "ResidualNet 16",
        ),
        Entry(
            "PiecewiseRationalQuadraticCouplingTransform",
            seeded(lambda n: coupling(nt.PiecewiseRationalQuadraticCouplingTransform, n, **rqs)),
            _TAILS,
        ),
        Entry(
            "MaskedAffineAutoregressiveTransform",
            seeded(lambda n: made(nt.MaskedAffineAutoregressiveTransform, n)),
            "MADE 16",
        ),
        Entry(
            "MaskedPiecewiseRationalQuadraticAutoregressiveTransform",
            seeded(
                lambda n: made(nt.MaskedPiecewiseRationalQuadraticAutoregressiveTransform, n, **rqs)
            ),
            _TAILS,
        ),
        Entry(
            "PiecewiseRationalQuadraticCDF",
            seeded(lambda n: perturb(nt.PiecewiseRationalQuadraticCDF(shape=[n], num_bins=8))),
            "tails=None: domain [0, 1]",
        ),
    ]


def zuko() -> list[Entry]:
    """zuko 1.6 flows and lazy transforms, unconditional (context 0, called with None)."""
    import zuko as z
    from zuko.lazy import UnconditionalTransform

    def flow(cls: type, n: int, **kw: object) -> torch.nn.Module:
        at_least(n, 2, cls.__name__)
        # the flow's transform: a layer (a zuko Flow itself is a distribution, see FLOWS)
        return perturb(cls(n, 0, **kw)).transform

    return [
        Entry(
            "MAF",
            seeded(lambda n: flow(z.flows.MAF, n, transforms=1, hidden_features=[16])),
            "one affine autoregressive transform",
        ),
        Entry(
            "NSF",
            seeded(lambda n: flow(z.flows.NSF, n, transforms=1, hidden_features=[16])),
            "monotonic RQS, 8 bins, bound 5, identity outside",
        ),
        Entry(
            "RealNVP",
            seeded(lambda n: flow(z.flows.RealNVP, n, transforms=1, hidden_features=[16])),
            "one affine coupling",
        ),
        Entry(
            "NICE",
            seeded(lambda n: flow(z.flows.NICE, n, transforms=1, hidden_features=[16])),
            "one additive coupling",
        ),
        Entry(
            "SOSPF",
            seeded(lambda n: flow(z.flows.SOSPF, n, transforms=1, hidden_features=[16])),
            "sum-of-squares polynomial; inverse by bisection in [−10, 10] to an absolute "
            "tolerance of 1e-6 (zuko's documented defaults)",
        ),
        Entry(
            "LULinearTransform",
            seeded(
                lambda n: perturb(
                    UnconditionalTransform(z.transforms.LULinearTransform, well_conditioned(n))
                )
            ),
            "UnconditionalTransform(LULinearTransform, LU)",
        ),
        Entry(
            "RotationTransform",
            seeded(
                lambda n: UnconditionalTransform(z.transforms.RotationTransform, torch.randn(n, n))
            ),
            "R = exp(A − Aᵀ)",
        ),
        Entry(
            "PermutationTransform",
            seeded(
                lambda n: UnconditionalTransform(
                    z.transforms.PermutationTransform, torch.randperm(n), buffer=True
                )
            ),
            "",
        ),
    ]


def normflows() -> list[Entry]:
    """normflows 1.7 flows (``forward`` maps latent → data)."""
    import normflows as nf

    def actnorm(n: int) -> torch.nn.Module:
        layer = nf.flows.ActNorm((n,))
        layer.data_dep_init_done.fill_(1.0)  # no data-dependent re-initialisation
        return perturb(layer, 0.3)

    def masked_affine(n: int) -> torch.nn.Module:
        at_least(n, 2, "MaskedAffineFlow")
        b = torch.tensor([float(i % 2) for i in range(n)])
        mk = lambda: nf.nets.MLP([n, 16, n], init_zeros=True)  # noqa: E731
        return perturb(nf.flows.MaskedAffineFlow(b, t=mk(), s=mk()))

    def coupling_block(n: int) -> torch.nn.Module:
        at_least(n, 2, "AffineCouplingBlock")
        return perturb(
            nf.flows.AffineCouplingBlock(
                nf.nets.MLP([(n + 1) // 2, 16, 2 * (n // 2)], init_zeros=True)
            )
        )

    def need2(build):
        def inner(n: int) -> torch.nn.Module:
            at_least(n, 2, "this layer")
            return perturb(build(n))

        return inner

    return [
        Entry(
            "InvertibleAffine",
            seeded(lambda n: perturb(nf.flows.InvertibleAffine(n))),
            "use_lu=True: P L U with fixed P and sign(S)",
        ),
        Entry(
            "LULinearPermute",
            seeded(lambda n: perturb(nf.flows.LULinearPermute(n, identity_init=False))),
            "",
        ),
        Entry("Permute", seeded(lambda n: nf.flows.Permute(n, mode="shuffle")), ""),
        Entry("ActNorm", seeded(actnorm), "marked initialised, s and t perturbed"),
        Entry(
            "AffineConstFlow", seeded(lambda n: perturb(nf.flows.AffineConstFlow((n,)), 0.3)), ""
        ),
        Entry("MaskedAffineFlow", seeded(masked_affine), "alternating mask, MLP 16"),
        Entry("AffineCouplingBlock", seeded(coupling_block), "channel split, MLP 16"),
        Entry(
            "MaskedAffineAutoregressive",
            seeded(need2(lambda n: nf.flows.MaskedAffineAutoregressive(n, 16, num_blocks=1))),
            "",
        ),
        Entry(
            "CoupledRationalQuadraticSpline",
            seeded(need2(lambda n: nf.flows.CoupledRationalQuadraticSpline(n, 1, 16))),
            _TAILS,
        ),
        Entry(
            "AutoregressiveRationalQuadraticSpline",
            seeded(
                need2(
                    lambda n: nf.flows.AutoregressiveRationalQuadraticSpline(
                        n, 1, 16, init_identity=False
                    )
                )
            ),
            _TAILS,
        ),
    ]


def freia() -> list[Entry]:
    """FrEIA 0.2 invertible modules built with ``dims_in=[(features,)]``."""
    import FrEIA.modules as fm

    def block(cls: type, **kw: object):
        def build(n: int) -> torch.nn.Module:
            at_least(n, 2, cls.__name__)
            return perturb(cls([(n,)], subnet_constructor=mlp, **kw))

        return build

    def actnorm(n: int) -> torch.nn.Module:
        layer = fm.ActNorm([(n,)])
        layer.init_on_next_batch = False  # no data-dependent re-initialisation
        return perturb(layer, 0.3)

    def fixed(n: int) -> torch.nn.Module:
        return fm.FixedLinearTransform([(n,)], M=well_conditioned(n), b=torch.randn(n))

    return [
        Entry("AllInOneBlock", seeded(block(fm.AllInOneBlock)), "affine coupling, soft clamp 2"),
        Entry("GLOWCouplingBlock", seeded(block(fm.GLOWCouplingBlock)), ""),
        Entry("RNVPCouplingBlock", seeded(block(fm.RNVPCouplingBlock)), ""),
        Entry("NICECouplingBlock", seeded(block(fm.NICECouplingBlock)), ""),
        Entry("GINCouplingBlock", seeded(block(fm.GINCouplingBlock)), "volume preserving"),
        Entry("ActNorm", seeded(actnorm), "marked initialised, scale and bias perturbed"),
        Entry("PermuteRandom", seeded(lambda n: fm.PermuteRandom([(n,)], seed=0)), ""),
        Entry("FixedLinearTransform", seeded(fixed), "M = I + 0.3·G/√n, random b"),
        Entry(
            "LearnedElementwiseScaling",
            seeded(lambda n: perturb(fm.LearnedElementwiseScaling([(n,)]), 0.3)),
            "",
        ),
    ]


def pyro() -> list[Entry]:
    """pyro-ppl 1.9 transforms and a few of torch.distributions' own."""
    import pyro.distributions.transforms as pt
    from torch.distributions import transforms as tt

    hidden = [16]

    def need2(build):
        def inner(n: int) -> object:
            at_least(n, 2, "this layer")
            return perturb(build(n))

        return inner

    return [
        Entry(
            "AffineAutoregressive",
            seeded(need2(lambda n: pt.affine_autoregressive(n, hidden_dims=hidden))),
            "",
        ),
        Entry(
            "AffineCoupling", seeded(need2(lambda n: pt.affine_coupling(n, hidden_dims=hidden))), ""
        ),
        Entry(
            "Spline",
            seeded(lambda n: perturb(pt.Spline(n))),
            "elementwise (event_dim 0); linear spline order, bound 3",
        ),
        Entry(
            "SplineCoupling", seeded(need2(lambda n: pt.spline_coupling(n, hidden_dims=hidden))), ""
        ),
        Entry(
            "SplineAutoregressive",
            seeded(need2(lambda n: pt.spline_autoregressive(n, hidden_dims=hidden))),
            "",
        ),
        Entry(
            "Householder",
            seeded(lambda n: perturb(pt.householder(n, count_transforms=2))),
            "2 reflections",
        ),
        Entry(
            "MatrixExponential",
            seeded(lambda n: perturb(pt.matrix_exponential(n))),
            "exp(M) by an 8-term power series",
        ),
        Entry("Permute", seeded(lambda n: pt.Permute(torch.randperm(n))), ""),
        Entry(
            "LowerCholeskyAffine",
            seeded(
                lambda n: pt.LowerCholeskyAffine(
                    torch.randn(n), torch.tril(well_conditioned(n), -1) + torch.eye(n)
                )
            ),
            "plain Transform (no parameters)",
        ),
        Entry(
            "AffineTransform",
            seeded(lambda n: tt.AffineTransform(torch.randn(n), torch.rand(n) + 0.5)),
            "torch.distributions; elementwise (event_dim 0)",
        ),
        Entry(
            "TanhTransform",
            seeded(lambda n: tt.TanhTransform()),
            "torch.distributions; codomain (−1, 1)",
        ),
    ]


# -- conditional layers (context_features M > 0; see invlin.validate.conditional_catalog) -------
def conditional_seeded(build: Callable[[int, int], object]) -> Callable[..., object]:
    """Wrap ``build(features, context_features)`` into a factory ``(features, context_features,
    seed=0)`` run under its own seed; both counts must be positive integers."""

    def factory(features: int, context_features: int, *, seed: int = 0) -> object:
        n = positive_int(features, "features")
        m = positive_int(context_features, "context_features")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build(n, m)

    factory.__name__ = factory.__qualname__ = getattr(build, "__name__", "factory")
    factory.__doc__ = build.__doc__
    return factory


def zuko_conditional() -> list[Entry]:
    """The lazy transforms of zuko flows with ``context`` features (``t(c)`` is the transform;
    the flows themselves are distributions)."""
    import zuko as z

    def flow(cls: type, n: int, m: int) -> torch.nn.Module:
        at_least(n, 2, cls.__name__)
        return perturb(cls(n, m, transforms=1, hidden_features=[16]).transform)

    return [
        Entry("MAF", conditional_seeded(lambda n, m: flow(z.flows.MAF, n, m)), "context → MADE"),
        Entry("NSF", conditional_seeded(lambda n, m: flow(z.flows.NSF, n, m)), "monotonic RQS"),
        Entry("RealNVP", conditional_seeded(lambda n, m: flow(z.flows.RealNVP, n, m)), ""),
    ]


def nflows_conditional() -> list[Entry]:
    """nflows transforms whose conditioner nets take ``context_features``."""
    import nflows.transforms as nt
    from nflows.nn.nets import ResidualNet
    from nflows.utils import create_alternating_binary_mask

    def coupling(cls: type, n: int, m: int, **kw: object) -> torch.nn.Module:
        at_least(n, 2, cls.__name__)

        def net(n_in: int, n_out: int) -> torch.nn.Module:
            return ResidualNet(n_in, n_out, hidden_features=16, context_features=m, num_blocks=1)

        return perturb(cls(create_alternating_binary_mask(n, even=True), net, **kw))

    def made(n: int, m: int) -> torch.nn.Module:
        at_least(n, 2, "MaskedAffineAutoregressiveTransform")
        return perturb(nt.MaskedAffineAutoregressiveTransform(n, 16, context_features=m))

    rqs = {"tails": "linear", "tail_bound": 3.0, "num_bins": 8}
    return [
        Entry(
            "AffineCouplingTransform",
            conditional_seeded(lambda n, m: coupling(nt.AffineCouplingTransform, n, m)),
            "ResidualNet 16 with context",
        ),
        Entry(
            "PiecewiseRationalQuadraticCouplingTransform",
            conditional_seeded(
                lambda n, m: coupling(nt.PiecewiseRationalQuadraticCouplingTransform, n, m, **rqs)
            ),
            _TAILS,
        ),
        Entry("MaskedAffineAutoregressiveTransform", conditional_seeded(made), "MADE 16"),
    ]


def normflows_conditional() -> list[Entry]:
    """normflows flows built with context features (``forward(z, context)``)."""
    import normflows as nf

    def need2(build: Callable[[int, int], torch.nn.Module]) -> Callable[..., object]:
        def inner(n: int, m: int) -> torch.nn.Module:
            at_least(n, 2, "this layer")
            return perturb(build(n, m))

        return conditional_seeded(inner)

    return [
        Entry(
            "MaskedAffineAutoregressive",
            need2(
                lambda n, m: nf.flows.MaskedAffineAutoregressive(
                    n, 16, context_features=m, num_blocks=1
                )
            ),
            "",
        ),
        Entry(
            "CoupledRationalQuadraticSpline",
            need2(
                lambda n, m: nf.flows.CoupledRationalQuadraticSpline(
                    n, 1, 16, num_context_channels=m
                )
            ),
            _TAILS,
        ),
        Entry(
            "AutoregressiveRationalQuadraticSpline",
            need2(
                lambda n, m: nf.flows.AutoregressiveRationalQuadraticSpline(
                    n, 1, 16, num_context_channels=m, init_identity=False
                )
            ),
            _TAILS,
        ),
    ]


def freia_conditional() -> list[Entry]:
    """FrEIA coupling blocks built with ``dims_c=[(context_features,)]``."""
    import FrEIA.modules as fm

    def block(cls: type, **kw: object) -> Callable[..., object]:
        def build(n: int, m: int) -> torch.nn.Module:
            at_least(n, 2, cls.__name__)
            return perturb(cls([(n,)], dims_c=[(m,)], subnet_constructor=mlp, **kw))

        return conditional_seeded(build)

    return [
        Entry("AllInOneBlock", block(fm.AllInOneBlock), "affine coupling, soft clamp 2"),
        Entry("GLOWCouplingBlock", block(fm.GLOWCouplingBlock), ""),
        Entry("RNVPCouplingBlock", block(fm.RNVPCouplingBlock), ""),
    ]


def pyro_conditional() -> list[Entry]:
    """pyro ``ConditionalTransformModule`` layers: ``t.condition(c)``; returned already wrapped
    in :class:`~invlin.validate.adapters.distributions.DistributionsAdapter`."""
    import pyro.distributions.transforms as pt

    from invlin.validate.adapters.distributions import DistributionsAdapter

    def wrapped(build: Callable[[int, int], object]) -> Callable[..., object]:
        def inner(n: int, m: int) -> object:
            at_least(n, 2, "this layer")
            return DistributionsAdapter(perturb(build(n, m)), n, context_features=m)

        return conditional_seeded(inner)

    hidden = [16]
    return [
        Entry(
            "ConditionalAffineCoupling",
            wrapped(lambda n, m: pt.conditional_affine_coupling(n, m, hidden_dims=hidden)),
            "",
        ),
        Entry(
            "ConditionalAffineAutoregressive",
            wrapped(lambda n, m: pt.conditional_affine_autoregressive(n, m, hidden_dims=hidden)),
            "",
        ),
        Entry(
            "ConditionalSpline",
            wrapped(lambda n, m: pt.conditional_spline(n, m, hidden_dims=hidden)),
            "elementwise (event_dim 0); linear spline order, bound 3",
        ),
    ]


# -- whole flows as distributions (see invlin.validate.distribution.catalog) ------------------
def _zuko_flows(conditional: bool) -> list[Entry]:
    import zuko as z

    def build(cls: type, n: int, mm: int) -> torch.nn.Module:
        at_least(n, 2, cls.__name__)
        return perturb(cls(n, mm, transforms=2, hidden_features=[16]))

    return [
        Entry(
            "MAFFlow",
            _flow_seeded(lambda n, mm: build(z.flows.MAF, n, mm), conditional),
            "2 affine",
        ),
        Entry(
            "NSFFlow", _flow_seeded(lambda n, mm: build(z.flows.NSF, n, mm), conditional), "2 RQS"
        ),
    ]


def _nflows_flows(conditional: bool) -> list[Entry]:
    import nflows.transforms as nt
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow

    def build(n: int, mm: int) -> torch.nn.Module:
        at_least(n, 2, "MaskedAffineAutoregressiveTransform")
        ctx = mm or None
        rqs = {"tails": "linear", "tail_bound": 3.0, "num_bins": 8}
        # spline (not affine) MADEs: an affine MADE divides by scales down to 1e-3 when
        # sampling, which gives tails too heavy for the importance-sampling checks to judge
        parts = [
            nt.MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                n, 16, context_features=ctx, **rqs
            ),
            nt.ReversePermutation(n),
            nt.MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                n, 16, context_features=ctx, **rqs
            ),
        ]
        return perturb(Flow(nt.CompositeTransform(parts), StandardNormal([n])))

    return [
        Entry("MAFFlow", _flow_seeded(build, conditional), f"RQS MADE, reverse, RQS MADE; {_TAILS}")
    ]


def _normflows_flows(conditional: bool) -> list[Entry]:
    import normflows as nf

    def build(n: int, mm: int) -> torch.nn.Module:
        at_least(n, 2, "MaskedAffineAutoregressive")
        ctx = mm or None
        flows = [
            nf.flows.MaskedAffineAutoregressive(n, 16, context_features=ctx, num_blocks=1),
            nf.flows.Permute(n, mode="swap"),
            nf.flows.MaskedAffineAutoregressive(n, 16, context_features=ctx, num_blocks=1),
        ]
        cls = nf.ConditionalNormalizingFlow if mm else nf.NormalizingFlow
        return perturb(cls(nf.distributions.DiagGaussian(n, trainable=False), flows))

    name = "ConditionalNormalizingFlow" if conditional else "NormalizingFlow"
    return [Entry(name, _flow_seeded(build, conditional), "MaskedAffineAutoregressive ×2, swap")]


def _pyro_flows(conditional: bool) -> list[Entry]:
    import pyro.distributions as dist
    import pyro.distributions.transforms as T

    def build(n: int, mm: int) -> object:
        base = dist.Normal(torch.zeros(n), torch.ones(n)).to_event(1)
        if mm:
            parts = [T.conditional_spline(n, context_dim=mm, count_bins=8)]
            return dist.ConditionalTransformedDistribution(base, [perturb(p) for p in parts])
        parts = [T.affine_coupling(n, hidden_dims=[16]), T.Householder(n, count_transforms=1)]
        return dist.TransformedDistribution(base, [perturb(p) for p in parts])

    name = "ConditionalTransformedDistribution" if conditional else "TransformedDistribution"
    note = (
        "conditional spline, 8 bins" if conditional else "elementwise spline (8 bins), Householder"
    )
    return [Entry(name, _flow_seeded(build, conditional), note)]


def _flow_seeded(build: Callable[[int, int], object], conditional: bool) -> Callable[..., object]:
    """``build(features, M)`` as a ``seeded`` factory (M = 0), or a ``conditional_seeded`` one
    that is given M."""
    if conditional:
        return conditional_seeded(build)
    return seeded(lambda n: build(n, 0))


#: library → its whole flows (distributions): ``FLOWS[lib](conditional)``, the conditional
#: ones' factories taking ``context_features`` M.
FLOWS: dict[str, Callable[[bool], list[Entry]]] = {
    "zuko": _zuko_flows,
    "nflows": _nflows_flows,
    "normflows": _normflows_flows,
    "pyro": _pyro_flows,
}
