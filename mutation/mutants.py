"""The curated mutants: single-point defects of the kinds that matter in invlin.

Each :class:`Mutant` names one file, an exact snippet that must occur there exactly once, its
replacement, the defect class in one line, and the pytest selection (fast: node ids) that is
meant to kill it. ``equivalent`` holds the written reason when a mutant cannot change any
observable result; such mutants are listed but not run. Mutants locate their target by its
text, not its line, so edits elsewhere in the file leave them valid; one whose snippet has been
edited away is *stale*: the runner lists it (not run, not scored, exit status 1), never as a
survivor. Mutants of files that others change often (the drift monitor, P4InvLinear's merge)
are at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MUTANTS", "Mutant"]


@dataclass(frozen=True)
class Mutant:
    """One planted defect: ``original`` (exactly once in ``file``) becomes ``replacement``.

    ``select``: pytest arguments (node ids, ``-k`` expressions, ``--doctest-modules`` paths);
    ``timeout``: seconds, overriding the runner's default; ``equivalent``: why the mutant
    cannot be detected (None: it must be killed)."""

    id: str
    file: str
    original: str
    replacement: str
    defect: str
    select: tuple[str, ...]
    timeout: float | None = None
    equivalent: str | None = None


_RANK_ONE = "invlin/reference/rank_one.py"
_EST = "invlin/reference/estimators.py"
_TOL = "invlin/testing/tolerance.py"
_ORACLE = "invlin/oracle/evaluate.py"
_P4 = "invlin/nn/p4.py"
_MONITOR = "invlin/nn/monitor.py"
_GUARD_T = "tests/test_guard_bounds.py"
_RANK_ONE_T = "tests/test_rank_one_values.py"
_MONITOR_T = "tests/test_monitor_decisions.py"
_TOL_T = "tests/test_tolerance_values.py"
_EACH = "tests/test_validate_each_check.py"


def _each(check: str) -> tuple[str, ...]:
    """The per-check selection: the broken layer fails this check alone, its twin passes."""
    return (
        f"{_EACH}::test_broken_layer_fails_the_check_alone[{check}]",
        f"{_EACH}::test_correct_twin_passes_the_check_alone[{check}]",
    )


MUTANTS: tuple[Mutant, ...] = (
    # -- reference: Sherman–Morrison, determinant lemma, guard ---------------------------------
    Mutant(
        "rank_one.sm_sign",
        _RANK_ONE,
        "new_inv = self._inv - np.outer(xu / c, v @ self._inv)",
        "new_inv = self._inv + np.outer(xu / c, v @ self._inv)",
        "Sherman–Morrison update with the wrong sign",
        ("tests/test_rank_one.py",),
    ),
    Mutant(
        "rank_one.c_off_by_one",
        _RANK_ONE,
        "return self.dtype.type(1) + v @ xu",
        "return self.dtype.type(0) + v @ xu",
        "c = vᵀA⁻¹u instead of 1 + vᵀA⁻¹u (off by one in the update factor)",
        ("tests/test_rank_one.py",),
    ),
    Mutant(
        "rank_one.lemma_sign",
        _RANK_ONE,
        "new_logabsdet = self._logabsdet + self.dtype.type(log_abs_c)",
        "new_logabsdet = self._logabsdet - self.dtype.type(log_abs_c)",
        "determinant lemma subtracts log|c|",
        ("tests/test_rank_one.py",),
    ),
    Mutant(
        "rank_one.sign_flip_test",
        _RANK_ONE,
        "self._sign = -self._sign if c < 0 else self._sign",
        "self._sign = -self._sign if c > 0 else self._sign",
        "sign of det flipped on c > 0 instead of c < 0",
        ("tests/test_rank_one.py",),
    ),
    Mutant(
        "rank_one.guard_pre_merge",
        _RANK_ONE,
        "reason = self.guard.reason(log_abs_c, float(new_logabsdet))",
        "reason = self.guard.reason(log_abs_c, float(self._logabsdet))",
        "guard judges the pre-merge log|det| (reference)",
        ("tests/test_rank_one.py", _GUARD_T),
    ),
    Mutant(
        "guard.max_inclusive",
        _RANK_ONE,
        "if self.max_logabsdet is not None and not new_logabsdet < self.max_logabsdet:",
        "if self.max_logabsdet is not None and not new_logabsdet <= self.max_logabsdet:",
        "guard admits log|det| equal to max_logabsdet (< became <=)",
        (_GUARD_T,),
    ),
    Mutant(
        "guard.min_c_inclusive",
        _RANK_ONE,
        "if self.min_log_abs_c is not None and not log_abs_c > self.min_log_abs_c:",
        "if self.min_log_abs_c is not None and not log_abs_c >= self.min_log_abs_c:",
        "guard admits log|c| equal to min_log_abs_c (> became >=)",
        (_GUARD_T,),
    ),
    Mutant(
        "guard.min_logdet_skipped",
        _RANK_ONE,
        "if self.min_logabsdet is not None and not new_logabsdet > self.min_logabsdet:",
        "if False and self.min_logabsdet is not None and not new_logabsdet > self.min_logabsdet:",
        "guard's lower log|det| bound never checked (skipped branch)",
        ("tests/test_rank_one.py", _GUARD_T),
    ),
    Mutant(
        "guard.p4_margin",
        _RANK_ONE,
        "return cls(min_logdet - 4.0, min_logdet - 0.5, max_logdet + 0.5)",
        "return cls(min_logdet - 4.0, min_logdet - 0.5, max_logdet - 0.5)",
        "P4 guard's upper log|det| margin with the wrong sign",
        (_GUARD_T,),
    ),
    Mutant(
        "rank_one.perturbed_inverse_logdet",
        _RANK_ONE,
        "logdet = -(self._logabsdet + np.log(np.abs(c)))",
        "logdet = -(self._logabsdet - np.log(np.abs(c)))",
        "perturbed inverse's log|det| subtracts log|c| inside the negation",
        ("tests/test_rank_one.py",),
    ),
    Mutant(
        "rank_one.factor_swaps",
        _RANK_ONE,
        "sign = (-1) ** (swaps + int(np.count_nonzero(diag < 0)))",
        "sign = (-1) ** int(np.count_nonzero(diag < 0))",
        "LU sign ignores the row swaps",
        ("tests/test_rank_one.py", _RANK_ONE_T),
    ),
    Mutant(
        "rank_one.correct_order",
        _RANK_ONE,
        "            for _ in range(order - 2):\n                s = eye + r @ s\n"
        "            inv = inv @ s",
        "            for _ in range(order - 3):\n                s = eye + r @ s\n"
        "            inv = inv @ s",
        "hyperpower correction one term short (order − 3 extra terms)",
        ("tests/test_rank_one.py", _GUARD_T),
    ),
    # -- reference: drift estimators -------------------------------------------------------
    Mutant(
        "estimators.ratio_missing_n",
        _EST,
        "return DriftEstimate(res, res / (n * na * nx * e), ld, na * nx)",
        "return DriftEstimate(res, res / (na * nx * e), ld, na * nx)",
        "probe ratio (reference) missing its factor n",
        ("tests/test_estimators.py", _TOL_T),
    ),
    Mutant(
        "estimators.eps_dtype",
        _EST,
        "e = _eps(dtype if dtype is not None else x.dtype)",
        "e = _eps(np.float64)",
        "probe ratio uses float64's ε whatever the dtype",
        ("tests/test_estimators.py", _TOL_T),
    ),
    Mutant(
        "estimators.no_sqrt",
        _EST,
        "return float(math.sqrt(np.mean(np.sum(r * r, axis=0))))",
        "return float(np.mean(np.sum(r * r, axis=0)))",
        "residual estimate is the mean square, not its root",
        ("tests/test_estimators.py", _TOL_T),
    ),
    Mutant(
        "estimators.hutchinson_sum",
        _EST,
        "return float(np.mean(np.sum(z * r, axis=0)))",
        "return float(np.sum(np.sum(z * r, axis=0)))",
        "Hutchinson estimate summed over probes instead of averaged",
        ("tests/test_estimators.py", _TOL_T),
    ),
    # -- reference: LU layer and activations -------------------------------------------------
    Mutant(
        "reference_lu.inverse_logdet_sign",
        "invlin/reference/lu.py",
        "return x, np.full(y.shape[:-1], -self.logabsdet())",
        "return x, np.full(y.shape[:-1], self.logabsdet())",
        "inverse log|det| with the forward's sign",
        ("tests/test_reference_lu.py",),
    ),
    Mutant(
        "reference_activations.log_not_log1p",
        "invlin/reference/activations.py",
        "near = (a * xm + b * np.log1p(np.expm1(xm) / 2)) - t",
        "near = (a * xm + b * np.log(1 + np.expm1(xm) / 2)) - t",
        "log(1 + t) instead of log1p(t) in the inverse's residual near x = 0",
        ("tests/test_reference_activations.py",),
    ),
    # -- torch layers --------------------------------------------------------------------------
    Mutant(
        "nn_lu.inverse_logdet_sign",
        "invlin/nn/lu.py",
        "return x, (-self.logabsdet(work)).to(y.dtype).expand(y.shape[:-1])",
        "return x, (self.logabsdet(work)).to(y.dtype).expand(y.shape[:-1])",
        "LULinear inverse log|det| with the forward's sign",
        ("tests/test_nn_lu.py",),
    ),
    Mutant(
        "nn_lu.logdet_mean",
        "invlin/nn/lu.py",
        "return torch.log(torch.abs(d)).sum().to(out)",
        "return torch.log(torch.abs(d)).mean().to(out)",
        "LULinear log|det| missing its factor n (mean of log|uᵢᵢ| instead of the sum)",
        ("tests/test_nn_lu.py",),
    ),
    Mutant(
        "p4_ops.forward_logdet_sign",
        "invlin/nn/p4_ops.py",
        "    return float(logabsdet) + log_c",
        "    return float(logabsdet) - log_c",
        "P4 forward log|det| subtracts log|c| (CPU host path)",
        ("tests/test_nn_p4_forms.py", "tests/test_nn_p4_logdet.py", "tests/test_nn_p4_values.py"),
    ),
    Mutant(
        "p4_ops.factor_c_off_by_one",
        "invlin/nn/p4_ops.py",
        "    c = 1 + vxu",
        "    c = vxu",
        "c = vᵀXu instead of 1 + vᵀXu in the traced/penalty path",
        ("tests/test_nn_p4_forms.py", "tests/test_nn_p4_logdet.py", "tests/test_nn_p4_values.py"),
    ),
    Mutant(
        "p4_ops.penalty_pre_merge",
        "invlin/nn/p4_ops.py",
        "terms = torch.stack([log_c, log_c + logabsdet])",
        "terms = torch.stack([log_c, logabsdet])",
        "penalty judges log|det A| instead of log|c·det A|",
        ("tests/test_nn_p4_forms.py", "tests/test_nn_p4_logdet.py", "tests/test_nn_p4_values.py"),
    ),
    Mutant(
        "nn_activations.log_not_log1p",
        "invlin/nn/activations.py",
        "return torch.log1p(xc / (2 * torch.sqrt(xc * xc + 1)))",
        "return torch.log(1 + xc / (2 * torch.sqrt(xc * xc + 1)))",
        "log(1 + t) instead of log1p(t) in BentIdentity's log-derivative",
        ("tests/test_nn_activations.py",),
        equivalent=(
            "t = x/(2√(x²+1)) lies in (−½, ½), where log(1 + t) errs by at most about ε "
            "absolutely; every log|det| judgement (tolerance engine, validator) is absolute on "
            "the n·κ·ε scale, so the change is below what any bound may distinguish"
        ),
    ),
    # -- tolerance engine --------------------------------------------------------------------------
    Mutant(
        "tolerance.allowed_off_by_one",
        _TOL,
        "return float(threshold) * (1.0 + int(updates))",
        "return float(threshold) * max(1, int(updates))",
        "allowance threshold·max(1, k) instead of threshold·(1 + k)",
        ("tests/test_tolerance.py", _TOL_T),
    ),
    Mutant(
        "tolerance.inverse_missing_n",
        _TOL,
        "scale = n * na * nx * EPS[dt]",
        "scale = na * nx * EPS[dt]",
        "LAPACK inverse ratio missing its factor n",
        ("tests/test_tolerance.py", _TOL_T),
    ),
    Mutant(
        "tolerance.residual_extra_n",
        _TOL,
        "den = na * np.abs(x2).sum(axis=1) * EPS[dt]",
        "den = n * na * np.abs(x2).sum(axis=1) * EPS[dt]",
        "residual ratio with an extra factor n",
        ("tests/test_tolerance.py", _TOL_T),
    ),
    Mutant(
        "tolerance.forward_missing_kappa",
        _TOL,
        "den = np.abs(e2).sum(axis=1) * kappa * EPS[dt]",
        "den = np.abs(e2).sum(axis=1) * EPS[dt]",
        "forward-error ratio missing κ",
        ("tests/test_tolerance.py", _TOL_T),
    ),
    Mutant(
        "tolerance.logdet_missing_n",
        _TOL,
        "scale = n * kappa * EPS[dt]",
        "scale = kappa * EPS[dt]",
        "log|det| ratio missing its factor n",
        ("tests/test_tolerance.py", _TOL_T),
    ),
    Mutant(
        "tolerance.passed_strict",
        _TOL,
        "return bool(math.isfinite(self.value) and self.value <= allowed)",
        "return bool(math.isfinite(self.value) and self.value < allowed)",
        "a ratio equal to the allowance fails (<= became <)",
        ("tests/test_tolerance.py", _TOL_T),
    ),
    Mutant(
        "tolerance.infinities_unsigned",
        _TOL,
        "same_inf = np.isinf(o64) & (o64 == e64)",
        "same_inf = np.isinf(o64) & np.isinf(e64)",
        "log|det| +inf matches −inf (sign of an infinity dropped)",
        ("tests/test_tolerance.py", _TOL_T),
    ),
    Mutant(
        "tolerance.kappa_wrong_norm",
        _TOL,
        "return float(np.linalg.norm(a64, 1) * np.linalg.norm(x64, 1))",
        "return float(np.linalg.norm(a64, 1) * np.linalg.norm(x64, np.inf))",
        "κ₁ from the ∞-norm of the inverse",
        ("tests/test_tolerance.py", _TOL_T),
    ),
    Mutant(
        "tolerance.eps_of_a",
        _TOL,
        'dt = dtype_name(dtype if dtype is not None else x)\n    a64, x64 = _square(a, "a")',
        'dt = dtype_name(dtype if dtype is not None else a)\n    a64, x64 = _square(a, "a")',
        "inverse ratio takes ε from A's dtype instead of X's",
        ("tests/test_tolerance.py", _TOL_T),
    ),
    Mutant(
        "assertions.sign_magnitude",
        "invlin/testing/assertions.py",
        "bad = np.flatnonzero(~(o == e))",
        "bad = np.flatnonzero(~(np.abs(o) == np.abs(e)))",
        "sign assertion compares magnitudes only (sign dropped)",
        ("tests/test_tolerance.py",),
    ),
    # -- oracle --------------------------------------------------------------------------------
    Mutant(
        "oracle.check_bits_not_raised",
        _ORACLE,
        "return bits + max(32, bits // 2)",
        "return bits",
        "confirming evaluation at the same precision (precision not raised)",
        ("tests/test_oracle.py",),
    ),
    Mutant(
        "oracle.exponent_term_dropped",
        _ORACLE,
        "return libmp.mpf_add(ev.log_abs_det, shift, prec, rnd)",
        "return ev.log_abs_det",
        "log|det A| without the n·E·log 2 of the common exponent",
        ("tests/test_oracle.py",),
    ),
    Mutant(
        "oracle.lad_gap_ignored",
        _ORACLE,
        "ok = lo.sign == hi.sign and _le(disagreement, eps) and _le(lad_gap, lad_tol)",
        "ok = lo.sign == hi.sign and _le(disagreement, eps)",
        "acceptance ignores the log|det| disagreement of the two precisions",
        ("tests/test_oracle.py",),
    ),
    Mutant(
        "oracle_mpmath.sign_dropped",
        "invlin/oracle/_mpmath.py",
        "sign = -1 if det[0] else 1",
        "sign = 1",
        "mpmath backend drops the determinant's sign",
        ("tests/test_oracle.py",),
    ),
    Mutant(
        "oracle_mpmath.swap_sign",
        "invlin/oracle/_mpmath.py",
        "det = neg(det)",
        "det = det",
        "mpmath backend ignores the row swaps in the sign",
        ("tests/test_oracle.py",),
    ),
    Mutant(
        "oracle_flint.sign_dropped",
        "invlin/oracle/_flint.py",
        "sign = 1 if det > 0 else -1",
        "sign = 1",
        "flint backend drops the determinant's sign",
        ("tests/test_oracle.py",),
    ),
    Mutant(
        "oracle_flint.precision_fixed",
        "invlin/oracle/_flint.py",
        "fl.ctx.prec = bits\n",
        "fl.ctx.prec = 53\n",
        "flint backend computes at 53 bits whatever is asked (precision not raised)",
        ("tests/test_oracle.py",),
    ),
    Mutant(
        "exact.exponent_off_by_one",
        "invlin/oracle/exact.py",
        "ex = ex.astype(np.int64) - 53 + tz",
        "ex = ex.astype(np.int64) - 52 + tz",
        "exact dyadic exponent off by one",
        ("tests/test_oracle.py",),
    ),
    # -- the validator's checks: each must fail its own broken layer when run alone ------------
    Mutant(
        "checks.invertibility_rank_ignored",
        "invlin/validate/checks/invertibility.py",
        "return (~finite) | (rank < n), rank",
        "return (~finite), rank",
        "invertibility check ignores the numerical rank",
        _each("invertibility"),
    ),
    Mutant(
        "checks.round_trip_self_compare",
        "invlin/validate/checks/roundtrip.py",
        "first = judge_values(xb, xs, s_in, usable & in1, ctx.dtype)\n"
        "        second = judge_values(y1, y0_np, s_out, usable & in2, ctx.dtype)",
        "first = judge_values(xb, xb, s_in, usable & in1, ctx.dtype)\n"
        "        second = judge_values(y1, y1, s_out, usable & in2, ctx.dtype)",
        "round trip compares the returned side with itself, not with the start",
        _each("round_trip"),
    ),
    Mutant(
        "checks.logdet_autograd_magnitude",
        "invlin/validate/checks/logdet.py",
        "        w = judge_logdet(got, loc.logabsdet, kap, usable, n, ctx.dtype)\n"
        "        if w.ratio is not None",
        "        w = judge_logdet(np.abs(got), np.abs(loc.logabsdet), kap, usable, n, ctx.dtype)\n"
        "        if w.ratio is not None",
        "autograd log|det| check compares magnitudes only",
        _each("logdet_autograd"),
    ),
    Mutant(
        "checks.logdet_oracle_magnitude",
        "invlin/validate/checks/logdet.py",
        "r = judge_logdet(got, np.full(b, oracle.logabsdet), np.full(b, kappa), ref_ok, n, "
        "ctx.dtype)",
        "r = judge_logdet(np.abs(got), np.full(b, abs(oracle.logabsdet)), np.full(b, kappa), "
        "ref_ok, n, ctx.dtype)",
        "oracle log|det| check compares magnitudes only",
        _each("logdet_oracle"),
    ),
    Mutant(
        "checks.logdet_consistency_magnitude",
        "invlin/validate/checks/logdet.py",
        "w = judge_logdet(fwd, -inv, kap, usable & inside, n, ctx.dtype)",
        "w = judge_logdet(np.abs(fwd), np.abs(inv), kap, usable & inside, n, ctx.dtype)",
        "log|det| consistency compares magnitudes only",
        _each("logdet_consistency"),
    ),
    Mutant(
        "checks.batch_shape_skips_3d",
        "invlin/validate/checks/shapes.py",
        "for k, shape in enumerate(shapes):\n            x = inputs(shape, seed + k)",
        "for k, shape in enumerate(shapes[:1]):\n            x = inputs(shape, seed + k)",
        "batch-shape check tries only 1-D batches (skips the 3-D and 4-D inputs)",
        _each("batch_shape"),
    ),
    Mutant(
        "checks.dtype_not_compared",
        "invlin/validate/checks/shapes.py",
        "if t.dtype != dtype:",
        "if False:",
        "dtype/device check never compares an output's dtype",
        _each("dtype_device"),
    ),
    Mutant(
        "checks.modes_eval_skipped",
        "invlin/validate/checks/state.py",
        "        tested.train(False)\n        try:\n            y_e, l_e = tested.forward(xt)",
        "        tested.train(True)\n        try:\n            y_e, l_e = tested.forward(xt)",
        "modes check never switches to eval mode (skipped branch)",
        _each("modes"),
    ),
    Mutant(
        "checks.cache_inverse_self_compare",
        "invlin/validate/checks/state.py",
        "        t.rows(\n            x3,\n            x_fresh,",
        "        t.rows(\n            x_fresh,\n            x_fresh,",
        "cache check compares the fresh inverse with itself after the update",
        _each("cache"),
    ),
    Mutant(
        "checks.edges_nan_only",
        "invlin/validate/checks/finiteness.py",
        "bad = ~np.isfinite(a).all(axis=1)",
        "bad = np.isnan(a).any(axis=1)",
        "edges check counts NaN but not ±inf as non-finite",
        _each("edges"),
    ),
    Mutant(
        "checks.conditioning_or",
        "invlin/validate/checks/illcond.py",
        "ok = w.ratio.passed(ALLOWED) and lr.passed(ALLOWED)",
        "ok = w.ratio.passed(ALLOWED) or lr.passed(ALLOWED)",
        "conditioning check passes when either of its two comparisons passes (and → or)",
        _each("conditioning"),
    ),
    Mutant(
        "checks.gradients_step",
        "invlin/validate/checks/finite_diff.py",
        "/ (2.0 * h * s)",
        "/ (h * s)",
        "central differences divided by the wrong step (h·s instead of 2h·s)",
        (*_each("gradients"), "tests/test_validate_gradients.py"),
    ),
    Mutant(
        "checks.exception_passes",
        "invlin/validate/checks/run.py",
        '            status="error",\n            message=f"the layer raised',
        '            status="pass",\n            message=f"the layer raised',
        "a check that meets a layer exception reports pass",
        (f"{_EACH}::test_a_layer_raising_outside_the_search_is_an_error",),
    ),
    # -- files others are changing (P4InvLinear's merge, the drift monitor): located by snippet --
    Mutant(
        "p4.guard_pre_merge",
        _P4,
        "if guard.reason(log_c, new_ld) is not None:",
        "if guard.reason(log_c, r.logabsdet) is not None:",
        "P4InvLinear's merge guard judges the pre-merge log|det|",
        (_GUARD_T,),
    ),
    Mutant(
        "p4.sign_flip_test",
        _P4,
        '        if c < 0:\n            self._buffers["sign"].neg_()',
        '        if c > 0:\n            self._buffers["sign"].neg_()',
        "P4InvLinear flips the sign of det on c > 0 instead of c < 0",
        (_GUARD_T,),
    ),
    Mutant(
        "monitor.both_criteria",
        _MONITOR,
        "reading.ratio <= self.max_ratio and reading.logdet_ratio <= self.max_ratio",
        "reading.ratio <= self.max_ratio or reading.logdet_ratio <= self.max_ratio",
        "drift monitor acts only when both criteria exceed (and → or)",
        (_MONITOR_T, "tests/test_nn_monitor.py"),
    ),
    Mutant(
        "monitor.ratio_missing_n",
        _MONITOR,
        "scale = n * na * nx * eps(a.dtype)",
        "scale = na * nx * eps(a.dtype)",
        "drift monitor's probe ratio missing its factor n",
        (_MONITOR_T, "tests/test_nn_monitor.py"),
    ),
    Mutant(
        "monitor.kappa_drop_inverted",
        _MONITOR,
        "return kappa_peak > self.max_kappa_drop * reading.kappa",
        "return reading.kappa > self.max_kappa_drop * kappa_peak",
        "κ-drop rule compares the wrong way round (refreshes on a rise, never on a fall)",
        (_MONITOR_T, "tests/test_nn_monitor.py"),
    ),
)
