"""``symtc import-checkpoint``: the SymTC authors' ``best.pth`` -> nnU-Net ``-pretrained_weights`` file."""
from nnunetv2_symtc.cli import add_subcommand


def register(subparsers) -> None:
    parser = add_subcommand(
        subparsers, "import-checkpoint",
        "Convert the SymTC authors' best.pth (weights in 'model_state_dict') into a file that "
        "`nnUNetv2_train ... -tr SymTCTrainer_paper -pretrained_weights OUT` accepts. Dead reference "
        "parameters (unused query/key mlp0, positional Sin branch) are dropped. The file is unpickled "
        "with weights_only=False: import only checkpoints you trust.",
        "symtc import-checkpoint --reference best.pth -o symtc_paper_pretrained.pth")
    parser.add_argument("--reference", required=True, help="the authors' best.pth")
    parser.add_argument("-o", dest="output", required=True, help="output .pth ({'network_weights': state_dict})")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nnunetv2_symtc.networks.reference_checkpoint import import_reference_checkpoint

    width = import_reference_checkpoint(args.reference, args.output)
    print(f"wrote {args.output}: SymTC {width}. Fine-tune with\n"
          f"  nnUNetv2_train DATASET 2d FOLD -tr SymTCTrainer_paper -pretrained_weights {args.output}")
    return 0
