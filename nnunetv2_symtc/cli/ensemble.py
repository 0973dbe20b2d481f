"""``symtc ensemble``: average probabilities of prediction folders, or predict and ensemble end to end."""
from nnunetv2_symtc.cli import add_device_flag, add_subcommand, selected_device
from nnunetv2_symtc.errors import InputError, InputFileError


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "ensemble",
        "Ensemble nnU-Net models of any trainers and configurations (ours and nnU-Net's, 2d and 3d). "
        "Either average the .npz probabilities of existing prediction folders (-i FOLDER FOLDER ...), "
        "checking that they share labels, cases and shapes; or predict raw images with several trained "
        "model folders (-m) or with the ensemble nnUNetv2_find_best_configuration recommended (-d), then average.",
        "symtc ensemble -i pred_symtc_2d pred_nnunet_3d -o ensemble\n"
        "  symtc ensemble -m $nnUNet_results/Dataset101_Phantom/SymTCTrainer__nnUNetPlans__2d "
        "$nnUNet_results/Dataset101_Phantom/nnUNetTrainer__nnUNetPlans__3d_fullres -i imagesTs -o out -f 0\n"
        "  symtc ensemble -d 101 -i imagesTs -o out")
    parser.add_argument("-i", nargs="+", required=True,
                        help="prediction folders with .npz probabilities; with -m or -d: the one folder of raw "
                             "images (nnU-Net naming, case_0000.ext)")
    parser.add_argument("-o", required=True, help="output folder")
    parser.add_argument("-m", nargs="+", default=None, help="trained model folders (Trainer__Plans__configuration)")
    parser.add_argument("-d", default=None,
                        help="dataset id/name: use the models, folds and postprocessing recorded by "
                             "nnUNetv2_find_best_configuration (inference_information.json); a recorded "
                             "postprocessing file that is missing is an error unless --no-postprocessing")
    parser.add_argument("--no-postprocessing", action="store_true",
                        help="with -d: skip the recommended postprocessing (write only the ensemble)")
    parser.add_argument("-f", nargs="+", default=None, help="folds to use with -m (default: all available)")
    parser.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint file name")
    add_device_flag(parser)
    parser.add_argument("--disable_tta", action="store_true", help="no mirroring at test time")
    parser.add_argument("--save_probabilities", action="store_true",
                        help="folder mode: also write the averaged probabilities")
    parser.add_argument("-np", type=int, default=1, help="number of processes")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nnunetv2_symtc.inference import ensemble

    if args.no_postprocessing and args.d is None:
        raise InputError("--no-postprocessing applies to -d (the recommended ensemble) only")
    if args.m is None and args.d is None:
        written = ensemble.ensemble_probability_folders(args.i, args.o, args.save_probabilities, args.np)
        print(f"ensembled {len(args.i)} folders, {len(written)} cases -> {args.o}")
        return 0
    if args.m is not None and args.d is not None:
        raise InputError("give either -m MODEL_FOLDERS or -d DATASET, not both")
    if len(args.i) != 1:
        raise InputError(f"with -m/-d, -i is the one folder of raw images; got {len(args.i)} paths")
    postprocessing = None
    if args.d is not None:
        folders, folds, postprocessing = ensemble.recommended_members(args.d)
        if args.no_postprocessing:
            print("postprocessing: skipped (--no-postprocessing)")
            postprocessing = None
        elif postprocessing is None:
            print("postprocessing: none recommended by nnUNetv2_find_best_configuration")
        elif not postprocessing.is_file():
            raise InputFileError(f"{postprocessing}: the postprocessing file that nnUNetv2_find_best_configuration "
                                 f"recorded for dataset {args.d} is missing; run it again, or pass "
                                 "--no-postprocessing to write the ensemble without postprocessing")
        else:
            print(f"postprocessing: {postprocessing}")
    else:
        folders = args.m
        folds = [int(f) if f.isdigit() else f for f in args.f] if args.f else None
    result = ensemble.run_ensemble(folders, args.i[0], args.o, folds, args.chk, selected_device(args), args.disable_tta,
                                   args.np, postprocessing)
    for name, folder in result.items():
        print(f"{name:14s} {folder}")
    return 0
