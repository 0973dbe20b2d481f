"""Make nnU-Net's trainer lookup find our trainers without manual exports.

nnU-Net resolves ``-tr NAME`` by searching its own trainer tree, then every folder in the
``nnUNet_extTrainer`` environment variable (``os.pathsep`` separated, read at call time).
Modules found in such a folder are imported under folder-relative names and purged from
``sys.modules`` afterwards, so a class *defined* there could not be pickled or re-resolved by a
spawned DDP rank. We therefore point ``nnUNet_extTrainer`` at ``nnunet_lookup/``, whose single module
only re-exports the classes that live in ``nnunetv2_symtc.trainers``.

``register_with_nnunet`` runs at interpreter start-up through the installed
``nnunetv2_symtc-nnunet.pth`` file; users who prefer it can export the variable themselves
(``symtc doctor`` prints the value).
"""
import os

LOOKUP_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nnunet_lookup")
ENV_VAR = "nnUNet_extTrainer"


def register_with_nnunet(environ=os.environ) -> None:
    """Append ``LOOKUP_FOLDER`` to ``nnUNet_extTrainer`` unless it is already listed.

    Folders the user listed come first, so their own trainers keep priority over ours.
    """
    current = [p for p in environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    if any(os.path.abspath(p) == LOOKUP_FOLDER for p in current):
        return
    environ[ENV_VAR] = os.pathsep.join(current + [LOOKUP_FOLDER])
