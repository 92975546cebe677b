"""Report figures (matplotlib PNGs) drawn from a report's data document alone."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["FIGURES", "num", "render_figures"]

_POLICY_COLORS = {
    "plain": "#d62728",
    "guarded": "#1f77b4",
    "monitored": "#2ca02c",
    "refresh": "#9467bd",
    "as-recorded": "#ff7f0e",
}
# Policies are drawn in this order, each with a narrower line and a smaller marker than the one
# before: where curves coincide (plain = guarded on the approach, guarded = monitored on the
# crossing, reference = layer almost everywhere) every policy still shows, as nested markers and
# a line inside a wider one.
_POLICY_ORDER = ("plain", "guarded", "monitored", "refresh", "as-recorded")
_POLICY_WIDTHS = {
    "plain": 4.0,
    "guarded": 2.8,
    "monitored": 1.8,
    "refresh": 1.0,
    "as-recorded": 1.5,
}
_POLICY_MARKERS = {
    "plain": "o",
    "guarded": "s",
    "monitored": "^",
    "refresh": "D",
    "as-recorded": "v",
}
# Each size fits inside the one before (a square's diagonal is √2 its side).
_POLICY_MARKER_SIZES = {
    "plain": 12.5,
    "guarded": 8.0,
    "monitored": 5.5,
    "refresh": 3.5,
    "as-recorded": 6.0,
}
_ENGINE_STYLES = {"reference": "-", "layer": "--", "recorded": "-"}
_DTYPE_COLORS = {
    "float64": "#1f77b4",
    "float32": "#ff7f0e",
    "bfloat16": "#2ca02c",
    "float16": "#8c564b",
}
_REGIME_MARKERS = {"walk": "o", "approach": "s", "crossing": "^", "replay": "D"}

#: Figure file name → caption, in the order the report shows them.
FIGURES = {
    "drift.png": "Inverse drift against the exact path: LAPACK ratio ‖I − XE‖₁/(n‖E‖₁‖X‖₁ε) "
    "vs updates, per condition regime (rows) and dtype (columns), largest n. Colour and "
    "marker: policy, drawn plain → refresh with ever thinner lines and smaller markers, so "
    "policies whose curves coincide show as nested markers; solid with large markers: NumPy "
    "reference, dashed with small markers: torch layer; a filled marker is a failed "
    "checkpoint; dotted black: the allowance 30(1+k); grey vertical line: deepest point / "
    "sign change.",
    "logdet.png": "log|det| drift against the exact path: ratio |ℓ − ℓ*|/(nκε), same layout.",
    "policies.png": "Policy comparison (reference engine, largest n): worst judged ratio ÷ "
    "allowance over the run (top; hatched: the track FAILED, also when "
    "its ratios stayed below 1 but the tracked sign of det was wrong) and mean "
    "wall time per proposed update including guard, monitor and refreshes "
    "(bottom).",
    "crossing.png": "Sign-change recovery: the crossing regime around the sign change "
    "(x = updates − event, symmetric log), inverse ratio per policy "
    "(reference engine, largest n); red circles: tracked sign wrong; grey: κ₁ "
    "of the plain track's exact path (right axis).",
    "conditioning.png": "Conditioning and dimension: κ₁ of the exact path along each regime "
    "(left, largest n, float64) and the largest inverse ratio of plain "
    "Sherman–Morrison per n (right; colour: dtype, marker: regime).",
    "estimators.png": "O(n²) drift estimators vs the truth at every checkpoint: probe "
    "residual vs ‖XA − I‖_F (left; dashed: factor 10 band) and Hutchinson "
    "tr(XA − I) vs log|det(XA)| (right).",
    "replay.png": "Replay of a recorded training run: recorded log|det| against the oracle "
    "(ratio |ℓ − ℓ*|/(nκε)), inverse ratio of the reference re-tracking of the "
    "same merges, and κ₁ of the exact path (grey, right axis).",
}


def num(x: Any) -> float:
    """A report value as a float ("inf", "-inf", "nan" strings included; None → nan)."""
    if x is None:
        return math.nan
    if isinstance(x, str):
        return float(x)
    return float(x)


def _figure(rows: int, cols: int, *, width: float = 4.2, height: float = 3.0) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _configs(data: dict[str, Any]) -> list[dict[str, Any]]:
    return list(data.get("configurations", []))


def _largest_n(configs: Iterable[dict[str, Any]]) -> int | None:
    ns = [c["settings"]["n"] for c in configs]
    return max(ns) if ns else None


def _ordered(values: Iterable[str], order: Iterable[str]) -> list[str]:
    vals = set(values)
    known = [v for v in order if v in vals]
    return known + sorted(vals - set(known))


def _series(track: dict[str, Any], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for cp in track["checkpoints"]:
        y = num(cp[key])
        if math.isfinite(y) and y > 0:
            xs.append(float(cp["updates"]))
            ys.append(y)
    return xs, ys


def _grid(data: dict[str, Any], key: str, ylabel: str) -> bytes | None:
    configs = [c for c in _configs(data) if c["settings"]["regime"] != "replay"]
    if not configs:
        return None
    n = _largest_n(configs)
    configs = [c for c in configs if c["settings"]["n"] == n]
    regimes = _ordered((c["settings"]["regime"] for c in configs), ("walk", "approach", "crossing"))
    dtypes = _ordered((c["settings"]["dtype"] for c in configs), ("float64", "float32", "bfloat16"))
    fig, axes = _figure(len(regimes), len(dtypes))
    for i, regime in enumerate(regimes):
        for j, dt in enumerate(dtypes):
            ax = axes[i][j]
            chosen = [
                c
                for c in configs
                if c["settings"]["regime"] == regime and c["settings"]["dtype"] == dt
            ]
            k_max = 1
            for c in chosen:
                k_max = max(k_max, c["settings"]["updates"])
                for t in _drawing_order(c["tracks"]):
                    _plot_track(ax, t, key)
                if c.get("event"):
                    ax.axvline(c["event"], color="0.6", lw=0.8, zorder=0)
            ks = [1.0, float(k_max)]
            ax.plot(
                ks, [30.0 * (1 + k) for k in ks], ":", color="k", lw=1.0, label="allowance 30(1+k)"
            )
            # One x scale for every panel (the trajectories through the event need a linear one).
            ax.set_xscale("linear")
            ax.set_yscale("log")
            title = f"{regime}, {dt}, n={n}"
            same = _coinciding([t for c in chosen for t in c["tracks"]], key)
            ax.set_title(title + (f"\nsame curve: {same}" if same else ""), fontsize=9)
            ax.set_xlabel("updates")
            if j == 0:
                ax.set_ylabel(ylabel)
            ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    fig.legend(uniq.values(), uniq.keys(), loc="outside lower center", ncol=5, fontsize=8)
    return _png(fig)


def _drawing_order(tracks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tracks in :data:`_POLICY_ORDER` (widest first), the reference engine before the layer."""
    rank = {p: i for i, p in enumerate(_POLICY_ORDER)}
    return sorted(
        tracks,
        key=lambda t: (rank.get(t["policy"], len(rank)), t["engine"] != "reference"),
    )


