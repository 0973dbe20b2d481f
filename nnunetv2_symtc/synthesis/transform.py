"""``SynthesisTransform``: replace a training sample's image by one drawn from its label map.

A batchgeneratorsv2 transform for nnU-Net's per-sample augmentation pipeline (put it first, before
the spatial and intensity augmentation). The sample's segmentation has the training target in
channel 0 and, when the dataset provides generation label maps, the map in channel 1 (nnU-Net's
loader appends it there, as it does a cascade's previous-stage segmentation); without channel 1
the target itself is the label map. Channel 1 is removed, so the pipeline continues on the target.
"""
from __future__ import annotations

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from nnunetv2_symtc.synthesis.generator import SynthesisSettings, synthesize


class SynthesisTransform(BasicTransform):
    """Every image channel becomes an independent draw of ``synthesize`` from the sample's label
    map; the random state comes from numpy's global generator (which nnU-Net seeds per worker)."""

    def __init__(self, settings: SynthesisSettings = SynthesisSettings()):
        super().__init__()
        self.settings = settings

    def apply(self, data_dict: dict, **params) -> dict:
        segmentation = data_dict["segmentation"]
        if segmentation.shape[0] not in (1, 2):
            raise ValueError(f"SynthesisTransform expects the target (and a generation label map) as "
                             f"segmentation channels, got {segmentation.shape[0]} channels")
        labels = segmentation[-1].numpy()
        rng = np.random.default_rng(np.random.randint(0, 2 ** 31))
        image = data_dict["image"]
        channels = [torch.from_numpy(synthesize(labels, rng, self.settings)) for _ in range(image.shape[0])]
        data_dict["image"] = torch.stack(channels).to(image.dtype)
        data_dict["segmentation"] = segmentation[:1]
        return data_dict
