"""``symtc plan-symtc``: memory-aware SymTC plans from nnU-Net's plans (a plans transfer)."""
from nnunetv2_symtc.cli import add_subcommand


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "plan-symtc",
        "Write SymTC plans (default identifier nnUNetPlans_SymTC) next to a dataset's nnU-Net plans: patch "
        "sizes rounded to SymTC's strides and batch sizes that fit SymTC's estimated training memory on the "
        "target GPU. The preprocessed data is reused. Train with -p nnUNetPlans_SymTC.",
        "symtc plan-symtc -d 901 -gpu_memory_target 24 && nnUNetv2_train 901 2d 0 -tr SymTCTrainer -p nnUNetPlans_SymTC")
    parser.add_argument("-d", dest="dataset", required=True, help="dataset id or name (already planned and preprocessed)")
    parser.add_argument("-p", dest="source_plans", default="nnUNetPlans", help="nnU-Net plans to start from")
    parser.add_argument("-o", dest="target_plans", default="nnUNetPlans_SymTC", help="plans identifier to write")
    parser.add_argument("-gpu_memory_target", type=float, default=10.0, help="GPU memory (GiB) one training may use")
    parser.add_argument("-c", dest="configurations", nargs="+", default=None,
                        help="configurations to refit (default: all with their own patch size)")
    parser.add_argument("--width", default="paper", choices=["paper", "small"],
                        help="SymTC width the plans are for (SymTCTrainer/_paper/DS: paper; SymTCTrainer_small: small)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import json
    import os

    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from nnunetv2_symtc.training.symtc_plans import plan_symtc

    preprocessed = os.environ.get("nnUNet_preprocessed")
    if not preprocessed:
        raise ValueError("nnUNet_preprocessed is not set")
    folder = os.path.join(preprocessed, maybe_convert_to_dataset_name(args.dataset))
    path = plan_symtc(folder, args.source_plans, args.target_plans, args.gpu_memory_target, args.width,
                      args.configurations)
    for name, c in json.loads(path.read_text())["configurations"].items():
        if "symtc_estimated_memory_gib" in c:
            print(f"{name:14s} patch {c['patch_size']} batch {c['batch_size']} (~{c['symtc_estimated_memory_gib']} GiB)")
    print(f"wrote {path}")
    return 0