# Curves closer than this (relative, at every checkpoint) are one curve at the figure's
# resolution: a log axis of several decades over a few hundred pixels.
_SAME_CURVE = 1e-3


def _coinciding(tracks: list[dict[str, Any]], key: str) -> str:
    """The policies whose ``key`` curves coincide, per engine, as text for the panel title,
    e.g. "plain = guarded" (both engines) or "plain = guarded (layer)"; "" when none do."""
    per_engine: dict[str, list[list[str]]] = {}
    for engine in dict.fromkeys(t["engine"] for t in tracks):
        groups: list[tuple[list[float], list[str]]] = []
        for t in _drawing_order([t for t in tracks if t["engine"] == engine]):
            ys = [num(cp[key]) for cp in t["checkpoints"]]
            for ref, members in groups:
                if len(ref) == len(ys) and all(
                    a == b
                    or (math.isnan(a) and math.isnan(b))
                    or abs(a - b) <= _SAME_CURVE * max(abs(a), abs(b))
                    for a, b in zip(ref, ys, strict=True)
                ):
                    members.append(t["policy"])
                    break
            else:
                groups.append((ys, [t["policy"]]))
        per_engine[engine] = [m for _, m in groups if len(m) > 1]
    texts: dict[str, list[str]] = {}
    for engine, groups in per_engine.items():
        for g in groups:
            texts.setdefault(" = ".join(g), []).append(engine)
    return "; ".join(
        text if len(engines) == len(per_engine) else f"{text} ({', '.join(engines)})"
        for text, engines in texts.items()
    )


