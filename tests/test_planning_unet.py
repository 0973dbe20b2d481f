"""``resize_unet_plans``: a U-Net of another width on nnU-Net's own preprocessed data."""
import json

import pytest

from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.planning.unet import resize_unet_plans


def test_resized_plans_build_the_narrower_unet_on_the_same_data(tiny_dataset_2d):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    folder = tiny_dataset_2d.preprocessed
    source = json.loads((folder / "nnUNetPlans.json").read_text())
    stages = source["configurations"]["2d"]["architecture"]["arch_kwargs"]["n_stages"]
    features = [4 * (i + 1) for i in range(stages)]
    path = resize_unet_plans(folder, "nnUNetPlans", "nnUNetPlans_narrow", "2d", features, batch_size=3)
    plans = json.loads(path.read_text())
    assert path == folder / "nnUNetPlans_narrow.json" and plans["plans_name"] == "nnUNetPlans_narrow"
    resized, original = plans["configurations"]["2d"], source["configurations"]["2d"]
    assert resized["data_identifier"] == original["data_identifier"]  # no second preprocessing
    assert resized["batch_size"] == 3 and resized["patch_size"] == original["patch_size"]
    assert plans["configurations"]["3d_fullres"] == source["configurations"]["3d_fullres"]
    architecture = resized["architecture"]
    network = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                     architecture["_kw_requires_import"], 1, 3, deep_supervision=False)
    assert [stage[0].convs[0].conv.out_channels for stage in network.encoder.stages] == features


def test_a_feature_list_of_the_wrong_length_is_refused(tiny_dataset_2d):
    with pytest.raises(InputError, match="stages"):
        resize_unet_plans(tiny_dataset_2d.preprocessed, "nnUNetPlans", "nnUNetPlans_bad", "2d", [8, 16])
    assert not (tiny_dataset_2d.preprocessed / "nnUNetPlans_bad.json").exists()
