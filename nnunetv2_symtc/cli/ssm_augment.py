"""``symtc ssm-augment``: expand a 2D nnU-Net raw dataset with statistical-shape-model warps."""
from nnunetv2_symtc.cli import add_subcommand


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "ssm-augment",
        "Write a larger nnU-Net raw dataset: every training case warped onto shapes sampled from a "
        "per-fold statistical shape model of the spine (SSMSpine technique; 2D sagittal slices only). "
        "Generated cases enter only the training set of the fold whose model made them.",
        "symtc ssm-augment -d 11 -o 111 --shapes 10 --variance 0.95 --k 2 -np 2")
    parser.add_argument("-d", type=int, required=True, metavar="SOURCE_ID", help="source raw dataset id")
    parser.add_argument("-o", type=int, required=True, metavar="TARGET_ID", help="id of the dataset to write")
    parser.add_argument("--shapes", type=int, required=True, metavar="N",
                        help="sampled shapes per training case and fold")
    parser.add_argument("--variance", type=float, default=0.95, help="fraction of shape variance the PCA keeps")
    parser.add_argument("--k", type=float, default=2.0, help="mode coefficients stay within ±k standard deviations")
    parser.add_argument("--scale", action="store_true", help="remove size in the Procrustes alignment")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("-np", type=int, default=1, dest="num_processes", help="worker processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target dataset")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nnunetv2_symtc.augmentation.ssm import SSMAugmentConfig, ssm_augment_dataset

    config = SSMAugmentConfig(shapes=args.shapes, variance=args.variance, k=args.k, scale=args.scale,
                              seed=args.seed, num_processes=args.num_processes, overwrite=args.overwrite)
    folder = ssm_augment_dataset(args.d, args.o, config)
    print(f"wrote {folder}")
    return 0
