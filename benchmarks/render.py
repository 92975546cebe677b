"""Markdown rendering of a benchmark result (the JSON that ``benchmarks.run`` writes)."""

from __future__ import annotations

from typing import Any

__all__ = ["TITLES", "render"]

TITLES: dict[str, str] = {
    "p4_forward": "P4InvLinear forward ÷ nn.Linear forward",
    "p4_inverse": "P4InvLinear inverse ÷ nn.Linear forward",
    "p4_forward_fresh": "P4InvLinear forward with u changed before every call ÷ nn.Linear "
    "forward (nothing reused: the once-per-update cost of training)",
    "p4_inverse_fresh": "P4InvLinear inverse with u changed before every call ÷ nn.Linear "
    "forward (nothing reused)",
    "p4_forward_cached": "P4InvLinear forward inside invlin.nn.cached_products() ÷ nn.Linear "
    "forward (opt-in: products kept on every device, checked by version "
    "counters only)",
    "p4_inverse_cached": "P4InvLinear inverse inside invlin.nn.cached_products() ÷ nn.Linear "
    "forward (opt-in, as above)",
    "p4_inverse_vs_solve": "P4InvLinear inverse ÷ torch.linalg.solve (same matrix, same batch)",
    "p4_inverse_vs_triangular": "P4InvLinear inverse ÷ triangular solves (lu_solve with "
    "precomputed LU factors of the same matrix)",
    "merge_vs_inv": "P4InvLinear.merge ÷ torch.linalg.inv (float64 state)",
    "lu_forward": "LULinear forward ÷ nn.Linear forward",
    "lu_inverse": "LULinear inverse ÷ nn.Linear forward",
    "leaky_softplus_inverse": "LeakySoftplus inverse ÷ LeakySoftplus forward",
    "training_step": "Training step: P4Inv flow ÷ the same flow with nn.Linear layers",
    "training_step_compiled": "Training step with each flow's loss and backward compiled "
    "(torch.compile): P4Inv ÷ nn.Linear",
    "training_step_compiled_vs_eager": "Training step of the P4Inv flow: compiled ÷ eager",
    "monitor_training_step": "Training step of the P4Inv flow: default drift monitor "
    "(a probe every 8 merges) ÷ monitor off",
    "oracle_flint_vs_mpmath": "Oracle: flint ÷ mpmath (evaluate, same matrix)",
    "validate_vs_import_torch": "invlin validate on one 6-feature LULinear (ci profile, "
    "float64 and float32, every check) ÷ python -c 'import torch', "
    "both as fresh processes",
}


def _key(r: dict[str, Any]) -> tuple:
    return (r.get("case"), r.get("n"), r.get("dtype"), r.get("mode"))


def _goal(r: dict[str, Any]) -> str:
    if r.get("goal") is None:
        return "—"
    return f"≤ {r['goal']:g} {'met' if r['met'] else '**missed**'}"


