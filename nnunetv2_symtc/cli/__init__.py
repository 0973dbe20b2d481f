"""The ``symtc`` command: argument parsing only; every subcommand calls into the library.

Each subcommand lives in its own module here and exposes ``register(subparsers)``, which adds
its parser (with ``--help`` text and an example) and sets ``func`` to the function to run.
Flags follow nnU-Net's where they overlap: ``-d -c -f -tr -p -i -o -device -np``.
"""
import argparse
import importlib
import sys
from typing import List, Optional

SUBCOMMAND_MODULES = (
    "doctor",
    "phantom",
    "convert",
    "evaluate",
    "ensemble",
    "robustness",
    "ssm_augment",
    "import_checkpoint",
    "plan_symtc",
    "instance_dataset",
    "predict",
    "postprocess",
    "demo",
)
"""Modules of ``nnunetv2_symtc.cli`` that each add one subcommand, in ``--help`` order."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps example blocks in descriptions as written and shows defaults."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symtc", formatter_class=HelpFormatter,
        description="nnU-Net v2 plugin for lumbar spine MRI: SymTC, size-adaptive CE, MSFF U-Net and "
                    "SPINEPS-style two-phase segmentation.\n\nexample:\n  symtc doctor")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def add_subcommand(subparsers, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    """Add a subcommand parser whose help shows ``summary`` and an ``example`` invocation."""
    return subparsers.add_parser(name, help=summary, formatter_class=HelpFormatter,
                                 description=f"{summary}\n\nexample:\n  {example}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as e:
        # Input problems end with a one-line, actionable message instead of a traceback.
        print(f"symtc {args.command}: error: {e}", file=sys.stderr)
        return 1
