"""MSFF plans: nnU-Net plans whose configurations name the MSFF U-Net (``PlannedMSFFUNet``).

Each planned configuration keeps its U-Net (class, ``arch_kwargs`` incl. ``strides``, patch and
batch size; default or ResEnc plans) and gains the MSFF bottleneck: ``network_class_name`` becomes
``nnunetv2_symtc.networks.PlannedMSFFUNet``, ``arch_kwargs`` gain ``unet_class_name``,
``msff_dilations`` and ``msff_branch_channels``. The preprocessed data is reused
(``data_identifier`` unchanged). Any trainer then trains it: ``nnUNetv2_train D 2d 0 -p nnUNetPlans_MSFF``.
"""
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.networks.msff_unet import DEFAULT_DILATIONS, PlannedMSFFUNet
from nnunetv2_symtc.planning.transfer import planned_configurations, read_source, write_plans

MSFF_CLASS = f"{PlannedMSFFUNet.__module__.rsplit('.', 1)[0]}.{PlannedMSFFUNet.__name__}"
"""``network_class_name`` written into the plans: ``nnunetv2_symtc.networks.PlannedMSFFUNet``."""


def msff_architecture(unet_architecture: Mapping, dilations: Sequence[int] = DEFAULT_DILATIONS,
                      branch_channels: Optional[int] = None) -> Dict:
    """The plans' ``architecture`` entry of an MSFF U-Net around a plans U-Net ``architecture``."""
    arch_kwargs = dict(unet_architecture["arch_kwargs"], unet_class_name=unet_architecture["network_class_name"],
                       msff_dilations=[int(d) for d in dilations], msff_branch_channels=branch_channels)
    return dict(network_class_name=MSFF_CLASS, arch_kwargs=arch_kwargs,
                _kw_requires_import=list(unet_architecture["_kw_requires_import"]))


def _check_buildable(architecture: Mapping, input_channels: int, num_classes: int) -> None:
    """Build the network on the meta device, as nnU-Net will (errors surface at planning time)."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    with torch.device("meta"):
        get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                               architecture["_kw_requires_import"], input_channels, num_classes, allow_init=False)


def plan_msff(preprocessed_dataset_folder: Path, source_plans: str = "nnUNetPlans",
              target_plans: str = "nnUNetPlans_MSFF", configurations: Optional[Sequence[str]] = None,
              dilations: Sequence[int] = DEFAULT_DILATIONS, branch_channels: Optional[int] = None) -> Path:
    """Write ``<target_plans>.json`` next to ``<source_plans>.json``; returns its path.

    ``configurations``: those to plan (default: every one with its own ``architecture``; cascade
    configurations keep inheriting). ``dilations`` / ``branch_channels``: the MSFF module's
    (``MultiScaleFeatureFusion``).
    """
    source, plans, dataset = read_source(preprocessed_dataset_folder, source_plans, configurations)
    num_classes, input_channels = len(dataset["labels"]), len(dataset["channel_names"])
    out, selected = planned_configurations(plans, target_plans, configurations, "architecture")
    for name, configuration in selected:
        unet = configuration["architecture"]
        if unet["network_class_name"] == MSFF_CLASS:
            raise InputError(f"{source}: configuration {name} already names the MSFF U-Net; plan from U-Net plans")
        architecture = msff_architecture(unet, dilations, branch_channels)
        try:
            _check_buildable(architecture, input_channels, num_classes)
        except (TypeError, ValueError) as error:
            raise InputError(f"{source}: configuration {name}: {unet['network_class_name']} cannot take an MSFF "
                             f"bottleneck: {error}") from error
        configuration["architecture"] = architecture
    return write_plans(source, out)
