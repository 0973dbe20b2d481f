"""``symtc instance-dataset``: derive a phase-2 (vertebra-instance) nnU-Net dataset from ground truth."""
from nnunetv2_symtc import labels as L
from nnunetv2_symtc.cli import add_subcommand

EXAMPLE = "symtc instance-dataset -i /data/bids -d 302 --cutout-mm 105.6 228 186 --spacing 1.65 0.75 0.75"


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "instance-dataset",
        "Build the phase-2 dataset of the two-phase segmentation: one case per vertebra, a cutout centred on its "
        "body (inputs: semantic mask as noNorm one-hot channels, optional image; target: background / vertebra "
        "above / centre / below). The expected phase-1 label set is stored in dataset.json. A subject with a problem "
        "(unreadable or invalid file, no vertebral body in view) is reported with its file and skipped; exits 1 "
        "if any subject was skipped.", EXAMPLE)
    parser.add_argument("-i", required=True, metavar="SOURCE",
                        help="SPINEPS/BIDS folder (images with seg-spine/seg-subreg and seg-vert masks) or, with "
                             "--source spider, a SPIDER root (images/, masks/, overview.csv)")
    parser.add_argument("-d", required=True, type=int, metavar="ID", help="nnU-Net dataset id (1-999)")
    parser.add_argument("-n", "--name", default=None, help="dataset name: DatasetXXX_<name>")
    parser.add_argument("-o", default=None, metavar="RAW_DIR", help="output folder instead of $nnUNet_raw")
    parser.add_argument("--source", choices=("spineps", "spider"), default="spineps", help="source format")
    parser.add_argument("--cutout-mm", nargs=3, type=float, default=None, metavar=("LR", "SI", "AP"),
                        help="cutout size in mm (default SPINEPS's 248x304x64 voxels at 0.75x0.75x1.65 mm PIR: "
                             "105.6 228 186)")
    parser.add_argument("--spacing", nargs=3, type=float, default=None, metavar=("LR", "SI", "AP"),
                        help="working spacing in mm (default 1.65 0.75 0.75)")
    parser.add_argument("--with-image", action="store_true", help="add the image as the last input channel")
    parser.add_argument("--lowest-vertebra", type=int, default=L.L5_ID,
                        help="naming convention of this data when no sacrum is in view: id of the lowest vertebra "
                             f"(default {L.L5_ID} = L5)")
    parser.add_argument("--strict", action="store_true", help="stop at the first problem instead of skipping the subject")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this id")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nnunetv2_symtc.dataset_conversion import skipped_cases
    from nnunetv2_symtc.dataset_conversion.phase2_cutouts import build_instance_dataset
    from nnunetv2_symtc.instance.cutouts import CutoutSpec

    default = CutoutSpec.spineps_default()
    cutout = CutoutSpec(tuple(args.cutout_mm or default.size_mm_zyx), tuple(args.spacing or default.spacing_zyx))
    path = build_instance_dataset(args.i, args.d, args.name, scheme=args.source, cutout=cutout,
                                  with_image=args.with_image, lowest_vertebra=args.lowest_vertebra, strict=args.strict,
                                  overwrite=args.overwrite, raw_dir=args.o)
    skipped = skipped_cases(path)
    if skipped:
        print(f"symtc instance-dataset: {len(skipped)} subject(s) skipped (listed above and in {path}/dataset.json)")
        return 1
    return 0