def _marked(xs: list[float], spacing: float) -> list[int]:
    """Indices of the points that get a marker: none closer than ``spacing`` in x to the
    previous marked one (log-spaced checkpoints crowd the left of a linear axis)."""
    out: list[int] = []
    for i, x in enumerate(xs):
        if not out or x - xs[out[-1]] >= spacing:
            out.append(i)
    return out


def _plot_track(ax: Any, t: dict[str, Any], key: str) -> None:
    """One track's ``key`` vs updates in its policy's style: colour, width, marker; the
    reference engine solid with hollow markers, the layer dashed with small ones; a failed
    checkpoint's marker filled."""
    policy, layer = t["policy"], t["engine"] == "layer"
    color = _POLICY_COLORS.get(policy, "k")
    scale = 0.55 if layer else 1.0
    pts = [
        (float(cp["updates"]), num(cp[key]), not cp["passed"])
        for cp in t["checkpoints"]
        if math.isfinite(num(cp[key])) and num(cp[key]) > 0
    ]
    if not pts:
        return
    xs, ys, bad = (list(v) for v in zip(*pts, strict=True))
    marks = _marked(xs, (xs[-1] - xs[0]) / 40 if len(xs) > 1 else 1.0)
    style = {
        "color": color,
        "marker": _POLICY_MARKERS.get(policy, "o"),
        "ms": _POLICY_MARKER_SIZES.get(policy, 5.0) * scale,
        "mew": 1.2 * scale,
        "alpha": 0.9,
    }
    ax.plot(
        xs,
        ys,
        _ENGINE_STYLES.get(t["engine"], "-"),
        lw=_POLICY_WIDTHS.get(policy, 1.2) * scale,
        mfc="none",
        markevery=[i for i in marks if not bad[i]],
        label=f"{policy} ({t['engine']})",
        **style,
    )
    failed = [i for i in marks if bad[i]]
    if failed:
        ax.plot([xs[i] for i in failed], [ys[i] for i in failed], ls="none", **style)


def drift_figure(data: dict[str, Any]) -> bytes | None:
    """The headline figure: inverse ratio vs updates per regime × dtype."""
    return _grid(data, "inverse_ratio_exact", "inverse ratio (exact path)")


def logdet_figure(data: dict[str, Any]) -> bytes | None:
    """log|det| ratio vs updates per regime × dtype."""
    return _grid(data, "logdet_ratio_exact", "log|det| ratio (exact path)")


