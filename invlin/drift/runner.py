"""Run one configuration: propose each update to every track, measure at the checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from invlin.drift.config import Configuration, checkpoints
from invlin.drift.measure import CheckpointRecord, OracleCache, measure
from invlin.drift.paths import PathBook
from invlin.drift.policies import make_track, policy_spec
from invlin.drift.regimes import cast_vectors, generate
from invlin.drift.results import ConfigurationResult, TrackResult, summarize
from invlin.oracle import ExactMatrix

__all__ = ["run_configuration"]


def run_configuration(
    config: Configuration, progress: Callable[[int], None] | None = None
) -> ConfigurationResult:
    """Run ``config`` in this process and return its :class:`ConfigurationResult`.

    Every track is offered the same updates in the same order; at each checkpoint the oracle
    evaluates the exact matrix of each distinct update path and each distinct held matrix once.
    ``progress(k)`` is called with the number of updates done since the previous call.
    Deterministic for a given configuration except for the timing fields.
    """
    start = time.perf_counter()
    seq = generate(
        config.regime,
        config.n,
        config.updates,
        seed=config.sequence_seed(),
        scale=config.scale,
        depth=config.depth,
    )
    dtype = config.dtype
    a0 = cast_vectors(seq.a0, dtype)
    us, vs = cast_vectors(seq.u, dtype), cast_vectors(seq.v, dtype)
    tracks = []
    for i, (engine, policy) in enumerate(config.tracks):
        device = config.device if engine == "layer" else "cpu"
        tracks.append(
            make_track(
                engine,
                policy,
                a0,
                dtype,
                device=device,
                seed=config.track_seed(i),
                refresh_every=config.refresh_every,
            )
        )
    book = PathBook(ExactMatrix.from_float(a0), len(tracks))
    oracle = OracleCache(config.backend)
    marks = set(checkpoints(config.updates, seq.event))
    records: list[list[CheckpointRecord]] = [[] for _ in tracks]
    spent = np.zeros(len(tracks))
    since = np.zeros(len(tracks))
    last_mark = 0
    for mark in sorted(marks):
        # Each track runs the whole segment up to the next checkpoint on its own, so its timing
        # is not disturbed by the other tracks (e.g. torch's worker threads next to NumPy's).
        merged = np.zeros((mark - last_mark, len(tracks)), dtype=bool)
        for i, t in enumerate(tracks):
            t0 = time.perf_counter()
            for j, k in enumerate(range(last_mark, mark)):
                merged[j, i] = t.propose(us[k], vs[k])
            since[i] = time.perf_counter() - t0
        spent += since
        for j, k in enumerate(range(last_mark, mark)):
            book.advance(k, us[k], vs[k], merged[j].tolist())
        oracle.clear()
        for i, t in enumerate(tracks):
            em = book.matrix(i)
            state = t.state()
            counters = {
                "merged": t.applied,
                "refused": t.refused,
                "corrections": t.corrections,
                "refreshes": t.refreshes,
            }
            records[i].append(
                measure(
                    state,
                    dtype=dtype,
                    updates=mark,
                    counters=counters,
                    exact_truth=oracle.exact(book.key(i), em),
                    exact_float=oracle.exact_float(book.key(i), em),
                    held_truth=oracle.held(state.a),
                    seconds_per_update=since[i] / (mark - last_mark),
                    seed=[config.track_seed(i), mark],
                )
            )
        if progress is not None:
            progress(mark - last_mark)
        last_mark = mark
    results = []
    for i, (engine, policy) in enumerate(config.tracks):
        spec = policy_spec(policy, refresh_every=config.refresh_every)
        results.append(
            TrackResult(
                engine,
                tracks[i].device,
                policy,
                spec.description,
                records[i],
                summarize(records[i], config.updates, float(spent[i])),
            )
        )
    sigma_at = [float(seq.sigma[m - 1]) for m in sorted(marks)]
    return ConfigurationResult(
        settings=config.to_dict(),
        regime_description=seq.description,
        event=seq.event,
        planned_sigma=sigma_at,
        tracks=results,
        oracle={
            "backend": oracle.backend_used or config.backend,
            "evaluations": oracle.evaluations,
            "max_bits": oracle.max_bits,
        },
        seconds=time.perf_counter() - start,
    )
