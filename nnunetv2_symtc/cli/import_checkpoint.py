"""``symtc import-checkpoint``: the SymTC authors' ``best.pth`` -> nnU-Net ``-pretrained_weights`` file."""
from typing import Dict, List, Optional

from nnunetv2_symtc.cli import add_subcommand

FINE_TUNE_SETUP = {"paper": ("SymTCTrainer_paper", "nnUNetPlans_SymTC"),
                   "small": ("SymTCTrainer_small", "nnUNetPlans_SymTC_small")}
"""Named width -> (trainer whose network has that width, plans identifier to write for it)."""


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "import-checkpoint",
        "Convert the SymTC authors' best.pth (weights in 'model_state_dict') into a file that "
        "`nnUNetv2_train ... -pretrained_weights OUT` accepts, and print the plans and trainer that match the "
        "checkpoint's width (SymTC: SymTCTrainer_paper; SymTC_s: SymTCTrainer_small). Dead reference "
        "parameters (unused query/key mlp0, positional Sin branch) are dropped. The file is unpickled "
        "with weights_only=False: import only checkpoints you trust.",
        "symtc import-checkpoint --reference best.pth -o symtc_paper_pretrained.pth")
    parser.add_argument("--reference", required=True, help="the authors' best.pth")
    parser.add_argument("-o", dest="output", required=True, help="output .pth ({'network_weights': state_dict})")
    parser.set_defaults(func=run)


def width_name(width: Dict) -> Optional[str]:
    """``'paper'`` or ``'small'`` when ``width`` (``reference_width``'s SymTC keyword arguments) is one of
    our trainers' widths, else ``None``."""
    import inspect

    from nnunetv2_symtc.networks.symtc import PAPER_WIDTH, SMALL_WIDTH, SymTC

    default_layers = tuple(inspect.signature(SymTC).parameters["num_layers"].default)
    for name, named in (("paper", PAPER_WIDTH), ("small", SMALL_WIDTH)):
        if all(width[k] == v for k, v in named.items()) and tuple(width["num_layers"]) == default_layers:
            return name
    return None


def fine_tune_commands(name: str, weights: str) -> List[str]:
    """The commands that fine-tune from ``weights`` with the named width (``'paper'``/``'small'``):
    write plans for that width, then train its trainer with them."""
    trainer, plans = FINE_TUNE_SETUP[name]
    return [f"symtc plan-symtc -d DATASET --width {name} -o {plans}",
            f"nnUNetv2_train DATASET 2d FOLD -tr {trainer} -p {plans} -pretrained_weights {weights}"]


def run(args) -> int:
    from nnunetv2_symtc.networks.reference_checkpoint import import_reference_checkpoint

    width = import_reference_checkpoint(args.reference, args.output)
    description = (f"E={width['embed_dim']}, {width['num_heads']} heads, layers {tuple(width['num_layers'])}, "
                   f"{width['input_channels']} input channel(s), {width['num_classes']} classes")
    name = width_name(width)
    if name is None:
        print(f"wrote {args.output}: a SymTC of a width none of our trainers builds ({description}); "
              f"-pretrained_weights needs a trainer whose network has exactly this width "
              f"(ours: {', '.join(f'{t} = {w}' for w, (t, _) in FINE_TUNE_SETUP.items())})")
        return 0
    print(f"wrote {args.output}: {'SymTC (paper width)' if name == 'paper' else 'SymTC_s (small width)'}, {description}.\n"
          "Fine-tune (plans for this width, then its trainer; the class count may differ):\n  "
          + "\n  ".join(fine_tune_commands(name, args.output)))
    return 0