def _ratio_table(rows: list[dict[str, Any]], before: dict[tuple, dict[str, Any]]) -> list[str]:
    has_mode = any("mode" in r for r in rows)
    has_before = any(_key(r) in before for r in rows)
    head = ["n", "dtype"] + (["mode"] if has_mode else []) + ["ratio", "quartiles"]
    head += (["before"] if has_before else []) + ["ms", "anchor ms", "goal"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["n"]), r["dtype"]] + ([r.get("mode", "")] if has_mode else [])
        cells += [f"{r['ratio']:.3g}", f"{r['q1']:.3g}–{r['q3']:.3g}"]
        if has_before:
            b = before.get(_key(r))
            cells.append(f"{b['ratio']:.3g}" if b else "—")
        cells += [f"{r['num_ms']:.4g}", f"{r['den_ms']:.4g}", _goal(r)]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _ops_table(rows: list[dict[str, Any]]) -> list[str]:
    """Operation counts: one column per (form, n) — one per form where every n gives the same
    counts — and one row per item."""
    if not rows:
        return []
    items = list(dict.fromkeys(r["item"] for r in rows))
    cell = {(r["item"], r["form"], r["n"]): r for r in rows}
    cols: list[tuple[str, list[int]]] = []
    for form in dict.fromkeys(r["form"] for r in rows):
        ns = list(dict.fromkeys(r["n"] for r in rows if r["form"] == form))
        same = all(
            _count(cell.get((i, form, n))) == _count(cell.get((i, form, ns[0])))
            for i in items
            for n in ns
        )
        cols += [(form, ns)] if same else [(form, [n]) for n in ns]
    out = [
        "",
        "## Tensor operations per call (counted, not timed)",
        "",
        "ATen operations one call dispatches, autograd on: kernels (each a kernel launch on a "
        "GPU) + host reads (values copied to the host: `item`, `tolist`, ...; each a device "
        "wait on a GPU, except Adam's reads of its step counters, which torch keeps on the "
        "CPU on every device); views and bare allocations are not counted. `host`: "
        "P4InvLinear as it runs on the CPU (host-float scalars, product cache); `device`: as "
        "it runs off the CPU (0-dim tensor scalars, products kept only inside "
        "`cached_products()`) and Adam in its multi-tensor (foreach) form, as on a GPU, "
        "forced on this machine — its counts are a GPU's launches. Training steps merge "
        "every step (the scheduler reads all layers' decisions in one gathered read). The "
        "in-place change of u in the 'u changed' rows is not counted.",
        "",
        "| call | " + " | ".join(f"{f}, n = {_sizes(ns)}" for f, ns in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for item in items:
        cells = [_count(cell.get((item, f, ns[0]))) for f, ns in cols]
        out.append(f"| {item} | " + " | ".join(cells) + " |")
    return out


def _count(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    reads = r["reads"]
    return f"{r['kernels']}" + (f" + {reads} read{'s' if reads > 1 else ''}" if reads else "")


def _sizes(ns: list[int]) -> str:
    return str(ns[0]) if len(ns) == 1 else ", ".join(str(n) for n in ns)


def _code(env: dict[str, Any]) -> str:
    """'invlin <commit>' (with '+ changes' when its files differ from the commit), or ''."""
    code = env.get("invlin") or {}
    if not code.get("commit"):
        return ""
    return f"invlin {code['commit']}" + (" + uncommitted changes" if code.get("dirty") else "")


def render(result: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    """The Markdown page for one run; ``baseline`` (an earlier run's JSON) adds a "before"
    column matched by case, n, dtype and mode."""
    env, settings = result["environment"], result["settings"]
    before = {_key(r): r for r in (baseline or {}).get("rows", []) if "ratio" in r}
    code = _code(env)
    lines = [
        f"# invlin benchmarks on {result['machine']}",
        "",
        f"{env['device_name']} · torch {env['torch']} · Python {env['python']} · "
        f"{env['threads']} torch thread(s) · {result['date']}" + (f" · {code}" if code else ""),
        "",
        f"Ratios are medians of {settings['repeats']} interleaved samples measured side by "
        f"side in one process after warm-up (quartiles of the per-sample ratios shown); "
        f"batch {settings['batch']}. Layers run in training mode with a live perturbation "
        "(u ≠ 0, bias ≠ 0); `mode` says whether autograd was recording.",
    ]
    if settings.get("note"):
        lines += ["", settings["note"]]
    if baseline is not None:
        code_before = _code(baseline.get("environment", {}))
        lines += [
            "",
            f"Column `before`: {baseline.get('label') or 'baseline'} "
            f"({baseline['machine']}, {baseline['date']}"
            + (f", {code_before}" if code_before else "")
            + ").",
        ]
    goals = [r for r in result["rows"] if r.get("goal") is not None]
    if goals:
        lines += [
            "",
            "## Goals",
            "",
            "| item | n | dtype | value | goal |",
            "|---|---|---|---|---|",
        ]
        for r in goals:
            value = f"{r['ratio']:.3g}" if "ratio" in r else f"{r['seconds']:.1f} s"
            title = TITLES.get(r["case"], r["case"]) + (f" ({r['mode']})" if "mode" in r else "")
            lines.append(
                f"| {title} | {r.get('n', '—')} | {r.get('dtype', '—')} | {value} | {_goal(r)} |"
            )
    for case, title in TITLES.items():
        rows = [r for r in result["rows"] if r.get("case") == case and "ratio" in r]
        skipped = [r for r in result["rows"] if r.get("case") == case and "skipped" in r]
        if not rows and not skipped:
            continue
        lines += ["", f"## {title}", ""]
        lines += _ratio_table(rows, before) if rows else [f"Skipped: {skipped[0]['skipped']}."]
        if case == "training_step_compiled" and rows:
            c = settings.get("compile") or {}
            lines += [
                "",
                f"`torch.compile(nll, fullgraph=True, backend={c.get('backend')!r}"
                + (f", mode={c['mode']!r}" if c.get("mode") else "")
                + ")` on each "
                "flow's loss (forward, NLL, penalty; its backward compiled with it); "
                "Adam and the scheduler's merges run eagerly. Compilation happens "
                "before the timed warm-up.",
            ]
        if case == "merge_vs_inv" and result.get("merge_growth_exponent") is not None:
            big = [str(r["n"]) for r in rows if r["n"] >= 512]
            lines += [
                "",
                f"Merge time grows as n^{result['merge_growth_exponent']:.2f} over "
                f"n = {', '.join(big)} (least squares on log–log; O(n²) expected, "
                "torch.linalg.inv is O(n³)).",
            ]
    lines += _ops_table([r for r in result["rows"] if r.get("case") == "ops_per_call"])
    acc = result.get("accuracy", [])
    if acc:
        lines += [
            "",
            "## LeakySoftplus inverse accuracy (ulp of the dtype)",
            "",
            "Against the float64 NumPy reference; the worst points re-checked by an "
            "mpmath bisection.",
            "",
            "| dtype | device | points | max | 99.9 % | mean | worst by mpmath |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in acc:
            lines.append(
                f"| {a['dtype']} | {a['device']} | {a['points']} | {a['max_ulp']:.2f} "
                f"| {a['p999_ulp']:.2f} | {a['mean_ulp']:.3f} | "
                f"{a['worst_mpmath_ulp']:.2f} |"
            )
    rep = [r for r in result["rows"] if r.get("case") == "report_wall_time"]
    for r in rep:
        lines += [
            "",
            "## Default drift report",
            "",
            f"`{r['command']}`: {r['seconds']:.1f} s wall (exit status {r['returncode']}; "
            f"goal {_goal(r)}).",
        ]
        if r.get("description"):
            lines += ["", f"What it ran: {r['description']}"]
    return "\n".join(lines) + "\n"