def policies_figure(data: dict[str, Any]) -> bytes | None:
    """Worst margin and time per update per policy, regime and dtype."""
    configs = [c for c in _configs(data) if c["settings"]["regime"] != "replay"]
    if not configs:
        return None
    n = _largest_n(configs)
    configs = [c for c in configs if c["settings"]["n"] == n]
    dtypes = _ordered((c["settings"]["dtype"] for c in configs), ("float64", "float32", "bfloat16"))
    regimes = _ordered((c["settings"]["regime"] for c in configs), ("walk", "approach", "crossing"))
    policies = _ordered(
        (t["policy"] for c in configs for t in c["tracks"]),
        ("plain", "guarded", "monitored", "refresh"),
    )
    fig, axes = _figure(2, len(dtypes))
    width = 0.8 / max(1, len(policies))
    for j, dt in enumerate(dtypes):
        top, bottom = axes[0][j], axes[1][j]
        for p_i, policy in enumerate(policies):
            margins, times, failed = [], [], []
            for regime in regimes:
                tracks = [
                    t
                    for c in configs
                    if c["settings"]["dtype"] == dt and c["settings"]["regime"] == regime
                    for t in c["tracks"]
                    if t["policy"] == policy
                ]
                ref = [t for t in tracks if t["engine"] == "reference"] or tracks
                m = num(ref[0]["summary"]["worst_margin"]) if ref else math.nan
                margins.append(m if math.isfinite(m) else 1e12)
                failed.append(bool(ref) and not ref[0]["summary"]["passed"])
                times.append(
                    1e6 * num(ref[0]["summary"]["seconds_per_update"]) if ref else math.nan
                )
            xs = [r + (p_i - (len(policies) - 1) / 2) * width for r in range(len(regimes))]
            color = _POLICY_COLORS.get(policy, "k")
            bars = top.bar(xs, margins, width, color=color, label=policy)
            for bar, bad in zip(bars, failed, strict=True):
                if bad:  # FAIL, possibly by a wrong sign that no ratio shows
                    bar.set_hatch("///")
                    bar.set_edgecolor("k")
            bottom.bar(xs, times, width, color=color, label=policy)
        top.axhline(1.0, color="k", lw=1.0, ls=":")
        top.set_yscale("log")
        top.set_title(f"{dt}, n={n}: worst ratio / allowance", fontsize=9)
        bottom.set_title(f"{dt}, n={n}: µs per proposed update", fontsize=9)
        for ax in (top, bottom):
            ax.set_xticks(range(len(regimes)), regimes)
            ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(policies), fontsize=8)
    return _png(fig)


def crossing_figure(data: dict[str, Any]) -> bytes | None:
    """Inverse ratio and sign around the sign change of the crossing regime."""
    configs = [
        c for c in _configs(data) if c["settings"]["regime"] == "crossing" and c.get("event")
    ]
    if not configs:
        return None
    n = _largest_n(configs)
    configs = [c for c in configs if c["settings"]["n"] == n]
    dtypes = _ordered((c["settings"]["dtype"] for c in configs), ("float64", "float32", "bfloat16"))
    fig, axes = _figure(1, len(dtypes), height=3.4)
    for j, dt in enumerate(dtypes):
        ax = axes[0][j]
        c = next(c for c in configs if c["settings"]["dtype"] == dt)
        event = c["event"]
        tracks = [t for t in c["tracks"] if t["engine"] == "reference"] or c["tracks"]
        for t in tracks:
            xs, ys, wrong = [], [], []
            for cp in t["checkpoints"]:
                y = num(cp["inverse_ratio_exact"])
                if math.isfinite(y) and y > 0:
                    xs.append(cp["updates"] - event)
                    ys.append(y)
                    if cp["sign_tracked"] != cp["sign_exact"]:
                        wrong.append((cp["updates"] - event, y))
            ax.plot(
                xs,
                ys,
                "-o",
                ms=2.5,
                color=_POLICY_COLORS.get(t["policy"], "k"),
                lw=_POLICY_WIDTHS.get(t["policy"], 1.2),
                label=t["policy"],
            )
            if wrong:
                ax.plot(*zip(*wrong, strict=True), "o", color="red", ms=6, mfc="none")
        kap = [
            (cp["updates"] - event, num(cp["kappa_exact"]))
            for cp in tracks[0]["checkpoints"]
            if math.isfinite(num(cp["kappa_exact"]))
        ]
        twin = ax.twinx()
        if kap:
            twin.plot(*zip(*kap, strict=True), color="0.6", lw=1.0)
        twin.set_yscale("log")
        twin.set_ylabel("κ₁ (exact path)", color="0.4")
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("log")
        ax.set_xlabel("updates − sign change")
        ax.set_ylabel("inverse ratio (exact path)")
        ax.set_title(f"crossing, {dt}, n={n} (sign change at update {event})", fontsize=9)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    return _png(fig)


