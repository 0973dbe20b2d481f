"""Mixin: mirror and rotate only in ways that keep spine labels valid, in the axes of the patches
the trainer actually sees (``nnunetv2_symtc.augmentation.axes`` resolves them through
``transpose_forward`` and 2D slicing; ``nnunetv2_symtc.augmentation.mirroring`` has the rules).
Datasets without our ``symtc_axes`` record get their axes from the images' direction cosines;
when those are unknown too, the log says so and the safest rules apply."""
import numpy as np
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size

from nnunetv2_symtc.augmentation.axes import PatchAxes, raw_anatomical_axes, raw_dataset_folder
from nnunetv2_symtc.augmentation.mirroring import anatomy_safe_rules, has_left_right_pairs


class AnatomicalAugmentationMixin:
    """Put before ``nnUNetTrainer`` in the bases. ``allow_left_right_mirroring = False`` forbids
    left–right mirroring whatever the labels (used when inputs hold paired labels)."""

    allow_left_right_mirroring = True

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        patch_size = self.configuration_manager.patch_size
        dim = len(patch_size)
        raw = raw_anatomical_axes(self.dataset_json, self.preprocessed_dataset_folder,
                                  raw_dataset_folder(self.plans_manager.dataset_name))
        patch = None if raw.axes is None else PatchAxes.resolve(raw.axes, self.plans_manager.transpose_forward, dim)
        left_right_safe = self.allow_left_right_mirroring and not has_left_right_pairs(self.dataset_json["labels"])
        rules = anatomy_safe_rules(patch, dim, dummy_2d, left_right_safe)
        if rules.max_rotation is not None and rotation[1] > rules.max_rotation:
            rotation = (-rules.max_rotation, rules.max_rotation)
            initial_patch_size = get_patch_size(patch_size[-dim:], rotation, rotation, rotation, (0.85, 1.25))
            if dummy_2d:
                initial_patch_size[0] = patch_size[0]
        if raw.axes is None:
            self.print_to_log_file(f"WARNING: anatomy-safe augmentation cannot tell which patch axis is "
                                   f"superior-inferior or left-right ({raw.source}). Using the safest rules: "
                                   f"no mirroring, rotation +-{np.degrees(rotation[1]):.0f} deg. Add "
                                   f"\"symtc_axes\" to dataset.json to fix this.")
        else:
            self.print_to_log_file(f"anatomy-safe augmentation: raw axes {raw.axes} from {raw.source}, "
                                   f"transpose_forward {list(self.plans_manager.transpose_forward)}; {rules.reason}; "
                                   f"mirror axes {rules.mirror_axes}, rotation +-{np.degrees(rotation[1]):.0f} deg")
        self.inference_allowed_mirroring_axes = rules.mirror_axes or None
        return rotation, dummy_2d, initial_patch_size, rules.mirror_axes
