"""Mixin: mirror and rotate only in ways that keep spine labels valid (see
``nnunetv2_symtc.augmentation.mirroring``). Datasets without the converter's axis record keep
nnU-Net's behaviour."""
import numpy as np
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size

from nnunetv2_symtc.augmentation.mirroring import dataset_axes, rotation_limit, safe_mirror_axes


class AnatomicalAugmentationMixin:
    """Put before ``nnUNetTrainer`` in the bases. ``allow_left_right_mirroring = False`` forbids
    left–right mirroring whatever the labels (used when inputs hold paired labels)."""

    allow_left_right_mirroring = True

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        axes = dataset_axes(self.dataset_json)
        if axes is None:
            return rotation, dummy_2d, initial_patch_size, mirror_axes
        patch_size = self.configuration_manager.patch_size
        dim = len(patch_size)
        mirror_axes = safe_mirror_axes(axes, dim, self.dataset_json["labels"],
                                       self.allow_left_right_mirroring)
        limit = rotation_limit(axes, dim, dummy_2d)
        if limit is not None and rotation[1] > limit:
            rotation = (-limit, limit)
            initial_patch_size = get_patch_size(patch_size[-dim:], rotation, rotation, rotation, (0.85, 1.25))
            if dummy_2d:
                initial_patch_size[0] = patch_size[0]
        self.print_to_log_file(f"anatomy-safe augmentation: mirror axes {mirror_axes}, "
                               f"rotation +-{np.degrees(rotation[1]):.0f} deg")
        self.inference_allowed_mirroring_axes = mirror_axes or None
        return rotation, dummy_2d, initial_patch_size, mirror_axes
