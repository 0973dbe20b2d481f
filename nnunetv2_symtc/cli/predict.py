"""``symtc predict``: two-phase (semantic, then vertebra-instance) prediction of whole scans."""
from nnunetv2_symtc.cli import add_device_flag, add_flag, add_subcommand, selected_device
from nnunetv2_symtc.errors import InputError

EXAMPLE = ("symtc predict -i scans/ -o out/ --semantic-model $nnUNet_results/Dataset301_Spine/"
           "nnUNetTrainer__nnUNetPlans__3d_fullres --instance-model $nnUNet_results/Dataset302_Inst/"
           "SpinepsInstanceTrainer__nnUNetPlans__3d_fullres -f 0")


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "predict",
        "SPINEPS-style two-phase segmentation: semantic nnU-Net(s), body centres, phase-2 cutouts, merge by "
        "neighbour agreement, level naming, discs (100+X) and endplates (200+X). Writes per case the semantic and "
        "instance masks, centroids JSON, snapshot PNG and metadata JSON on the input's grid.", EXAMPLE)
    parser.add_argument("-i", required=True, metavar="IMAGES",
                        help="folder of images: <case>_0000.nii.gz (nnU-Net channels) or one file per case")
    parser.add_argument("-o", required=True, metavar="OUT", help="output folder")
    phase1 = parser.add_mutually_exclusive_group(required=True)
    phase1.add_argument("--semantic-model", nargs="+", metavar="FOLDER",
                        help="trained phase-1 model folder(s) (Trainer__Plans__config); several are averaged")
    phase1.add_argument("--semantic-input", metavar="FOLDER",
                        help="skip phase 1: use the given semantic masks <case>_seg-spine_msk.nii.gz (SPINEPS values, one "
                             "per image case in -i, on its image's grid), e.g. hand-corrected or from another tool; "
                             "used as given (no phase-1 clean-up). Give either this or --semantic-model, not both")
    parser.add_argument("--instance-model", required=True, metavar="FOLDER", help="trained phase-2 model folder")
    parser.add_argument("-f", nargs="+", default=None, help="folds (default: every fold with a checkpoint)")
    parser.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint file name")
    add_device_flag(parser)
    parser.add_argument("-step_size", type=float, default=0.5, help="sliding-window step (fraction of the patch)")
    parser.add_argument("--disable_tta", action="store_true", help="no mirroring test-time augmentation")
    parser.add_argument("-npp", type=int, default=1, help="nnU-Net preprocessing processes; >1 (or -nps >1) uses nnU-Net's worker pools instead of predicting in this process")
    parser.add_argument("-nps", type=int, default=1, help="nnU-Net resampling/export processes")
    parser.add_argument("--phase2-batch-size", type=int, default=4,
                        help="sliding-window tiles per network call in phase 2, batched across cutouts (1: nnU-Net's "
                             "per-image predictor)")
    parser.add_argument("-num_parts", type=int, default=1, help="split the cases into this many parts")
    parser.add_argument("-part_id", type=int, default=0, help="which part this process predicts (0-based)")
    parser.add_argument("--overwrite", action="store_true", help="predict cases that already have outputs again")
    parser.add_argument("--lowest-vertebra", type=int, default=None,
                        help="SPINEPS id of the lowest vertebra in view (e.g. 24 = L5, 25 = L6, 28 = T13); wins over "
                             "the sacrum rule (with the sacrum in view the lowest vertebra is L5)")
    parser.add_argument("--spider-values", action="store_true",
                        help="write the instance mask in SPIDER values (vertebrae cut by the in-plane field of view: 101-125)")
    parser.add_argument("--split-endplates", action="store_true",
                        help="write endplates as 52 (superior) / 53 (inferior) instead of 62 in the semantic mask")
    add_flag(parser, "--save_probabilities", "--save-probabilities", action="store_true", help="also save phase-1 probabilities (.npz)")
    parser.add_argument("--measure", action="store_true",
                        help="also measure every case in -o (symtc measure: measurements.csv, spine.csv, "
                             "<case>_measurements.json); needs SPINEPS instance values, so not with --spider-values")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nnunetv2_symtc.inference.two_phase import PredictionSettings, TwoPhasePredictor, predict_folder

    if args.measure and args.spider_values:
        raise InputError("--measure reads SPINEPS instance values; it cannot be combined with --spider-values")
    settings = PredictionSettings(folds=args.f, device=selected_device(args), step_size=args.step_size,
                                  use_mirroring=not args.disable_tta, checkpoint=args.chk,
                                  num_processes_preprocessing=args.npp, num_processes_segmentation_export=args.nps,
                                  phase2_batch_size=args.phase2_batch_size)
    predictor = TwoPhasePredictor(args.semantic_model or (), args.instance_model, settings)
    done = predict_folder(predictor, args.i, args.o, overwrite=args.overwrite, num_parts=args.num_parts,
                          part_id=args.part_id, lowest_vertebra=args.lowest_vertebra, spider_values=args.spider_values,
                          split_endplate_labels=args.split_endplates, save_probabilities=args.save_probabilities,
                          semantic_input=args.semantic_input)
    print(f"predicted {len(done)} case(s) into {args.o}")
    if not args.measure:
        return 0
    from nnunetv2_symtc.cli.measure import report
    from nnunetv2_symtc.measurement.tables import measure_folder

    return report(*measure_folder(args.o, args.o))
