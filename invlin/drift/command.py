"""``invlin report``: the drift check of Sherman–Morrison tracking against the oracle."""

from __future__ import annotations

import argparse
import time

__all__ = ["register"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand to the ``invlin`` parser."""
    rep = sub.add_parser(
        "report",
        help="drift of Sherman–Morrison tracking against the exact-arithmetic oracle",
        description="Track a random rank-one walk from the identity and print, at log-spaced "
        "checkpoints, the LAPACK inverse ratio, the log|det| error and the sign against the "
        "oracle, with the allowance of the tolerance engine.",
    )
    rep.add_argument("--n", type=_positive_int, default=32, help="dimension (default 32)")
    rep.add_argument("--updates", type=_positive_int, default=1000,
                     help="number of rank-one updates (default 1000)")
    rep.add_argument("--dtypes", nargs="+", default=["float64", "float32"],
                     choices=["float64", "float32"], help="dtypes of the tracked state")
    rep.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    rep.add_argument("--backend", default="auto", choices=["auto", "mpmath", "flint"],
                     help="oracle backend (default: flint when installed)")
    rep.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from invlin.drift.quick import quick_drift

    start = time.perf_counter()
    rows = quick_drift(args.n, args.updates, args.dtypes, seed=args.seed, backend=args.backend)
    head = (f"{'dtype':<8} {'updates':>7} {'kappa':>9} {'inv ratio':>10} {'est ratio':>10} "
            f"{'|dlogdet|':>10} {'ld ratio':>9} {'sign':>5} {'allowed':>8} {'':>4}")
    print(f"invlin drift check: n={args.n}, A0 = I, u ~ N(0, 0.05²/n), v ~ N(0, 1), "
          f"seed={args.seed}, oracle={rows[0].backend} ({max(r.oracle_bits for r in rows)} bits)")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.dtype:<8} {r.updates:>7} {r.kappa:>9.3g} {r.inverse_ratio:>10.3g} "
              f"{r.estimated_ratio:>10.3g} {r.logdet_error:>10.2e} {r.logdet_ratio:>9.3g} "
              f"{'ok' if r.sign_ok else 'WRONG':>5} {r.allowed:>8.3g} "
              f"{'pass' if r.passed else 'FAIL':>4}")
    failed = sum(not r.passed for r in rows)
    print(f"{len(rows) - failed} passed, {failed} failed "
          f"({time.perf_counter() - start:.1f} s; ratios are LAPACK-style, allowed = 30·(1+k))")
    return 1 if failed else 0
