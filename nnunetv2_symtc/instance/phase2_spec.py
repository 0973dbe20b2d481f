"""The phase-2 contract shared by its training data and its predictor: ``Phase2Spec`` (stored in
the phase-2 dataset's ``dataset.json``) and how a semantic mask becomes phase-2 input.

- **Inputs**: one binary channel per group of semantic values (``Phase2Spec.channels``), channel
  name ``noNorm`` so nnU-Net does not z-normalise them; with ``with_image`` the image, linearly
  resampled, is the last channel (z-scored as usual).
- **Target**: 0 background, 1 the vertebra above, 2 the centre vertebra, 3 the one below
  (``labels.PHASE2_LABELS``), on vertebra voxels (semantic 41–50) only.
- **Grid**: ``Phase2Spec.cutout`` (physical size, working spacing), PIR.
- ``dataset.json["symtc_instance"]`` holds the ``Phase2Spec``: cutout, channels, the phase-1 label
  set it expects, the semantic scheme and the level-naming convention of the source.

Semantic schemes:

- ``spineps``: SPINEPS subregions; channels 41…49 (``labels.SPINEPS_PHASE2_CHANNELS``); the body is 49/50.
- ``spider``: SPIDER masks have no subregions. ``spider_to_spineps_semantic`` turns a SPIDER
  semantic mask (vertebra / disc / canal) into SPINEPS values: the *body* (49) is the vertebra voxels
  anterior to the spinal canal's anterior wall on the same superior–inferior row, the rest of the
  vertebra is posterior elements (41), discs 100, canal 61. Channels: body, posterior elements, disc,
  canal; the body centre is the centroid of the body part.

The training data itself is written by ``dataset_conversion.phase2_cutouts``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from nnunetv2_symtc.errors import InputError, InputFileError
from nnunetv2_symtc.instance.centres import SUPERIOR_INFERIOR_AXIS
from nnunetv2_symtc.instance.cutouts import Cutout, CutoutSpec, semantic_channels
from nnunetv2_symtc.io import PathLike
from nnunetv2_symtc.labels import (ARCUS, DISC, L5_ID, SPIDER_CANAL, SPIDER_DISC_OFFSET, SPIDER_MAX_LEVEL,
                                   SPIDER_PARTIAL_OFFSET, SPINAL_CANAL, SPINEPS_PHASE2_CHANNELS,
                                   SPINEPS_SEMANTIC_OPTIONAL_NAMES, VERTEBRAL_BODY, LabelMap, spider_semantic_map,
                                   spineps_semantic_map)

SPEC_KEY = "symtc_instance"
SCHEMES = ("spineps", "spider")
SPIDER_PHASE2_CHANNELS: Tuple[Tuple[int, ...], ...] = ((VERTEBRAL_BODY,), (ARCUS,), (DISC,), (SPINAL_CANAL,))
"""Phase-2 channels for SPIDER-derived semantics: body, posterior elements, disc, canal."""
SEMANTIC_CHANNEL_NAME = "noNorm"
"""nnU-Net channel name of the binary semantic channels (NoNormalization: used as given)."""
IMAGE_CHANNEL_NAME = "image"
DEFAULT_LOWEST_VERTEBRA = L5_ID


@dataclass(frozen=True)
class Phase2Spec:
    """Everything phase 2 needs to cut out and encode its input, stored in ``dataset.json``."""

    cutout: CutoutSpec
    scheme: str
    phase1_labels: Dict[str, int]
    with_image: bool = False
    lowest_vertebra: int = DEFAULT_LOWEST_VERTEBRA
    naming_convention: str = "lumbar field of view: the lowest vertebra is L5"
    channels: Tuple[Tuple[int, ...], ...] = field(default=())

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"phase-2 scheme {self.scheme!r} is not one of {SCHEMES}")
        if not self.channels:
            object.__setattr__(self, "channels", SPINEPS_PHASE2_CHANNELS if self.scheme == "spineps" else SPIDER_PHASE2_CHANNELS)

    @property
    def num_channels(self) -> int:
        return len(self.channels) + int(self.with_image)

    def channel_names(self) -> Dict[str, str]:
        names = {str(k): SEMANTIC_CHANNEL_NAME for k in range(len(self.channels))}
        if self.with_image:
            names[str(len(self.channels))] = IMAGE_CHANNEL_NAME
        return names

    def to_json(self) -> dict:
        return {"cutout": self.cutout.to_json(), "scheme": self.scheme, "phase1_labels": dict(self.phase1_labels),
                "channels": [list(c) for c in self.channels], "with_image": self.with_image,
                "lowest_vertebra": self.lowest_vertebra, "naming_convention": self.naming_convention}

    @classmethod
    def from_dataset_json(cls, dataset_json: dict, where: str = "dataset.json") -> "Phase2Spec":
        data = dataset_json.get(SPEC_KEY)
        if data is None:
            raise InputError(f"{where} has no {SPEC_KEY!r} record: not a phase-2 dataset made by "
                             "`symtc instance-dataset`")
        return cls(CutoutSpec.from_json(data["cutout"]), data["scheme"], dict(data["phase1_labels"]),
                   bool(data["with_image"]), int(data["lowest_vertebra"]), data["naming_convention"],
                   tuple(tuple(c) for c in data["channels"]))

    def encode(self, semantic: np.ndarray, cutout: Cutout, image: Optional[np.ndarray] = None) -> np.ndarray:
        """Phase-2 input ``(num_channels, *cutout shape)`` float32 from a PIR semantic (and image)."""
        channels = semantic_channels(cutout.take(semantic), self.channels)
        if self.with_image:
            if image is None:
                raise ValueError("this phase-2 model also takes the image, but none was given")
            channels = np.concatenate([channels, cutout.take(image.astype(np.float32), linear=True)[None]])
        return channels


def phase1_label_map(scheme: str, phase1_labels: Dict[str, int]) -> LabelMap:
    """The ``LabelMap`` of a phase-1 dataset's label set (its ``dataset.json`` ``labels``)."""
    if scheme == "spider":
        label_map = spider_semantic_map()
    else:
        optional = [v for v, name in SPINEPS_SEMANTIC_OPTIONAL_NAMES.items() if name in phase1_labels]
        label_map = spineps_semantic_map(optional)
    if label_map.dataset_json_labels() != {k: int(v) for k, v in phase1_labels.items()}:
        raise InputError(f"phase-1 labels {phase1_labels} are not the {scheme} semantic label set "
                         f"{label_map.dataset_json_labels()}")
    return label_map


