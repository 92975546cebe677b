"""Plug-in for sbi: its density estimators are flows built from nflows and zuko transforms.

sbi defines no transform class of its own: an estimator's transform is an nflows
``CompositeTransform`` (``estimator.net._transform``) or a zuko lazy transform
(``estimator.net.transform``), which the nflows and zuko plug-ins adapt. This plug-in detects
nothing; it contributes sbi's catalog (the transforms of ``build_maf``, ``build_nsf``,
``build_zuko_maf``, ``build_zuko_nsf`` and sbi's unconditional zuko flows, z-scoring
included), its conventions row and its pinned release.
"""

from __future__ import annotations

import torch

from invlin.validate.catalog import Entry, at_least, perturb, seeded
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter
from invlin.validate.registry import builtin

__all__ = ["PLUGIN", "catalog", "conditional_catalog", "detect"]

_ROWS = 64  # training-batch rows the builders z-score from (drawn N(1, 2²): not already standard)


def detect(layer: object) -> type[Adapter] | None:
    """Always ``None``: an sbi estimator's transforms are nflows or zuko objects (their plug-ins
    adapt them); an estimator itself (``ConditionalDensityEstimator``) is a distribution, not a
    layer, and is refused by every layer plug-in."""
    del layer  # sbi has no transform class to look up
    return None


def _batch(n: int) -> torch.Tensor:
    return 1.0 + 2.0 * torch.randn(_ROWS, n)


def _conditional(name: str, n: int, m: int) -> torch.nn.Module:
    """The transform of sbi's ``build_<name>`` p(x | y), x of n features, y of m."""
    import sbi.neural_nets.net_builders as nb

    at_least(n, 2, name)
    build = getattr(nb, f"build_{name}")
    if name.startswith("zuko_"):
        estimator = build(_batch(n), _batch(m), hidden_features=[16], num_transforms=2)
        return perturb(estimator.net.transform)  # lazy: t(c) is the transform for context c
    estimator = build(_batch(n), _batch(m), hidden_features=16, num_transforms=2)
    return perturb(estimator.net._transform)  # nflows' Flow has no public transform accessor


def _unconditional(which: str, n: int) -> torch.nn.Module:
    """The lazy transform of sbi's unconditional zuko flow ``which`` (a zuko.flows name:
    ``MAF``, ``NSF``)."""
    from sbi.neural_nets.net_builders.flow import build_zuko_unconditional_flow

    at_least(n, 2, which)
    flow = build_zuko_unconditional_flow(
        which, _batch(n), z_score_x="independent", hidden_features=[16], num_transforms=2
    )
    return perturb(flow.net.transform)


def catalog() -> list[Entry]:
    """sbi's unconditional flows (the ones sbi builds for priors): zuko MAF and NSF with
    z-scoring; the estimators proper are conditional (:func:`conditional_catalog`)."""
    return [
        Entry(
            "UnconditionalMAF",
            seeded(lambda n: _unconditional("MAF", n)),
            "build_zuko_unconditional_flow('MAF'), z-scored, 2 transforms",
        ),
        Entry(
            "UnconditionalNSF",
            seeded(lambda n: _unconditional("NSF", n)),
            "build_zuko_unconditional_flow('NSF'), z-scored, 2 transforms",
        ),
    ]


def conditional_catalog() -> list[Entry]:
    """The transforms of sbi's conditional density estimators p(x | y) (y: the context)."""
    from invlin.validate._catalog_layers import conditional_seeded

    notes = {
        "maf": "build_maf: z-score affine → 2 MADE affine layers with permutations (nflows)",
        "nsf": "build_nsf: z-score affine → 2 spline couplings (nflows)",
        "zuko_maf": "build_zuko_maf: z-score → 2 MADE affine layers (zuko)",
        "zuko_nsf": "build_zuko_nsf: z-score → 2 spline autoregressive layers (zuko)",
    }
    return [
        Entry(
            name.upper(),
            conditional_seeded(lambda n, m, name=name: _conditional(name, n, m)),
            note,
        )
        for name, note in notes.items()
    ]


PLUGIN = builtin(
    "sbi",
    detect=detect,
    convention=Convention(
        library="sbi",
        layer_type="the transforms of sbi's density estimators (nflows CompositeTransform or "
        "zuko lazy transform)",
        forward_call="as nflows (estimator.net._transform) or zuko (estimator.net.transform)",
        inverse_call="as nflows or zuko",
        context="the condition y: estimator.log_prob(x, condition=y) embeds y and passes it "
        "as the transform's context (nflows context=, zuko t(c)); y of shape (B, m)",
        direction="data → noise (as nflows and zuko)",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y|",
        batch="(B, n) for nflows transforms; any (*batch, n) for zuko",
        adapter="the nflows or zuko adapter; the report's library column says sbi",
    ),
    catalog=catalog,
    conditional=conditional_catalog,
    priority=45,
)
