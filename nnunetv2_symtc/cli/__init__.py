"""The ``symtc`` command: argument parsing only; every subcommand calls into the library.

Each subcommand lives in its own module here and exposes ``register(subparsers)``, which adds
its parser (with ``--help`` text and an example) and sets ``func`` to the function to run.

Flag spelling: where nnU-Net has the flag, nnU-Net's spelling (``-d -c -f -tr -p -i -o -chk -device
-npp -nps -np -step_size --disable_tta --save_probabilities``); our own flags are kebab-case
(``--long-name``). Former spellings stay accepted as hidden aliases (``add_flag``).

Errors: an ``InputError`` (a problem with the user's input, raised by our checks) ends in one line;
anything else prints its traceback. ``--debug`` or ``SYMTC_DEBUG=1`` prints the traceback always.
"""
import argparse
import importlib
import os
import sys
import traceback
from typing import List, Optional

from nnunetv2_symtc.devices import DEVICE_CHOICES
from nnunetv2_symtc.errors import InputError

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
    "measure",
    "postprocess",
    "demo",
)
"""Modules of ``nnunetv2_symtc.cli`` that each add one subcommand, in ``--help`` order."""

DEBUG_ENVIRONMENT_VARIABLE = "SYMTC_DEBUG"
"""Set to anything but ``''``/``0`` to print full tracebacks, like ``--debug``."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps example blocks in descriptions as written and shows defaults."""


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's parser must not overwrite a --debug given before the subcommand.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help=f"print the full traceback of any error (also: {DEBUG_ENVIRONMENT_VARIABLE}=1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symtc", formatter_class=HelpFormatter,
        description="nnU-Net v2 plugin for lumbar spine MRI: SymTC, size-adaptive CE, MSFF U-Net and "
                    "SPINEPS-style two-phase segmentation.\n\nexample:\n  symtc doctor")
    _add_debug_flag(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def add_subcommand(subparsers, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    """Add a subcommand parser whose help shows ``summary`` and an ``example`` invocation."""
    parser = subparsers.add_parser(name, help=summary, formatter_class=HelpFormatter,
                                   description=f"{summary}\n\nexample:\n  {example}")
    _add_debug_flag(parser)
    return parser


def add_flag(parser: argparse.ArgumentParser, name: str, *former_names: str, **kwargs) -> argparse.Action:
    """``parser.add_argument(name, **kwargs)``, also accepting each of ``former_names`` (old spellings,
    kept so that scripts keep working) without listing them in ``--help``."""
    action = parser.add_argument(name, **kwargs)
    alias_kwargs = {k: v for k, v in kwargs.items() if k not in ("help", "default", "required", "metavar", "dest")}
    for former in former_names:
        parser.add_argument(former, dest=action.dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                            **alias_kwargs)
    return action


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """``-device`` with the one default of every command: ``auto`` (see ``selected_device``)."""
    parser.add_argument("-device", choices=DEVICE_CHOICES, default="auto",
                        help="torch device; auto: cuda when a CUDA device is visible, else cpu (the choice is printed)")


def selected_device(args: argparse.Namespace) -> str:
    """Resolve ``args.device`` (``devices.resolve_device``) and print the device that will be used."""
    from nnunetv2_symtc.devices import resolve_device

    device = resolve_device(args.device)
    print(f"device: {device}" + (" (auto)" if args.device == "auto" else ""))
    return device


def _debug_requested(args: argparse.Namespace) -> bool:
    return getattr(args, "debug", False) or os.environ.get(DEBUG_ENVIRONMENT_VARIABLE, "") not in ("", "0")


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``symtc``; returns the exit status (1 after any error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        if _debug_requested(args):
            traceback.print_exc()
        print(f"symtc {args.command}: error: {e}", file=sys.stderr)
        return 1
    except Exception:  # not an input problem: a bug or an environment failure, so keep its traceback
        traceback.print_exc()
        print(f"symtc {args.command}: unexpected error (traceback above); if it is not an environment "
              "problem such as memory or disk space, please report it", file=sys.stderr)
        return 1