def spider_to_spineps_semantic(spider_semantic: np.ndarray) -> np.ndarray:
    """SPIDER values (PIR) -> SPINEPS semantic values: body 49 / posterior elements 41 / disc 100 / canal 61.

    The body is the vertebra voxels anterior (smaller axis-2 index) to the canal's anterior wall on
    their superior–inferior row; rows without canal use the nearest row with canal; without any
    canal, the anterior half of the vertebra's extent on that row.
    """
    vertebra = ((spider_semantic >= 1) & (spider_semantic <= SPIDER_MAX_LEVEL)) | (
        (spider_semantic > SPIDER_PARTIAL_OFFSET) & (spider_semantic <= SPIDER_PARTIAL_OFFSET + SPIDER_MAX_LEVEL))
    disc = spider_semantic > SPIDER_DISC_OFFSET
    canal = spider_semantic == SPIDER_CANAL
    out = np.zeros(spider_semantic.shape, dtype=np.uint8)
    rows = spider_semantic.shape[SUPERIOR_INFERIOR_AXIS]
    ap = np.arange(spider_semantic.shape[2])
    canal_rows = canal.any(axis=(0, 2))
    if canal_rows.any():
        first_canal = np.where(canal, ap[None, None, :], np.iinfo(np.int64).max).min(axis=(0, 2))
        have = np.flatnonzero(canal_rows)
        wall = np.interp(np.arange(rows), have, first_canal[have].astype(np.float64))
    else:
        present = vertebra.any(axis=(0,))
        first = np.where(present, ap[None, :], ap.size).min(axis=1)
        last = np.where(present, ap[None, :], -1).max(axis=1)
        wall = (first + last + 1) / 2.0
    body = vertebra & (ap[None, None, :] < wall[None, :, None])
    out[vertebra] = ARCUS
    out[body] = VERTEBRAL_BODY
    out[disc] = DISC
    out[canal] = SPINAL_CANAL
    return out


def read_dataset_json(folder: PathLike) -> dict:
    """The ``dataset.json`` of an nnU-Net dataset or trained model folder."""
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise InputFileError(f"{path}: not found; is {folder} an nnU-Net dataset or trained model folder?")
    with open(path) as f:
        return json.load(f)