def conditioning_figure(data: dict[str, Any]) -> bytes | None:
    """κ along each regime and the largest plain-SM inverse ratio per dimension."""
    configs = [c for c in _configs(data) if c["settings"]["regime"] != "replay"]
    if not configs:
        return None
    fig, axes = _figure(1, 2, height=3.4)
    left, right = axes[0]
    n = _largest_n(configs)
    for c in configs:
        s = c["settings"]
        if s["n"] != n or s["dtype"] != min(
            (d["settings"]["dtype"] for d in configs),
            key=lambda d: ("float64", "float32", "bfloat16").index(d),
        ):
            continue
        t = c["tracks"][0]
        xs, ys = _series(t, "kappa_exact")
        left.plot(
            xs,
            ys,
            "-",
            marker=_REGIME_MARKERS.get(s["regime"], "o"),
            ms=3,
            label=f"{s['regime']} (k={s['updates']})",
        )
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("updates")
    left.set_ylabel("κ₁ of the exact path")
    left.set_title(f"condition number along the path, n={n}", fontsize=9)
    left.legend(fontsize=8)
    left.grid(True, alpha=0.3)
    seen: set[tuple[str, str]] = set()
    for c in configs:
        s = c["settings"]
        plain = [
            t
            for t in c["tracks"]
            if t["policy"] == "plain" and t["engine"] in ("reference", "layer")
        ]
        if not plain:
            continue
        t = next((t for t in plain if t["engine"] == "reference"), plain[0])
        vals = [num(cp["inverse_ratio_exact"]) for cp in t["checkpoints"]]
        vals = [v for v in vals if math.isfinite(v)]
        if not vals:
            continue
        key = (s["dtype"], s["regime"])
        right.plot(
            [s["n"]],
            [max(vals)],
            _REGIME_MARKERS.get(s["regime"], "o"),
            color=_DTYPE_COLORS.get(s["dtype"], "k"),
            ms=7,
            label=f"{s['regime']}, {s['dtype']}" if key not in seen else None,
        )
        seen.add(key)
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("n")
    right.set_ylabel("largest inverse ratio, plain SM")
    right.set_title("growth with dimension", fontsize=9)
    right.legend(fontsize=7, ncol=2)
    right.grid(True, alpha=0.3)
    return _png(fig)


# Below this |value| the Hutchinson panel is linear: float64 drift of a fresh inverse is ~1e-15.
_LINTHRESH = 1e-12


def _symlog_ticks(top: float, linthresh: float) -> tuple[list[float], list[str]]:
    """Ticks 0 and ±10^e for exponents e from ``top`` down, spaced so labels never touch.

    On a symlog axis (linscale 1) 0 to ``linthresh`` spans one decade, so the axis spans
    about 2(e_top − log₁₀ linthresh) + 1 decades; labelled ticks are kept at least a sixth of
    that (and four decades) apart, also from 0: at most about seven labels of five characters
    over a panel's width.
    """
    low = math.floor(math.log10(linthresh))
    hi = max(math.ceil(math.log10(max(top, linthresh))), low + 4)
    gap = max(4, math.ceil((2 * (hi - low) + 1) / 6))
    exps = list(range(hi, low + gap - 2, -gap))
    ticks = [-(10.0**e) for e in exps] + [0.0] + [10.0**e for e in reversed(exps)]
    name = {e: f"1e{e}".replace("-", "−") for e in exps}
    labels = [f"−{name[e]}" for e in exps] + ["0"] + [name[e] for e in reversed(exps)]
    return ticks, labels


