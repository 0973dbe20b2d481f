"""``symtc plan-symtc`` and ``symtc plan-msff``: plans that name our networks (plans transfers).

``plan-msff`` is registered here, beside ``plan-symtc``, as the other network plans writer.
"""
import argparse
import os
from pathlib import Path

from nnunetv2_symtc.cli import add_subcommand
from nnunetv2_symtc.errors import InputError


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "plan-symtc",
        "Write SymTC plans (default identifier nnUNetPlans_SymTC) next to a dataset's nnU-Net plans. Each "
        "configuration names SymTC (2D) or SymTC3D with every constructor argument (width, strides, kernels), "
        "a patch size valid for SymTC and a batch size that fits SymTC's estimated training memory on the "
        "target GPU. The preprocessed data is reused. Any trainer then trains SymTC: nnU-Net's own, "
        "nnUNetTrainerSizeAdaptiveCE, or SymTCTrainer (our optimiser recipe).",
        "symtc plan-symtc -d 901 -gpu_memory_target 24 && nnUNetv2_train 901 2d 0 -tr SymTCTrainer -p nnUNetPlans_SymTC")
    _add_dataset_flags(parser, "nnUNetPlans_SymTC")
    parser.add_argument("-gpu_memory_target", type=float, default=10.0, help="GPU memory (GiB) one training may use")
    parser.add_argument("--width", default="paper", choices=["paper", "small", "tiny"],
                        help="SymTC width: paper (E=512, 16 heads), small (SymTC_s, E=256, 8 heads) or tiny (tests); "
                             "the explicit numbers below override it")
    parser.add_argument("--embed-dim", type=int, help="attention width E")
    parser.add_argument("--num-heads", type=int, help="attention heads (E must be divisible by it)")
    parser.add_argument("--channels", type=int, nargs=3, metavar=("C0", "C1", "C2"),
                        help="CNN widths at full, 1/s1 and 1/(s1*s2) resolution")
    parser.add_argument("--num-layers", type=int, nargs=4, metavar=("N0", "N1", "N2", "N3"),
                        help="attention layers per block pair (T0, T1, T2, T3)")
    parser.add_argument("--patch-size", type=int, nargs="+",
                        help="patch size for every planned configuration (must be valid for SymTC; use -c to pick "
                             "configurations with that many axes); default: fitted to the memory target")
    parser.add_argument("--batch-size", type=int, help="batch size for every planned configuration; default: the "
                                                       "largest that fits the memory target")
    parser.set_defaults(func=run)

    msff = add_subcommand(
        subparsers, "plan-msff",
        "Write MSFF U-Net plans (default identifier nnUNetPlans_MSFF) next to a dataset's nnU-Net plans: each "
        "configuration keeps its U-Net (default or ResEnc plans; patch, batch, strides) and names the MSFF U-Net "
        "(PlannedMSFFUNet), so any trainer trains it. The preprocessed data is reused.",
        "symtc plan-msff -d 901 && nnUNetv2_train 901 2d 0 -tr nnUNetTrainerSizeAdaptiveCE -p nnUNetPlans_MSFF")
    _add_dataset_flags(msff, "nnUNetPlans_MSFF")
    msff.add_argument("--dilations", type=int, nargs="+", default=[1, 2, 3], help="MSFF dilation rates (>= 3 distinct)")
    msff.add_argument("--branch-channels", type=int, help="MSFF branch width (default: bottleneck channels / 4, >= 8)")
    msff.set_defaults(func=run_msff)


def _add_dataset_flags(parser: argparse.ArgumentParser, target: str) -> None:
    parser.add_argument("-d", dest="dataset", required=True, help="dataset id or name (already planned and preprocessed)")
    parser.add_argument("-p", dest="source_plans", default="nnUNetPlans", help="nnU-Net plans to start from")
    parser.add_argument("-o", dest="target_plans", default=target, help="plans identifier to write")
    parser.add_argument("-c", dest="configurations", nargs="+", default=None,
                        help="configurations to plan (default: all with their own patch size / architecture)")


def _preprocessed_folder(dataset: str) -> Path:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    preprocessed = os.environ.get("nnUNet_preprocessed")
    if not preprocessed:
        raise InputError("nnUNet_preprocessed is not set")
    return Path(preprocessed) / maybe_convert_to_dataset_name(dataset)


def width_from_args(args: argparse.Namespace) -> object:
    """The ``--width`` preset, or a dict of SymTC keyword arguments when numbers are given."""
    from nnunetv2_symtc.networks.from_plans import WIDTHS

    numbers = {key: getattr(args, key) for key in ("embed_dim", "num_heads", "channels", "num_layers")
               if getattr(args, key) is not None}
    return {**WIDTHS[args.width], **numbers} if numbers else args.width


def run(args) -> int:
    import json

    from nnunetv2_symtc.planning import plan_symtc

    path = plan_symtc(_preprocessed_folder(args.dataset), args.source_plans, args.target_plans, args.gpu_memory_target,
                      width_from_args(args), args.configurations, patch_size=args.patch_size,
                      batch_size=args.batch_size)
    for name, c in json.loads(path.read_text())["configurations"].items():
        if "symtc_estimated_memory_gib" in c:
            over = "  (over the memory target)" if c["symtc_estimated_memory_gib"] > args.gpu_memory_target else ""
            arch = c["architecture"]
            print(f"{name:14s} {arch['network_class_name'].rsplit('.', 1)[-1]} strides {arch['arch_kwargs']['strides']} "
                  f"patch {c['patch_size']} batch {c['batch_size']} (~{c['symtc_estimated_memory_gib']} GiB){over}")
    print(f"wrote {path}")
    return 0


def run_msff(args) -> int:
    from nnunetv2_symtc.planning import plan_msff

    path = plan_msff(_preprocessed_folder(args.dataset), args.source_plans, args.target_plans, args.configurations,
                     args.dilations, args.branch_channels)
    print(f"wrote {path}")
    return 0
