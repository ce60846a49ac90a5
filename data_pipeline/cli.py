"""``python -m data_pipeline synth | build | inspect | show | export-cell-h5 | import-cell-h5``.

Exit status: 0 on success, 2 on bad arguments or bad input (one line naming the culprit).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from data_pipeline.build import (
    BuildOptions,
    build_shards,
    plan_shards,
    select_sites,
)
from data_pipeline.cellh5 import export_cell_h5, import_cell_h5
from data_pipeline.constants import (
    CELL_TYPES,
    DEFAULT_IMAGE_SIZE,
    IMAGE_MODE_RGB,
    IMAGE_MODES,
)
from data_pipeline.images import load_site, sample_channels
from data_pipeline.layout import LAYOUT_KAGGLE, LAYOUT_WILDS, LAYOUTS, SiteKey, detect_layout, parse_id_code
from data_pipeline.plots import plot_site
from data_pipeline.shards import label_counts, load_manifest, verify_manifest
from data_pipeline.synthetic import SynthConfig, generate, plate_layout
from plumbing.errors import ArgumentParser, UserError, main_with_errors, non_negative_int, positive_int
from plumbing.progress import Progress

LAYOUTS_HELP = "Layouts read: " + "; ".join(f"{name} = {text}" for name, text in LAYOUTS.items())


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def cmd_synth(args) -> None:
    config = SynthConfig(num_classes=args.classes, cell_types=tuple(args.cell_types),
                         train_experiments=args.experiments, test_experiments=args.test_experiments,
                         plates=args.plates, wells_per_plate=args.wells, image_size=args.size,
                         signal=args.signal, seed=args.seed)
    config.validate()
    with Progress(2 * len(plate_layout(config)), "synth sites") as bar:
        layout = generate(config, args.out, progress=bar, release=args.layout)
    elapsed = bar.close()
    sites = 2 * len(layout)
    print(f"synthetic RxRx1 ({args.layout} layout): {sites} sites ({len(layout)} wells, {args.classes} "
          f"classes, {args.size}x{args.size}) in {args.out} [{sites / elapsed:.1f} sites/s]")


def cmd_build(args) -> None:
    layout = detect_layout(args.root)
    if layout == LAYOUT_WILDS and sample_channels(args.mode) != 3:
        raise UserError(f"--mode {args.mode}: the {layout} layout ships RGB composites only; "
                        f"use --mode {IMAGE_MODE_RGB}")
    sites, class_names = select_sites(
        args.root, cell_types=args.cell_types, experiments=args.experiments,
        include_controls=args.include_controls, include_test=args.include_test,
        val_fraction=args.val_fraction, val_experiments=args.val_experiments, seed=args.seed,
        official_split=args.official_split, layout=layout)
    jobs = plan_shards(sites, class_names, args.shard_size, args.seed)
    options = BuildOptions(root=args.root, out_dir=args.out, image_mode=args.mode, image_size=args.size,
                           shard_size=args.shard_size, workers=args.workers, skip_bad=args.skip_bad,
                           layout=layout,
                           source={"root": str(Path(args.root).resolve()), "layout": layout,
                                   "official_split": args.official_split,
                                   "cell_types": args.cell_types, "experiments": args.experiments,
                                   "include_controls": args.include_controls,
                                   "val_fraction": args.val_fraction,
                                   "val_experiments": args.val_experiments, "seed": args.seed})
    with Progress(len(sites), "build sites") as bar:
        manifest = build_shards(jobs, class_names, options, progress=bar)
    elapsed = bar.close()
    print(f"{len(manifest['shards'])} shards in {args.out} ({manifest['resumed_shards']} resumed), "
          f"splits {manifest['splits']}, {len(class_names)} classes, "
          f"{len(manifest['skipped'])} skipped sites [{len(sites) / elapsed:.1f} sites/s]")


def cmd_inspect(args) -> None:
    manifest = load_manifest(args.manifest)
    verify_manifest(manifest, check_sha=not args.no_sha)
    counts = label_counts(manifest)
    names = manifest["class_names"] + ["(unlabelled)"]
    print(f"{manifest['_path']}: {len(manifest['shards'])} shards verified, mode {manifest['image_mode']}, "
          f"shape {manifest['image_shape']} {manifest['dtype']}, {len(manifest['class_names'])} classes")
    for split, per_class in sorted(counts.items()):
        shown = ", ".join(f"{names[i]}={int(n)}" for i, n in enumerate(per_class) if n)
        print(f"  {split}: {int(per_class.sum())} samples: {shown}")
    if manifest.get("skipped"):
        print(f"  skipped at build: {len(manifest['skipped'])} sites, e.g. {manifest['skipped'][0]}")
    if args.json:
        print(json.dumps({s: {names[i]: int(n) for i, n in enumerate(c) if n} for s, c in counts.items()}))


def cmd_show(args) -> None:
    experiment, plate, well = parse_id_code(args.id_code)
    site = load_site(args.root, SiteKey(args.dataset, experiment, plate, well, args.site),
                     layout=detect_layout(args.root))
    out = plot_site(site, f"{args.id_code} site {args.site}", args.out)
    print(f"wrote {out}")


def cmd_export(args) -> None:
    counts = export_cell_h5(args.manifest, args.out)
    print(f"wrote {args.out}: {counts}")


def cmd_import(args) -> None:
    manifest = import_cell_h5(args.cell_h5, args.out, args.shard_size)
    print(f"wrote {len(manifest['shards'])} shards to {args.out}: {manifest['splits']}")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m data_pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic RxRx1 in the file layout of a release")
    p.add_argument("--out", required=True, help="data root to create")
    p.add_argument("--layout", choices=tuple(LAYOUTS), default=LAYOUT_KAGGLE, help=LAYOUTS_HELP)
    p.add_argument("--classes", type=positive_int, default=10)
    p.add_argument("--cell-types", type=_csv_list, default=["U2OS"], help=f"comma list of {CELL_TYPES}")
    p.add_argument("--experiments", type=positive_int, default=2, help="training experiments per cell type")
    p.add_argument("--test-experiments", type=non_negative_int, default=1)
    p.add_argument("--plates", type=positive_int, default=1)
    p.add_argument("--wells", type=positive_int, default=24, help="wells per plate (max 308)")
    p.add_argument("--size", type=positive_int, default=512, help="image side in pixels")
    p.add_argument("--signal", type=float, default=1.0, help="class-signal strength")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("build", help="PNGs -> HDF5 shards + manifest.json")
    p.add_argument("--root", required=True, help="RxRx1 data root; its layout is detected. " + LAYOUTS_HELP)
    p.add_argument("--out", required=True, help="shard folder")
    p.add_argument("--mode", choices=IMAGE_MODES, default=IMAGE_MODE_RGB)
    p.add_argument("--size", type=positive_int, default=DEFAULT_IMAGE_SIZE)
    p.add_argument("--shard-size", type=positive_int, default=256, help="samples per shard")
    p.add_argument("--workers", type=positive_int, default=2, help="processes")
    p.add_argument("--cell-types", type=_csv_list, default=None)
    p.add_argument("--experiments", type=_csv_list, default=None)
    p.add_argument("--include-controls", action="store_true")
    p.add_argument("--include-test", action="store_true", help="also shard the test set (split 'test')")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--val-experiments", type=_csv_list, default=None,
                   help="validate on these experiments instead of a random fraction")
    p.add_argument("--official-split", action="store_true",
                   help="WILDS layout: keep its train/val/test, and id_test (training experiments' "
                        "site 2), instead of a random or --val-experiments split")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--skip-bad", action="store_true", help="record unreadable sites instead of failing")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect", help="verify a manifest and its shards, print counts")
    p.add_argument("manifest")
    p.add_argument("--no-sha", action="store_true", help="skip SHA-256 (fletcher32 still checked)")
    p.add_argument("--json", action="store_true", help="also print counts as JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("show", help="PNG of one site's six channels and its composite")
    p.add_argument("--root", required=True, help="RxRx1 data root (any layout build reads)")
    p.add_argument("--id-code", required=True, help="<experiment>_<plate>_<well>")
    p.add_argument("--site", type=int, default=1, choices=(1, 2))
    p.add_argument("--dataset", default="train", choices=("train", "test"),
                   help="Kaggle layout's image folder (the other layouts need none)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export-cell-h5", help="train/val shards -> the textbook's cell.h5")
    p.add_argument("manifest")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import-cell-h5", help="a cell.h5 -> shards + manifest")
    p.add_argument("cell_h5")
    p.add_argument("--out", required=True)
    p.add_argument("--shard-size", type=positive_int, default=256)
    p.set_defaults(func=cmd_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return main_with_errors(build_parser(), argv, lambda args: args.func(args),
                            "finished shards are kept; rerun the same command to resume")
