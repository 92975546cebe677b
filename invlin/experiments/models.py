"""The toy2d experiment's models and P4 merge periods, by name.

Plain data, importable without torch, so ``invlin train toy2d --help`` can list them.
"""

from __future__ import annotations

__all__ = ["MERGE_EVERY", "MODELS"]

# Merge periods found best in short runs (reports/experiments/README.md): P4Inv + bent identity
# trains much better when u and v accumulate 10 steps between merges; the P4 mixing layers, which
# start at a permutation and move little, do better merging every step (the P4Inv paper's default).
MERGE_EVERY = {"p4_bent": 10, "realnvp_p4": 1}
# Model keys, in the order they are trained and reported, with their short descriptions.
MODELS = {
    "p4_bent": "P4Inv + bent identity",
    "dense_bent": "control: p4_bent's architecture with dense matrices trained directly",
    "coupling_matched": "affine coupling, parameters matched to p4_bent",
    "realnvp": "RealNVP: affine couplings, alternating masks",
    "realnvp_p4": "RealNVP with P4Inv mixing: affine couplings, P4InvLinear between them",
}
