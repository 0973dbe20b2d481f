"""``symtc robustness``: SymTC-style shift test plus intensity scaling and noise for a trained model."""
from nnunetv2_symtc.cli import add_device_flag, add_flag, add_subcommand, selected_device


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "robustness",
        "Shift test images by 0..N mm towards superior/inferior/anterior/posterior (axes from the image "
        "geometry), scale intensities and add noise; predict each with a trained model folder and plot mean "
        "Dice and HD95 against the perturbation (robustness.png, robustness.csv).",
        "symtc robustness -m $nnUNet_results/Dataset101_Phantom/SymTCTrainer__nnUNetPlans__2d "
        "-i imagesTs -ref labelsTs -o robustness --max-shift-mm 20 --steps 4 -f 0")
    parser.add_argument("-m", required=True, help="trained model folder (Trainer__Plans__configuration)")
    parser.add_argument("-i", required=True, help="test images, nnU-Net naming (case_0000.ext)")
    parser.add_argument("-ref", required=True, help="reference labels (case.ext)")
    parser.add_argument("-o", required=True, help="output folder")
    parser.add_argument("-f", nargs="+", default=None, help="folds (default: all available)")
    parser.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint file name")
    add_device_flag(parser)
    parser.add_argument("--disable_tta", action="store_true", help="no mirroring at test time")
    add_flag(parser, "--file-ending", "--file_ending", default=".nii.gz", help="image file ending")
    add_flag(parser, "--max-shift-mm", "--max_shift_mm", type=float, default=20.0, help="largest shift in mm (0 = no shift test)")
    parser.add_argument("--steps", type=int, default=4, help="number of shift steps after 0")
    parser.add_argument("--directions", nargs="+", default=["superior", "inferior", "anterior", "posterior"],
                        choices=["superior", "inferior", "anterior", "posterior"], help="shift directions")
    add_flag(parser, "--intensity-scales", "--intensity_scales", type=float, nargs="*", default=[0.5, 1.0, 2.0],
                        help="intensity factors (empty: skip)")
    parser.add_argument("--noise", type=float, nargs="*", default=[0.0, 0.1, 0.3],
                        help="Gaussian noise std as a fraction of the image std (empty: skip)")
    add_flag(parser, "--max-cases", "--max_cases", type=int, default=None, help="use only the first N cases")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nnunetv2_symtc.inference import robustness as R

    cases = R.load_cases(args.i, args.ref, args.file_ending, args.max_cases)
    folds = [int(f) if f.isdigit() else f for f in args.f] if args.f else None
    predict = R.nnunet_predictor(args.m, folds, args.chk, selected_device(args), args.disable_tta)
    summary = R.run_robustness(cases, predict, args.o, args.max_shift_mm, args.steps, args.directions,
                               args.intensity_scales, args.noise)
    print(f"{'perturbation':<12} {'direction':<10} {'amount':>7}  {'Dice':>6}  {'HD95 mm':>8}")
    for row in summary:
        print(f"{row['perturbation']:<12} {row['direction']:<10} {row['amount']:>7.2f}  {row['Dice']:>6.3f}  "
              f"{row['HD95']:>8.2f}")
    print(f"\nwritten: {args.o}/robustness.png, robustness.csv, robustness_cases.csv")
    return 0
