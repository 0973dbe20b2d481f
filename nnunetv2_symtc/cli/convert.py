"""``symtc convert spider|ssmspine|spineps|to-source``: build nnU-Net raw datasets, and map predictions back."""
from nnunetv2_symtc.cli import add_subcommand

EXAMPLE = "symtc convert spider -i /data/SPIDER -d 201 --labels levels"


def _common(parser, default_name: str) -> None:
    parser.add_argument("-i", required=True, metavar="ROOT", help="source dataset folder (never modified)")
    parser.add_argument("-d", required=True, type=int, metavar="ID", help="nnU-Net dataset id (1-999)")
    parser.add_argument("-n", "--name", default=default_name, help="dataset name: DatasetXXX_<name>")
    parser.add_argument("-o", default=None, metavar="RAW_DIR", help="output folder instead of $nnUNet_raw")
    parser.add_argument("-np", type=int, default=1, help="number of processes")
    parser.add_argument("--strict", action="store_true", help="stop at the first problem instead of skipping bad cases")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset with this id (and remove its stale nnUNet_preprocessed folder)")


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "convert",
        "Convert SPIDER, SSMSpine or SPINEPS/BIDS data to an nnU-Net raw dataset (PIR, label_map.json, "
        "patient-grouped splits_final.json), or map predictions back to source labels (to-source). "
        "Exits 1 if any case was skipped.", EXAMPLE)
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)

    spider = add_subcommand(sources, "spider", "SPIDER images/, masks/, overview.csv -> cases <pid>_<seq>; the "
                            "official validation subset -> imagesTs.", EXAMPLE)
    _common(spider, "SPIDER")
    spider.add_argument("--sequences", nargs="+", default=["t1", "t2", "t2_SPACE"], help="sequences to convert")
    spider.add_argument("--labels", choices=("semantic", "levels"), default="semantic",
                        help="semantic: vertebra/disc/canal (mapped back approximately, numbering vertebrae bottom-up); "
                             "levels: one class per vertebra and disc level (exact round trip)")
    spider.add_argument("--partial", choices=("vertebra", "level", "ignore", "background"), default=None,
                        help="what partially visible vertebrae 101-125 become; default (None): merged into their "
                             "vertebra (semantic) or level (levels)")
    spider.add_argument("--max-level", type=int, default=25, help="highest level with its own class (--labels levels)")
    spider.add_argument("--multichannel", action="store_true",
                        help="one case per patient with the sequences (same grid) as channels")
    spider.add_argument("--keep-validation-in-training", action="store_true",
                        help="put the official validation subset in imagesTr instead of imagesTs")
    spider.set_defaults(func=run_spider)

    ssm = add_subcommand(sources, "ssmspine", "SSMSpine {Train,Test}/p<ID>/aug<K>.pt -> 2D cases p<ID>_aug<K> "
                         "(+ landmarksTr/landmarksTs), folds grouped by p<ID>.",
                         "symtc convert ssmspine -i /data/SSMSpine -d 202 -np 8")
    _common(ssm, "SSMSpine")
    ssm.add_argument("--image-key", choices=("img", "img_corrected", "img_equalized"), default="img")
    ssm.add_argument("--trust-pickle", action="store_true",
                     help="allow .pt files that need full unpickling (runs code from the file; trusted data only)")
    ssm.set_defaults(func=run_ssmspine)

    spineps = add_subcommand(sources, "spineps", "BIDS images with seg-spine (or seg-subreg) and seg-vert masks "
                             "anywhere below ROOT -> SPINEPS semantic dataset + instancesTr/ (instancesTs/ for --test-subjects).",
                             "symtc convert spineps -i /data/bids -d 203")
    _common(spineps, "SPINEPS")
    spineps.add_argument("--image-pattern", default="*_T2w.nii.gz", help="file name pattern of the images")
    spineps.add_argument("--keep-orientation", action="store_true", help="do not reorient to PIR (recorded)")
    spineps.add_argument("--test-subjects", nargs="+", default=(), metavar="SUB",
                         help="subjects (sub-<id> or <id>) whose cases go to imagesTs/labelsTs/instancesTs")
    spineps.set_defaults(func=run_spineps)

    back = add_subcommand(sources, "to-source", "Map predictions of a converted dataset back to the source's label "
                          "values, orientation and mask file names.",
                          "symtc convert to-source -d 201 -i predictions/ -o predictions_spider/")
    back.add_argument("-d", required=True, metavar="DATASET", help="dataset id, name or folder")
    back.add_argument("-i", required=True, metavar="PRED_DIR", help="folder of nnU-Net predictions")
    back.add_argument("-o", required=True, metavar="OUT_DIR", help="output folder")
    back.add_argument("--keep-dataset-orientation", action="store_true",
                      help="write in the dataset's orientation (PIR) instead of each case's source orientation")
    back.set_defaults(func=run_to_source)


def _finish(path) -> int:
    from nnunetv2_symtc.dataset_conversion import skipped_cases

    skipped = skipped_cases(path)
    if skipped:
        print(f"symtc convert: {len(skipped)} case(s) skipped (listed above and in {path}/dataset.json)")
        return 1
    return 0


def _common_kwargs(args) -> dict:
    return {"strict": args.strict, "overwrite": args.overwrite, "raw_dir": args.o, "num_processes": args.np}


def run_spider(args) -> int:
    from nnunetv2_symtc.dataset_conversion import convert_spider

    return _finish(convert_spider(args.i, args.d, args.name, sequences=args.sequences, labels=args.labels,
                                  partial=args.partial, max_level=args.max_level, multichannel=args.multichannel,
                                  keep_validation_in_training=args.keep_validation_in_training,
                                  **_common_kwargs(args)))


def run_ssmspine(args) -> int:
    from nnunetv2_symtc.dataset_conversion import convert_ssmspine

    return _finish(convert_ssmspine(args.i, args.d, args.name, image_key=args.image_key,
                                    trust_pickle=args.trust_pickle, **_common_kwargs(args)))


def run_spineps(args) -> int:
    from nnunetv2_symtc.dataset_conversion import convert_spineps

    return _finish(convert_spineps(args.i, args.d, args.name, image_pattern=args.image_pattern,
                                   keep_orientation=args.keep_orientation, test_subjects=args.test_subjects,
                                   **_common_kwargs(args)))


def run_to_source(args) -> int:
    from nnunetv2_symtc.dataset_conversion import map_to_source

    map_to_source(args.d, args.i, args.o, restore_orientation=not args.keep_dataset_orientation)
    return 0
