"""``symtc postprocess``: regenerate disc and endplate labels around (hand-corrected) vertebrae."""
from nnunetv2_symtc.cli import add_subcommand

EXAMPLE = "symtc postprocess --semantic sub-1_seg-spine_msk.nii.gz --instances vertebrae.nii.gz -o sub-1_seg-vert_msk.nii.gz"


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "postprocess",
        "Semantic mask (SPINEPS labels) + a mask of vertebra ids (1-28) -> full instance mask with discs 100+X and "
        "endplates 200+X, on the semantic mask's grid. Ids are kept unless --relabel; warnings go to "
        "<output>_metadata.json.", EXAMPLE)
    parser.add_argument("--semantic", required=True, metavar="S", help="SPINEPS semantic mask (endplates 62 or 52/53)")
    parser.add_argument("--instances", required=True, metavar="I", help="mask holding vertebra ids only")
    parser.add_argument("-o", required=True, metavar="O", help="output .nii.gz")
    parser.add_argument("--relabel", action="store_true",
                        help="rename vertebrae by the naming rule (--lowest-vertebra; else with the sacrum in view: "
                             "lowest = L5; else L5)")
    parser.add_argument("--lowest-vertebra", type=int, default=None,
                        help="with --relabel: SPINEPS id of the lowest vertebra (wins over the sacrum rule)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nnunetv2_symtc.inference.postprocess import postprocess_files

    metadata = postprocess_files(args.semantic, args.instances, args.o, args.relabel, args.lowest_vertebra)
    for warning in metadata["warnings"]:
        print(f"warning: {warning}")
    print(f"wrote {args.o}")
    return 0
