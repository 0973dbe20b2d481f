"""``symtc measure``: per-level spine geometry (mm, mm², mm³, degrees) from two-phase outputs."""
from nnunetv2_symtc.cli import add_subcommand

EXAMPLE = "symtc measure -i predictions/ -o measurements/"


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "measure",
        "Disc and vertebral body heights (anterior, middle, posterior thirds), volumes, disc height index, wedge and "
        "segmental angles, lumbar lordosis (L1-S1), slip and canal diameters per level, from <case>_seg-spine_msk.nii.gz "
        "and <case>_seg-vert_msk.nii.gz (SPINEPS values, any orientation). Writes measurements.csv (one row per level), "
        "spine.csv and <case>_measurements.json; a value that cannot be measured is empty with its reason. Exit status 1 "
        "only for unreadable or mismatched inputs.", EXAMPLE)
    parser.add_argument("-i", required=True, metavar="SEG_FOLDER", help="folder of semantic and instance masks")
    parser.add_argument("-o", required=True, metavar="OUT", help="output folder")
    parser.set_defaults(func=run)


def report(results, errors) -> int:
    """Print one line per case (levels, lordosis, empty values) and every error; 1 if any error."""
    for m in results:
        if m.reason:
            print(f"{m.case}: {m.reason}")
            continue
        empty = sum(v is None for row in m.levels for v in row.values.values())
        lordosis = "-" if m.lumbar_lordosis_deg is None else f"{m.lumbar_lordosis_deg:.1f} deg"
        print(f"{m.case}: {len(m.levels)} level(s), lumbar lordosis {lordosis}, {empty} empty value(s)")
    for error in errors:
        print(f"error: {error}")
    return 1 if errors else 0


def run(args) -> int:
    from nnunetv2_symtc.measurement.tables import measure_folder

    results, errors = measure_folder(args.i, args.o)
    status = report(results, errors)
    print(f"measured {len(results)} case(s) into {args.o}")
    return status
