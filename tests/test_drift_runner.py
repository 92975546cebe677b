"""Tests of the drift runner: exact paths, determinism, executors, and an independent recheck of
a checkpoint against a second oracle evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from invlin.drift.config import Configuration, plan_sweep
from invlin.drift.executors import run_local, run_sweep
from invlin.drift.paths import PathBook
from invlin.drift.regimes import generate
from invlin.drift.runner import run_configuration
from invlin.oracle import ExactMatrix, evaluate, exact_path
from invlin.reference.rank_one import Guard, TrackedMatrix
from invlin.testing import EPS, allowed_ratio, assert_forward

_TIMING = {"seconds", "seconds_per_update", "wall_seconds", "environment"}


def _strip(x):
    """A result dict without its timing fields (the only non-deterministic ones)."""
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in _TIMING}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def test_pathbook_follows_each_tracks_merged_updates():
    rng = np.random.default_rng(0)
    a0 = rng.standard_normal((4, 4))
    updates = [(rng.standard_normal(4), rng.standard_normal(4)) for _ in range(6)]
    merged = [
        [True, True, True],
        [True, False, True],
        [True, True, False],
        [False, True, False],
        [True, True, True],
        [True, False, False],
    ]
    book = PathBook(ExactMatrix.from_float(a0), 3)
    for k, ((u, v), flags) in enumerate(zip(updates, merged, strict=True)):
        book.advance(k, u, v, flags)
    for track in range(3):
        mine = [updates[k] for k in range(6) if merged[k][track]]
        assert book.matrix(track) == exact_path(a0, mine)
        assert book.key(track) == tuple(k for k in range(6) if not merged[k][track])
    with pytest.raises(ValueError, match="one flag per track"):
        book.advance(6, *updates[0], [True])


def _config(**kw):
    base = {
        "regime": "crossing",
        "n": 6,
        "updates": 40,
        "dtype": "float32",
        "tracks": (
            ("reference", "plain"),
            ("reference", "guarded"),
            ("layer", "plain"),
            ("reference", "refresh"),
        ),
        "seed": 5,
        "depth": 1e-9,
        "refresh_every": 10,
    }
    base.update(kw)
    return Configuration(**base)


@pytest.mark.slow
def test_runs_are_deterministic_for_a_seed():
    a = run_configuration(_config()).to_dict()
    b = run_configuration(_config()).to_dict()
    c = run_configuration(_config(seed=6)).to_dict()
    assert _strip(a) == _strip(b)
    assert _strip(a) != _strip(c)


def test_a_checkpoint_agrees_with_an_independent_oracle_evaluation():
    """Recompute the plain track's numbers at the sign change and at the end without the runner:
    own SM re-run, exact path by exact_path, truth by the mpmath backend (the run used flint
    when installed), ratios by their formulas."""
    config = _config()
    result = run_configuration(config)
    plain = result.tracks[0]
    assert (plain.engine, plain.policy) == ("reference", "plain")
    seq = generate("crossing", 6, 40, seed=config.sequence_seed(), depth=1e-9)
    a0, us, vs = (x.astype(np.float32) for x in (seq.a0, seq.u, seq.v))
    eps = EPS["float32"]
    checked = 0
    for rec in plain.checkpoints:
        if rec.updates not in (result.event, 40):
            continue
        m = rec.updates
        tracked = TrackedMatrix(a0, dtype="float32", guard=Guard.off())
        for k in range(m):
            tracked.update(us[k], vs[k])
        x = tracked.inverse.astype(np.float64)
        exact = exact_path(a0, zip(us[:m], vs[:m], strict=True))
        truth = evaluate(exact, backend="mpmath")
        e = exact.to_float()
        n1 = lambda z: np.abs(z).sum(axis=0).max()  # noqa: E731  (1-norm)
        ratio = n1(np.eye(6) - x @ e) / (6 * n1(e) * n1(x) * eps)
        assert rec.inverse_ratio_exact == ratio
        held = tracked.a.astype(np.float64)
        ratio_held = n1(np.eye(6) - x @ held) / (6 * n1(held) * n1(x) * eps)
        assert rec.inverse_ratio_held == ratio_held
        assert rec.logdet_tracked == tracked.logabsdet and rec.sign_tracked == tracked.sign
        # Two certified evaluations (2^-64 targets) agree like a fresh float64 result.
        assert_forward(
            out=[rec.logdet_true, rec.kappa_exact],
            expected=[truth.logabsdet, truth.kappa],
            kappa=1.0,
            dtype="float64",
        )
        assert rec.sign_exact == truth.sign
        assert rec.logdet_error_exact == rec.logdet_tracked - rec.logdet_true
        held_truth = evaluate(held, backend="mpmath")
        ld_ratio = abs(tracked.logabsdet - truth.logabsdet) / (6 * truth.kappa * eps)
        ld_ratio_held = abs(tracked.logabsdet - held_truth.logabsdet) / (6 * held_truth.kappa * eps)
        allowed = allowed_ratio(m)
        verdict = (
            max(ratio, ratio_held, ld_ratio, ld_ratio_held) <= allowed
            and tracked.sign == truth.sign == held_truth.sign
        )
        assert rec.allowed == allowed and rec.passed == verdict
        checked += 1
    assert checked == 2
    # Through the crossing in float32, plain Sherman–Morrison ends far outside the allowance.
    assert not plain.checkpoints[-1].passed and not plain.summary["passed"]


def test_policies_see_the_same_sequence_and_refusals_fork_the_exact_path():
    result = run_configuration(_config())
    plain, guarded = result.tracks[0], result.tracks[1]
    assert [c.updates for c in plain.checkpoints] == [c.updates for c in guarded.checkpoints]
    assert guarded.checkpoints[-1].refused > 0 and plain.checkpoints[-1].refused == 0
    assert guarded.checkpoints[-1].merged + guarded.checkpoints[-1].refused == 40
    assert guarded.summary["passed"]


def test_local_sweep_runs_every_configuration():
    configs = plan_sweep(
        dims=[4],
        updates=[12],
        regimes=["walk", "approach"],
        dtypes=["float64"],
        policies=["plain"],
        engines=["reference"],
    )
    results = run_sweep(configs, executor="local")
    assert [r.settings["label"] for r in results] == [c.label for c in configs]
    with pytest.raises(ValueError, match="executor"):
        run_sweep(configs, executor="spark")


@pytest.mark.slow
def test_dask_executor_matches_the_local_one():
    pytest.importorskip("distributed")
    from invlin.drift.executors import run_dask

    configs = plan_sweep(
        dims=[5],
        updates=[24],
        regimes=["walk", "crossing"],
        dtypes=["float64"],
        policies=["plain", "guarded"],
        engines=["reference"],
        seed=2,
    )
    done = []
    local = run_local(configs)
    remote = run_dask(configs, done.append, processes=False, workers=2)
    assert sorted(done) == [24, 24]
    assert [_strip(r.to_dict()) for r in remote] == [_strip(r.to_dict()) for r in local]
    # An existing cluster, reached by its scheduler address (--scheduler ADDRESS).
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        via = run_sweep(configs[1:], executor="dask", scheduler=cluster.scheduler_address)
    assert _strip(via[0].to_dict()) == _strip(local[1].to_dict())