def estimators_figure(data: dict[str, Any]) -> bytes | None:
    """Probe and Hutchinson estimates against the directly computed drift."""
    points: dict[str, list[tuple[float, float, float, float]]] = {}
    for c in _configs(data):
        for t in c["tracks"]:
            if t["engine"] == "recorded":
                continue
            for cp in t["checkpoints"]:
                points.setdefault(c["settings"]["dtype"], []).append(
                    (
                        num(cp["true_residual"]),
                        num(cp["estimated_residual"]),
                        num(cp["true_logdet_drift"]),
                        num(cp["estimated_logdet_drift"]),
                    )
                )
    if not points:
        return None
    from matplotlib.ticker import NullLocator

    fig, axes = _figure(1, 2, height=3.6)
    left, right = axes[0]
    lo, hi = math.inf, -math.inf
    for dt, pts in points.items():
        res = [
            (a, b)
            for a, b, _, _ in pts
            if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)
        ]
        if res:
            left.plot(
                *zip(*res, strict=True),
                ".",
                ms=3,
                alpha=0.5,
                color=_DTYPE_COLORS.get(dt, "k"),
                label=dt,
            )
            lo = min(lo, *(min(p) for p in res))
            hi = max(hi, *(max(p) for p in res))
        ld = [(a, b) for _, _, a, b in pts if math.isfinite(a) and math.isfinite(b)]
        if ld:
            right.plot(
                *zip(*ld, strict=True),
                ".",
                ms=3,
                alpha=0.5,
                color=_DTYPE_COLORS.get(dt, "k"),
                label=dt,
            )
    if math.isfinite(lo):
        line = [lo, hi]
        left.plot(line, line, "k-", lw=0.8)
        left.plot(line, [x * 10 for x in line], "k--", lw=0.6)
        left.plot(line, [x / 10 for x in line], "k--", lw=0.6)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("‖XA − I‖_F (computed in full)")
    left.set_ylabel("probe estimate (4 probes)")
    left.legend(fontsize=8)
    left.grid(True, alpha=0.3)
    span = [
        abs(v) for pts in points.values() for _, _, a, b in pts for v in (a, b) if math.isfinite(v)
    ]
    top = max(span, default=1.0)
    ticks, labels = _symlog_ticks(top, _LINTHRESH)
    right.set_xscale("symlog", linthresh=_LINTHRESH)
    right.set_yscale("symlog", linthresh=_LINTHRESH)
    for axis in (right.xaxis, right.yaxis):
        axis.set_ticks(ticks, labels)
        axis.set_minor_locator(NullLocator())
    right.set_xlabel("log|det(XA)| (float64 slogdet)")
    right.set_ylabel("Hutchinson tr(XA − I)")
    if span:
        right.plot([-top, top], [-top, top], "k-", lw=0.8)
    right.legend(fontsize=8)
    right.grid(True, alpha=0.3)
    return _png(fig)


def replay_figure(data: dict[str, Any]) -> bytes | None:
    """Recorded log|det| and re-tracked inverse against the oracle, per recorded layer."""
    configs = [c for c in _configs(data) if c["settings"]["regime"] == "replay"]
    if not configs:
        return None
    fig, axes = _figure(1, len(configs), height=3.4)
    for j, c in enumerate(configs):
        ax = axes[0][j]
        for t in c["tracks"]:
            key = "logdet_ratio_exact" if t["engine"] == "recorded" else "inverse_ratio_exact"
            xs, ys = _series(t, key)
            label = (
                "recorded log|det| ratio"
                if t["engine"] == "recorded"
                else f"re-tracked inverse ratio ({t['policy']})"
            )
            ax.plot(xs, ys, "-o", ms=2.5, label=label, color=_POLICY_COLORS.get(t["policy"], "k"))
        ks = [1.0, float(max(1, c["settings"]["updates"]))]
        ax.plot(ks, [30.0 * (1 + k) for k in ks], ":", color="k", lw=1.0, label="allowance")
        twin = ax.twinx()
        xs, ys = _series(c["tracks"][0], "kappa_exact")
        twin.plot(xs, ys, color="0.6", lw=1.0)
        twin.set_yscale("log")
        twin.set_ylabel("κ₁", color="0.4")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("merges")
        ax.set_title(
            f"layer {c['settings']['label']} (n={c['settings']['n']}, {c['settings']['dtype']})",
            fontsize=9,
        )
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
    return _png(fig)


_BUILDERS: dict[str, Callable[[dict[str, Any]], bytes | None]] = {
    "drift.png": drift_figure,
    "logdet.png": logdet_figure,
    "policies.png": policies_figure,
    "crossing.png": crossing_figure,
    "conditioning.png": conditioning_figure,
    "estimators.png": estimators_figure,
    "replay.png": replay_figure,
}


def render_figures(data: dict[str, Any]) -> dict[str, bytes]:
    """Every figure that applies to ``data``: ``{file name: PNG bytes}`` in report order.

    Needs matplotlib (the ``report`` extra); ImportError with the install hint when missing.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError("report figures need matplotlib: pip install 'invlin[report]'") from exc
    out = {}
    for name, build in _BUILDERS.items():
        png = build(data)
        if png is not None:
            out[name] = png
    return out
