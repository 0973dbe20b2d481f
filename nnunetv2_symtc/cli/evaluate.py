"""``symtc evaluate``: Dice, HD95, ASSD, volumes (+ instances, SPIDER rules) for two folders."""
from nnunetv2_symtc.cli import add_flag, add_subcommand
from nnunetv2_symtc.errors import InputError


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "evaluate",
        "Compare prediction files with reference files of the same name: Dice, HD95 and ASSD in mm "
        "(medpy definitions, stated in summary.json), volumes; optionally instance metrics (PQ/SQ/RQ) and "
        "the SPIDER challenge scores. Writes summary.json (nnU-Net schema, extended) and CSVs to -o.",
        "symtc evaluate -ref nnUNet_raw/Dataset101_Phantom/labelsTs -pred predictions -o evaluation "
        "--scheme spineps --instances -np 2")
    parser.add_argument("-ref", required=True, help="folder with reference label files")
    parser.add_argument("-pred", required=True, help="folder with predicted label files (same names)")
    parser.add_argument("-o", required=True, help="output folder for summary.json and the CSVs")
    parser.add_argument("--scheme", choices=("spineps", "spider", "ssmspine", "nnunet"), default=None,
                        help="label convention for structure names; 'spider' adds the challenge scores, "
                             "'nnunet' reads labels/regions/ignore label of dataset -d")
    parser.add_argument("-d", default=None, help="nnU-Net dataset id or name (with --scheme nnunet)")
    parser.add_argument("--instances", action="store_true",
                        help="files are instance masks: add PQ/SQ/RQ, Dice variants and per-instance rows")
    parser.add_argument("--assd", choices=("pooled", "mean_of_directed_means"), default="pooled",
                        help="ASSD definition: pooled mean (medpy >= 0.5) or mean of the two directed means")
    add_flag(parser, "--symtc-compat", "--symtc_compat", action="store_true",
                        help="also report HD95_symtc_px (voxel units, 0 when a mask is empty) and Dice_symtc "
                             "(1 when both are empty), only for comparison with the SymTC paper")
    add_flag(parser, "--spider-array-spacing", "--spider_array_spacing", action="store_true",
                        help="with --scheme spider: use the spacing in array order for ASD instead of "
                             "reproducing the official script's (x, y, z) order")
    add_flag(parser, "--no-distances", "--no_distances", action="store_true", help="skip HD95/ASSD (overlap metrics only)")
    parser.add_argument("--ignore-geometry", action="store_true",
                        help="pair files by shape and spacing only: accept a prediction whose origin or direction "
                             "differs from its reference's (default: an error naming both files)")
    parser.add_argument("--overlays", type=int, default=0, metavar="K",
                        help="write PNGs of the K cases with the lowest mean Dice to OUT/worst_cases")
    parser.add_argument("-np", type=int, default=1, help="number of processes (cases run in parallel)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nnunetv2_symtc.evaluation.report import (EvaluationOptions, LabelSetup, evaluate_folders, format_table,
                                                  nnunet_label_setup)

    if args.scheme == "nnunet":
        if args.d is None:
            raise InputError("--scheme nnunet needs -d DATASET (id or name) to read its dataset.json")
        labels = nnunet_label_setup(args.d)
    else:
        if args.d is not None:
            raise InputError("-d is only used with --scheme nnunet")
        labels = LabelSetup(args.scheme)
    options = EvaluationOptions(labels=labels, instances=args.instances, distances=not args.no_distances,
                                assd_definition=args.assd, symtc_compat=args.symtc_compat,
                                spider_official_spacing=not args.spider_array_spacing,
                                check_position=not args.ignore_geometry)
    summary = evaluate_folders(args.ref, args.pred, args.o, options, num_processes=args.np, overlays=args.overlays)
    print(format_table(summary))
    print(f"\nwritten: {args.o}/summary.json, metrics_per_case.csv")
    return 0
