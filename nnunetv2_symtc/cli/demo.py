"""``symtc demo``: the README's main job (see ``nnunetv2_symtc.demo``)."""
from pathlib import Path

from nnunetv2_symtc.cli import add_device_flag, add_subcommand, selected_device


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "demo",
        "Run the whole pipeline on the built-in phantom: phantom -> conversion -> nnU-Net planning and "
        "training (phase 1 as a size-adaptive-CE U-Net and as SymTC, phase 2 on cutouts) -> two-phase "
        "prediction by each phase-1 model and their ensemble -> evaluation and report.html. Budget 'cpu' "
        "takes 12-14 min on 2 cores; 'full' is meant for a GPU.",
        "symtc demo -o demo_output")
    parser.add_argument("-o", "--output", type=Path, default=Path("demo_output"),
                        help="output folder (must not exist or be empty); nnU-Net folders go inside it")
    parser.add_argument("--budget", choices=("auto", "tiny", "cpu", "full"), default="auto",
                        help="auto: 'full' on a GPU, 'cpu' otherwise; 'tiny' only checks the wiring")
    add_device_flag(parser)
    parser.add_argument("--seed", type=int, default=0, help="phantom seed")
    parser.add_argument("--held-out", choices=("test", "validation"), default="test",
                        help="subjects to predict and score: the test subjects, or the validation subjects that "
                             "budgets are tuned on (never tune on test)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nnunetv2_symtc.demo import run_demo

    run_demo(args.output, args.budget, selected_device(args), args.seed, args.held_out)
    return 0
