"""``symtc phantom``: write synthetic lumbar spine subjects as SPIDER, SPINEPS or SSMSpine data."""
from nnunetv2_symtc.cli import add_subcommand
from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.labels import L6_ID, T13_ID

TRANSITIONAL_CHOICES = {"L6": L6_ID, "T13": T13_ID}
"""``--transitional-vertebra`` name -> SPINEPS id."""


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "phantom",
        "Write N synthetic lumbar spine MR subjects (T12-sacrum, labelled) in a source format: "
        "spider (images/ masks/ overview.csv), spineps (sub-<id>_T2w + seg-spine/seg-vert masks, flat) "
        "or ssmspine (Train|Test/p<ID>/aug<K>.pt).",
        "symtc phantom -o /tmp/spider --format spider -n 4 --seed 0 --sequences t1 t2")
    parser.add_argument("-o", "--output", required=True, help="output folder (created)")
    parser.add_argument("--format", required=True, choices=("spider", "spineps", "ssmspine"))
    parser.add_argument("-n", type=int, default=4, help="number of subjects (ssmspine: patients)")
    parser.add_argument("--seed", type=int, default=0, help="subject k uses seed + k")
    parser.add_argument("--sequences", nargs="+", default=["t2"], choices=("t1", "t2", "t2_SPACE"),
                        help="SPIDER sequences per patient (same anatomy)")
    parser.add_argument("--augs", type=int, default=2, help="ssmspine: images (shapes) per patient")
    parser.add_argument("--test-patients", type=int,
                        help="ssmspine: patients in Test/ (the last ones; default about 20 %%, at least one when N >= 2)")
    parser.add_argument("--validation-fraction", type=float, default=0.2,
                        help="spider: fraction of patients in the validation subset (at least one when N >= 2)")
    parser.add_argument("--tiny", action="store_true", help="spider/spineps: small coarse subjects for fast tests")
    parser.add_argument("--transitional-vertebra", choices=tuple(TRANSITIONAL_CHOICES),
                        help="spider/spineps: add a transitional vertebra: L6 (lumbarisation, id 25: six lumbar "
                             "vertebrae above the sacrum) or T13 (id 28, between T12 and L1). SPIDER masks count "
                             "levels upward from the lowest lumbar vertebra (an L6 is level 1)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spider, write_spineps, write_ssmspine

    if args.n < 1:
        raise ValueError(f"-n must be at least 1, got {args.n}")
    if args.transitional_vertebra and args.format == "ssmspine":
        raise InputError("--transitional-vertebra applies to spider and spineps phantoms, not ssmspine")
    if args.format == "ssmspine":
        write_ssmspine(args.output, args.n, augs=args.augs, seed=args.seed, progress=True, n_test=args.test_patients)
        print(f"wrote {args.n} SSMSpine patients x {args.augs} augs to {args.output}")
        return 0
    # Render only what is written: SPINEPS takes T2w; t2_SPACE is rendered on its own grid later.
    native = ("t2",) if args.format == "spineps" else tuple(s for s in args.sequences if s != "t2_SPACE") or ("t2",)
    options = dict(sequences=native, transitional_vertebra=TRANSITIONAL_CHOICES.get(args.transitional_vertebra))
    config = PhantomConfig.tiny(**options) if args.tiny else PhantomConfig(**options)
    n_validation = max(1, int(round(args.validation_fraction * args.n))) if args.n > 1 and args.validation_fraction > 0 else 0
    for k in tqdm(range(args.n), desc=f"phantom {args.format}", unit="subject"):
        subject = generate_subject(args.seed + k, config)
        if args.format == "spider":
            pid = k + 1
            write_spider(args.output, [(pid, subject)], sequences=tuple(args.sequences),
                         validation_pids=[pid] if k >= args.n - n_validation else [], append=k > 0)
        else:
            write_spineps(args.output, [(f"phantom{args.seed + k:04d}", subject)])
    print(f"wrote {args.n} {args.format} subjects to {args.output}")
    return 0
