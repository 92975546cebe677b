"""``invlin train toy2d|digits``: the seeds' experiments, one command each."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invlin.cli import SUMMARIES, positive_int

if TYPE_CHECKING:
    from invlin.outputs import Output

__all__ = ["register"]


class _Progress:
    """A one-line progress display on stderr (updates at most every 0.2 s)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.last, self.label = total, enabled, 0.0, ""

    def __call__(self, label: str, step: int, loss: float) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.2 and step + 1 < self.total):
            return
        self.last = now
        width = 30
        done = int(width * (step + 1) / self.total)
        sys.stderr.write(
            f"\r{label:<48} [{'#' * done}{'.' * (width - done)}] "
            f"{step + 1}/{self.total} loss {loss:8.4f}"
        )
        if step + 1 == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _merge_period(text: str) -> tuple[str | None, int]:
    from invlin.experiments.models import MERGE_EVERY

    model, _, value = text.rpartition("=")
    if model and model not in MERGE_EVERY:
        raise argparse.ArgumentTypeError(
            f"MODEL must be one of {tuple(MERGE_EVERY)}, got {model!r}"
        )
    return model or None, positive_int(value)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand (``toy2d`` and ``digits``) to the ``invlin`` parser."""
    # Plain data modules: torch is imported only when an experiment runs.
    from invlin.experiments.datasets import TOY_DENSITIES
    from invlin.experiments.models import MERGE_EVERY, MODELS

    train = sub.add_parser("train", help=SUMMARIES["train"])
    which = train.add_subparsers(dest="experiment", required=True)
    toy = which.add_parser("toy2d", help="P4Inv flows on 2-D toy densities vs affine coupling")
    toy.add_argument("--densities", nargs="+", default=list(TOY_DENSITIES), choices=TOY_DENSITIES)
    toy.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=list(MODELS),
        help="models to train (all): " + "; ".join(f"{k}: {v}" for k, v in MODELS.items()),
    )
    toy.add_argument("--steps", type=positive_int, default=2000, help="training steps (2000)")
    toy.add_argument(
        "--blocks",
        type=positive_int,
        default=16,
        help="P4Inv + bent identity blocks of p4_bent (16)",
    )
    toy.add_argument(
        "--couplings",
        type=positive_int,
        default=8,
        help="coupling layers of realnvp and realnvp_p4 (8)",
    )
    toy.add_argument(
        "--hidden",
        type=positive_int,
        default=24,
        help="hidden width of realnvp and realnvp_p4 (24)",
    )
    toy.add_argument(
        "--merge-every",
        nargs="+",
        type=_merge_period,
        default=[],
        metavar="[MODEL=]N",
        help="P4 merge period: N for all P4 models, or MODEL=N pairs (default: "
        + " ".join(f"{k}={v}" for k, v in MERGE_EVERY.items())
        + ")",
    )
    toy.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (5e-3)")
    toy.add_argument("--batch", type=positive_int, default=512, help="batch size (512)")
    dig = which.add_parser("digits", help="LU-Net on 8×8 digits vs affine coupling")
    dig.add_argument("--steps", type=positive_int, default=6000, help="training steps (6000)")
    dig.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (1e-2)")
    dig.add_argument("--batch", type=positive_int, default=256, help="batch size (256)")
    dig.add_argument("--blocks", type=positive_int, default=4, help="LU layers (4)")
    for p in (toy, dig):
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
        p.add_argument(
            "--out",
            type=Path,
            default=None,
            metavar="DIR",
            help="output folder (default: a new folder ./invlin-output/train-<experiment>-"
            "<date>-<time>); created if missing, replaced atomically if invlin wrote it (it "
            "holds a .invlin-output marker), refused if it holds anything else",
        )
        p.add_argument(
            "--threads",
            type=positive_int,
            default=1,
            help="torch CPU threads (1: these small models gain nothing from more, "
            "and lose much when other processes share the cores)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=_run)


def _periods(pairs: list[tuple[str | None, int]]) -> int | dict[str, int] | None:
    if len(pairs) == 1 and pairs[0][0] is None:
        return pairs[0][1]
    if any(model is None for model, _ in pairs):
        raise ValueError("--merge-every takes one N for all models, or MODEL=N pairs")
    return {model: n for model, n in pairs} or None


def _command_line(args: argparse.Namespace) -> str:
    """The command with every option's value spelled out (recorded in the output's marker)."""
    import shlex

    words = ["invlin", "train", args.experiment]
    for key, value in vars(args).items():
        if key in ("func", "command", "experiment", "out") or value is None or value is False:
            continue
        if isinstance(value, list) and not value:
            continue
        words.append("--" + key.replace("_", "-"))
        if key == "merge_every":
            words += [f"{m}={n}" if m else str(n) for m, n in value]
        elif isinstance(value, list):
            words += map(str, value)
        elif value is not True:
            words.append(str(value))
    if args.out is not None:
        words += ["--out", str(args.out)]
    return shlex.join(words)


def _run(args: argparse.Namespace) -> int:
    from invlin.outputs import OutputError, plan_output

    try:  # before any work (and before importing torch): a folder invlin must not write
        output = plan_output(
            args.out,
            kind=f"train-{args.experiment}",
            command=_command_line(args),
            owns=(args.experiment,),  # toy2d* or digits*: both may share one --out folder
        )
    except OutputError as exc:
        print(f"invlin train: {exc}", file=sys.stderr)
        return 2
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _train(args, output)
    finally:
        torch.set_num_threads(threads)


def _train(args: argparse.Namespace, output: Output) -> int:
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "invlin train: --device cuda requested but no CUDA device is available", file=sys.stderr
        )
        return 2
    from invlin.outputs import wrote_line

    settings: dict[str, Any] = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("func",)
    }
    settings["argv"] = " ".join(sys.argv[3:]) if len(sys.argv) > 3 else ""
    if args.experiment == "toy2d":
        from invlin.experiments.render import write_toy2d
        from invlin.experiments.toy2d import merge_periods, run_toy2d

        try:
            periods = merge_periods(_periods(args.merge_every))
        except ValueError as exc:
            print(f"invlin train: {exc}", file=sys.stderr)
            return 2
        settings["merge_every"] = periods
        results = run_toy2d(
            args.densities,
            models=args.models,
            steps=args.steps,
            blocks=args.blocks,
            couplings=args.couplings,
            hidden=args.hidden,
            seed=args.seed,
            merge_every=periods,
            lr=args.lr,
            batch=args.batch,
            device=args.device,
            progress=_Progress(args.steps, not args.quiet),
        )
        path = output.write(lambda folder: write_toy2d(results, folder, settings))
        print(
            f"{'density':<16} {'model':<17} {'params':>7} {'test NLL':>9} {'optimum':>8} "
            f"{'in region':>9}"
        )
        for r in results:
            print(
                f"{r.density:<16} {r.model:<17} {r.parameters:>7} {r.test_nll:>9.3f} "
                f"{r.optimum:>8.3f} {100 * r.region_fraction:>8.1f}%"
            )
        bad = [d for r in results for d in r.drift if not d.passed]
        for r in results:
            if r.drift:
                print(
                    f"{r.density} {r.model}: P4 counters {r.counters}; layers within the "
                    f"oracle bound: {sum(d.passed for d in r.drift)}/{len(r.drift)}"
                )
    else:
        from invlin.experiments.digits import run_digits
        from invlin.experiments.render import write_digits

        results = run_digits(
            steps=args.steps,
            blocks=args.blocks,
            lr=args.lr,
            batch=args.batch,
            seed=args.seed,
            device=args.device,
            progress=_Progress(args.steps, not args.quiet),
        )
        path = output.write(lambda folder: write_digits(results, folder, settings))
        print(
            f"{'model':<52} {'params':>7} {'test b/d':>9} {'train b/d':>9} "
            f"{'density ms':>11} {'sample ms':>10}"
        )
        for r in results:
            print(
                f"{r.model:<52} {r.parameters:>7} {r.test_bits_per_dim:>9.3f} "
                f"{r.train_bits_per_dim:>9.3f} {r.density_ms_per_image:>11.4f} "
                f"{r.sampling_ms_per_image:>10.4f}"
            )
        bad = []
    print(wrote_line(path))
    if bad:
        print(f"{len(bad)} P4 layers drifted beyond the oracle bound", file=sys.stderr)
        return 1
    return 0
