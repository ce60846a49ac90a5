"""``python -m benchmarks run | report | compare | parity | pipeline``: TF1 graphs vs Keras, measured honestly."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from benchmarks.analyse.run_time import run_time, run_time_line
from benchmarks.analyse.stats import tost_decision
from benchmarks.analyse.summary import load_results
from benchmarks.analyse.verdict import answer, not_measured, verdict_map
from benchmarks.config import ACCOUNT_SAMPLES, MAX_REPEATS, MODELS, shape_text
from benchmarks.measure import runner, shard_rates
from benchmarks.modes import MODE_NAMES
from benchmarks.parity.experiment import (
    ParityConfig,
    run_parity,
    write_parity_report,
)
from benchmarks.present.compare import compare
from benchmarks.present.markdown import machine_text
from benchmarks.present.report import write_report
from benchmarks.present.verdict import accounting_text, control_lines, ratio_text
from benchmarks.presets import PRESETS, preset, with_overrides
from data_pipeline.shards import load_manifest
from model_contract.precisions import PRECISIONS
from plumbing.atomic import write_json
from plumbing.errors import (
    ArgumentParser,
    UserError,
    main_with_errors,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from plumbing.processes import default_jobs


def _select(configs: list, field: str, wanted: list[str] | None, allowed: Sequence[str]) -> list:
    if not wanted:
        return configs
    unknown = sorted(set(wanted) - set(allowed))
    if unknown:
        raise UserError(f"unknown {field} {', '.join(unknown)}: expected one of {', '.join(allowed)}")
    return [c for c in configs if getattr(c, field) in wanted]


def _budget_s(args) -> float | None:
    """The time budget for extra repeats: --budget-min, else the preset's unless --repeats
    fixes the count."""
    if args.budget_min is not None:
        return args.budget_min * 60 or None
    return None if args.repeats else PRESETS[args.preset].budget_s


def _check_pipeline_inputs(configs: list, manifest: str | None, image_size: int | None) -> None:
    """Refuses, before any model is built, configurations that would read `manifest`'s shards
    into a model of another input shape (they would fail at their first batch, one by one)."""
    if not manifest:
        return
    shape = tuple(load_manifest(manifest)["image_shape"])
    wrong = sorted({c.input_shape() for c in configs if c.data_spec.shards and c.input_shape() != shape})
    if not wrong:
        return
    takes, holds = shape_text(wrong[0]), shape_text(shape)
    if image_size:
        raise UserError(f"--image-size: {image_size} px, but the shards of --manifest, which the pipeline "
                        f"configurations read, hold {holds} images")
    raise UserError(f"{manifest}: the shards hold {holds} images, but the preset's pipeline configurations "
                    f"take {takes} (build shards with --size {wrong[0][0]}, or give --image-size {shape[0]})")


def cmd_run(args) -> None:
    configs, repeats = preset(args.preset, args.manifest)
    configs = _select(_select(configs, "mode", args.modes, MODE_NAMES), "model", args.models, MODELS)
    configs = with_overrides(configs, steps=args.steps, warmup=args.warmup, image_size=args.image_size,
                             precision=args.precision, xla={"on": True, "off": False}.get(args.xla))
    configs = list(dict.fromkeys(configs))  # overrides can make configurations identical
    for flag, field in (("batches", "batch"), ("devices", "devices"), ("workers", "workers")):
        wanted = getattr(args, flag)
        if wanted:
            configs = [c for c in configs if getattr(c, field) in wanted]
    if not configs:
        raise UserError("no configuration left after --modes/--models/--batches/--devices/--workers")
    _check_pipeline_inputs(configs, args.manifest, args.image_size)
    out = Path(args.out)
    budget_s = _budget_s(args)
    extra = f", more for imprecise ratios within {budget_s / 60:.0f} min" if budget_s else ""
    print(f"{len(configs)} configurations x {args.repeats or repeats} repeats{extra} -> {out}, "
          f"on {machine_text(runner.machine_info())}")
    results = runner.run(configs, args.repeats or repeats, out / "results.json", preset=args.preset,
                  manifest=args.manifest, budget_s=budget_s, max_repeats=args.max_repeats,
                  account=args.profile_samples)
    report = write_report(results, out)
    rows = verdict_map(results["summary"], results["repeats"])
    print("verdict map (TF1-style side / Keras side, 95% interval over repeats):")
    for row in rows:
        print(f"  {row['regime']}: {row['scenario']}: {ratio_text(row)} ({row['timed']}) -> 2.5x {row['claim']}")
        if row["accounting"]:
            print(f"    parts, ms per profiled step ({row['fast']} / {row['slow']}): "
                  f"{accounting_text(row['accounting'])}")
    print(answer(rows))
    missing = not_measured(results["summary"])
    if missing:
        print(f"not measured in this run ({len(missing)} scenario{'s' * (len(missing) != 1)} of the map):")
        for label in missing:
            print(f"  {label}")
    for line in control_lines(results["summary"]["controls"]):
        print(line)
    timing = run_time(results)
    if timing is not None:
        print(run_time_line(timing))
    print(f"report: {report}")
    for refused in results["summary"]["refused"]:
        raise UserError(f"comparison refused for {refused['group']}: {refused['reason']}")


def cmd_report(args) -> None:
    results = load_results(args.results)
    print(f"report: {write_report(results, args.out or Path(args.results).parent)}")


def cmd_parity(args) -> None:
    config = ParityConfig(**{k: v for k, v in vars(args).items() if k not in ("command", "func")})
    record = run_parity(config)
    print(f"parity: {write_parity_report(record, config.out)}")
    for key, gap in record["same_start"]["gaps"].items():
        print(f"same start: {key} gap {gap['max_gap']:.3g} (tolerance {gap['tolerance']:.3g})")
    for metric, result in record["seeds"]["tost"].items():
        print(f"{config.seeds} seeds: final {metric} keras - graph {result['difference']:+.4f} "
              f"[{result['lo']:+.4f}, {result['hi']:+.4f}], margin +-{result['margin']:g}: "
              f"{tost_decision(result)}")
    results = Path(config.out) / "results.json"
    if results.exists():  # the benchmark report beside it gains the parity section
        print(f"report: {write_report(load_results(results), config.out)}")


def cmd_pipeline(args) -> None:
    results = shard_rates.run(args.work_dir, args.wells, args.workers, args.repeats)
    shard_rates.print_rates(results)
    print(f"on {machine_text(results['machine'])}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, results)


def cmd_compare(args) -> None:
    print(compare(args.a, args.b))


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="measure a preset's configurations and write the report")
    p.add_argument("--preset", default="quick",
                   help=", ".join(f"{p.name} ({p.help})" for p in PRESETS.values()))
    p.add_argument("--out", default="reports/latest")
    p.add_argument("--manifest", help="image shards: their tf.data rate is measured beside every model of the same "
                   "image size "
                   "(and read by the full/gpu presets' pipeline configurations)")
    p.add_argument("--modes", nargs="+", help=f"only these modes ({', '.join(MODE_NAMES)})")
    p.add_argument("--models", nargs="+", help=f"only these models ({', '.join(MODELS)})")
    p.add_argument("--batches", nargs="+", type=positive_int, help="only these batch sizes")
    p.add_argument("--devices", nargs="+", type=positive_int,
                   help="only configurations on these numbers of local devices "
                        "(e.g. 1 2 4 of the gpu preset's 1/2/4/8)")
    p.add_argument("--workers", nargs="+", type=positive_int,
                   help="only configurations on these numbers of localhost worker processes")
    p.add_argument("--steps", type=positive_int, help="timed steps per configuration (preset's by default; "
                   "rounded up to whole epochs where a configuration times its epochs whole)")
    p.add_argument("--warmup", type=non_negative_int, help="warm-up steps, excluded from the timing (rounded up "
                   "as --steps is)")
    p.add_argument("--repeats", type=positive_int, help="interleaved repeats (preset's by default)")
    p.add_argument("--budget-min", type=non_negative_float,
                   help="after the repeats, repeat graph/Keras-fit pairs whose interval is wider than +-10%% while "
                        "the whole run stays within this many minutes (quick: 9; 0: off; off when --repeats is given)")
    p.add_argument("--max-repeats", type=positive_int, default=MAX_REPEATS, help="at most this many repeats of a pair")
    p.add_argument("--profile-samples", type=non_negative_int, default=ACCOUNT_SAMPLES,
                   help="at most this many samples each verdict row's side profiles after its timed ones, in the "
                        "first repeat, to account for its time (a quarter of its timed ones, at least 2; a whole "
                        "pass where costs come per pass; 0: none)")
    p.add_argument("--image-size", type=positive_int, help="image size for image models (preset's by default)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), help="every configuration in this precision")
    p.add_argument("--xla", choices=("on", "off"), help="XLA on or off for every configuration")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("report", help="rewrite the report of a results.json")
    p.add_argument("results")
    p.add_argument("--out", help="directory (default: the results file's)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("parity", help="do both APIs train to the same results? (same start, N seeds, TOST)")
    p.add_argument("--manifest", required=True, help="shards the model trains on (feature shards for vgg16_head)")
    p.add_argument("--out", default="reports/latest", help="parity.json/.md/.png go here (and into report.md)")
    p.add_argument("--model", choices=MODELS, default="vgg16_head")
    p.add_argument("--seeds", type=positive_int, default=5, help="independent runs per API (>= 2)")
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--learning-rate", type=non_negative_float, default=1e-4)
    p.add_argument("--optimizer", choices=("rmsprop", "sgd", "adam"), default="rmsprop")
    p.add_argument("--weights", default="none", help="the VGG16 base of vgg16_transfer (as train's --weights)")
    p.add_argument("--tolerance", type=non_negative_float, default=0.02,
                   help="same start: losses within this x ln(classes), accuracies within max(this, 2 samples)")
    p.add_argument("--margin-accuracy", type=non_negative_float, default=0.05,
                   help="seeds: equivalence margin of the mean final val accuracy")
    p.add_argument("--margin-loss", type=non_negative_float, default=0.10,
                   help="seeds: equivalence margin of the mean final val loss (nats)")
    p.add_argument("--jobs", type=positive_int, default=default_jobs(),
                   help="trainings at a time (default: one per core, at most 2; they are not timed)")
    p.set_defaults(func=cmd_parity)
    p = sub.add_parser("compare", help="two results files side by side")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("pipeline", help="shard build rate and tf.data read rate on a synthetic RxRx1")
    p.add_argument("--work-dir", type=Path, default=Path("data/pipeline-bench"),
                   help="where the synthetic RxRx1 (kept, reused) and the shards built from it go")
    p.add_argument("--wells", type=positive_int, default=120, help="wells per plate (2 plates, 2 sites each)")
    p.add_argument("--workers", type=positive_int, default=2, help="processes building the shards")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="full builds timed (the read rate takes at least 5 repeats)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.set_defaults(func=cmd_pipeline)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return main_with_errors(build_parser(), argv, lambda args: args.func(args),
                                      interrupted="results so far are in the results JSON")
