"""Phase-2 training data: one nnU-Net case per vertebra, a cutout centred on its body centre.

- **Inputs** (``imagesTr/<case>_XXXX``): one binary channel per group of semantic values
  (``Phase2Spec.channels``), channel name ``noNorm`` so nnU-Net does not z-normalise them; with
  ``with_image`` the image, linearly resampled, is the last channel (z-scored as usual).
- **Target** (``labelsTr``): 0 background, 1 the vertebra above, 2 the centre vertebra, 3 the one
  below (``labels.PHASE2_LABELS``), on vertebra voxels (semantic 41–50) only.
- **Grid**: ``Phase2Spec.cutout`` (physical size, working spacing), PIR. Cutout voxels outside the
  source's field of view are 0 in every channel; ``source_cases.json`` records the padding.
- ``dataset.json["symtc_instance"]`` holds the ``Phase2Spec``: cutout, channels, the phase-1 label
  set it expects, the semantic scheme and the level-naming convention of the source.

Semantic schemes:

- ``spineps``: SPINEPS subregions; channels 41…49 (``labels.SPINEPS_PHASE2_CHANNELS``); the body is 49/50.
- ``spider``: SPIDER masks have no subregions. ``spider_to_spineps_semantic`` turns a SPIDER
  semantic mask (vertebra / disc / canal) into SPINEPS values: the *body* (49) is the vertebra voxels
  anterior to the spinal canal's anterior wall on the same superior–inferior row, the rest of the
  vertebra is posterior elements (41), discs 100, canal 61. Channels: body, posterior elements, disc,
  canal; the body centre is the centroid of the body part.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from nnunetv2_symtc.instance.centres import SUPERIOR_INFERIOR_AXIS
from nnunetv2_symtc.instance.cutouts import Cutout, CutoutSpec, make_cutout, semantic_channels
from nnunetv2_symtc.instance.labeling import vertebrae_top_to_bottom
from nnunetv2_symtc.io import CANONICAL_ORIENTATION, Geometry, PathLike, read_image
from nnunetv2_symtc.labels import (ARCUS, BODY_VALUES, DISC, L5_ID, PHASE2_ABOVE, PHASE2_BELOW, PHASE2_CENTRE,
                                   SPIDER_CANAL, SPIDER_DISC_OFFSET, SPIDER_MAX_LEVEL, SPIDER_PARTIAL_OFFSET,
                                   SPINAL_CANAL, SPINEPS_PHASE2_CHANNELS, SPINEPS_SEMANTIC_OPTIONAL_NAMES, VERTEBRA_INSTANCE_IDS, VERTEBRA_VALUES,
                                   VERTEBRAL_BODY, LabelMap, spider_level_to_vertebra_id, spider_semantic_map,
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
            raise ValueError(f"{where} has no {SPEC_KEY!r} record: not a phase-2 dataset made by "
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
        raise ValueError(f"phase-1 labels {phase1_labels} are not the {scheme} semantic label set "
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


def spider_instances(spider_mask: np.ndarray) -> np.ndarray:
    """SPIDER vertebra levels (1–25, partial 101–125) -> SPINEPS vertebra ids (L5 = 24 counted up)."""
    out = np.zeros(spider_mask.shape, dtype=np.uint8)
    for level in range(1, L5_ID + 1):
        out[(spider_mask == level) | (spider_mask == SPIDER_PARTIAL_OFFSET + level)] = spider_level_to_vertebra_id(level)
    return out


def body_centre(instance: np.ndarray, semantic: np.ndarray, vertebra_id: int) -> Optional[np.ndarray]:
    """Centroid (continuous index) of the vertebra's body voxels; ``None`` if it has no body in view."""
    coords = np.argwhere((instance == vertebra_id) & np.isin(semantic, BODY_VALUES))
    return coords.mean(axis=0) if len(coords) else None


@dataclass
class Phase2Case:
    """One phase-2 training case: ``inputs`` ``(C, *shape)``, ``target`` (classes 0–3), its cutout and record."""

    vertebra_id: int
    inputs: np.ndarray
    target: np.ndarray
    cutout: Cutout
    record: dict


def phase2_cases(semantic: np.ndarray, instance: np.ndarray, spacing_zyx: Sequence[float], spec: Phase2Spec,
                 image: Optional[np.ndarray] = None) -> Iterator[Phase2Case]:
    """Phase-2 cases of one PIR volume: one per vertebra with a body in view, top to bottom.

    ``semantic`` in SPINEPS values, ``instance`` with SPINEPS vertebra ids (other values ignored).
    Above/below are the neighbouring vertebrae of the instance mask (by body position).
    """
    vertebra_voxels = np.isin(semantic, VERTEBRA_VALUES)
    vertebrae = np.where(vertebra_voxels & np.isin(instance, VERTEBRA_INSTANCE_IDS), instance, 0)
    order = vertebrae_top_to_bottom(vertebrae, semantic, spacing_zyx)
    for position, vertebra_id in enumerate(order):
        centre = body_centre(vertebrae, semantic, vertebra_id)
        if centre is None:
            continue
        cutout = make_cutout(centre, semantic.shape, spacing_zyx, spec.cutout)
        ids = cutout.take(vertebrae)
        target = np.zeros(ids.shape, dtype=np.uint8)
        neighbours = {PHASE2_CENTRE: vertebra_id,
                      PHASE2_ABOVE: order[position - 1] if position > 0 else None,
                      PHASE2_BELOW: order[position + 1] if position + 1 < len(order) else None}
        for phase2_class, vid in neighbours.items():
            if vid is not None:
                target[ids == vid] = phase2_class
        record = {"vertebra": vertebra_id, "above": neighbours[PHASE2_ABOVE], "below": neighbours[PHASE2_BELOW],
                  **cutout.to_json()}
        yield Phase2Case(vertebra_id, spec.encode(semantic, cutout, image), target, cutout, record)


def cutout_geometry(cutout: Cutout, source: Geometry, spec: CutoutSpec) -> Geometry:
    """Geometry of a cutout grid: working spacing, the source's (PIR) direction, origin at voxel 0."""
    first = np.array([p[0] for p in cutout.position])
    return Geometry(tuple(spec.spacing_zyx), tuple(float(v) for v in source.index_to_world(first)), source.direction)


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceVolume:
    """One subject's volumes to derive phase-2 cases from (paths; read lazily)."""

    case: str
    subject: str
    semantic: Path
    instance: Path
    image: Optional[Path]
    scheme: str


def find_sources(root: PathLike, scheme: str) -> List[SourceVolume]:
    """SPINEPS/BIDS data (``find_cases`` of the SPINEPS converter) or a SPIDER root (``find_series``)."""
    if scheme == "spineps":
        from nnunetv2_symtc.dataset_conversion.spineps import find_cases
        cases, problems = find_cases(root)
        sources = [SourceVolume(c.case, c.subject, c.semantic, c.instance, c.image, scheme) for c in cases]
    elif scheme == "spider":
        from nnunetv2_symtc.dataset_conversion.spider import find_series
        series, problems = find_series(root)
        sources = [SourceVolume(s.name, str(s.pid), s.mask, s.mask, s.image, scheme) for s in series]
    else:
        raise ValueError(f"unknown source scheme {scheme!r}; choose one of {SCHEMES}")
    for p in problems:
        print(f"skipped: {p}")
    if not sources:
        raise ValueError(f"{root}: no usable {scheme} case found")
    return sources


def _read_pir(path: Path) -> Tuple[np.ndarray, Geometry]:
    from nnunetv2_symtc.dataset_conversion.writer import reoriented
    array, geometry = read_image(path)
    if array.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {array.shape}")
    return reoriented(array, geometry, CANONICAL_ORIENTATION)


def load_source(source: SourceVolume, with_image: bool) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Geometry]:
    """-> (SPINEPS semantic, SPINEPS vertebra ids, image or None, geometry), all PIR."""
    mask, geometry = _read_pir(source.semantic)
    if source.scheme == "spider":
        semantic, instance = spider_to_spineps_semantic(mask), spider_instances(mask)
    else:
        semantic = mask
        instance = _read_pir(source.instance)[0]
    if instance.shape != semantic.shape:
        raise ValueError(f"{source.instance}: shape {instance.shape} differs from {source.semantic} {semantic.shape}")
    image = None
    if with_image:
        if source.image is None:
            raise ValueError(f"case {source.case}: --with-image needs an image, none found")
        image, image_geometry = _read_pir(source.image)
        if image.shape != semantic.shape:
            raise ValueError(f"{source.image}: shape {image.shape} differs from its mask {semantic.shape}")
        if not np.isfinite(image).all():
            raise ValueError(f"{source.image}: contains NaN/infinite voxels")
    return semantic, instance, image, geometry


def default_phase1_labels(scheme: str, semantic_values: Sequence[int] = ()) -> Dict[str, int]:
    """The phase-1 label set a phase-2 dataset of ``scheme`` expects (SPINEPS: plus 50/52/53 when present)."""
    if scheme == "spider":
        return spider_semantic_map().dataset_json_labels()
    return spineps_semantic_map([v for v in SPINEPS_SEMANTIC_OPTIONAL_NAMES if v in set(semantic_values)]).dataset_json_labels()


def build_instance_dataset(root: PathLike, dataset_id: int, dataset_name: Optional[str] = None, *,
                           scheme: str = "spineps", cutout: Optional[CutoutSpec] = None, with_image: bool = False,
                           phase1_labels: Optional[Dict[str, int]] = None, lowest_vertebra: int = L5_ID,
                           overwrite: bool = False, raw_dir: Optional[PathLike] = None) -> Path:
    """Write the phase-2 nnU-Net dataset ``DatasetXXX_<name>`` derived from ``root``; returns its path.

    ``phase1_labels`` (default: the scheme's semantic label set, SPINEPS with 50/52/53 if the data
    has them) is recorded so that ``symtc predict`` can refuse a mismatched phase-1 model.
    """
    from nnunetv2_symtc.dataset_conversion.writer import (TRAIN, CaseResult, DatasetFolder, finish_dataset,
                                                          image_path, label_path, write_volume)
    cutout = cutout or CutoutSpec.spineps_default()
    sources = find_sources(root, scheme)
    results: List[CaseResult] = []
    values_seen = set()
    with DatasetFolder(dataset_id, dataset_name or f"{scheme.upper()}Instances", raw_dir, overwrite) as folder:
        encoder = Phase2Spec(cutout, scheme, {}, with_image, lowest_vertebra)
        for source in tqdm(sources, desc="phase-2 cutouts", unit="subject", disable=None):
            semantic, instance, image, geometry = load_source(source, with_image)
            values_seen |= set(int(v) for v in np.unique(semantic))
            for case in phase2_cases(semantic, instance, geometry.spacing_zyx, encoder, image):
                name = f"{source.case}_v{case.vertebra_id:02d}"
                grid = cutout_geometry(case.cutout, geometry, cutout)
                for channel, array in enumerate(case.inputs):
                    write_volume(image_path(folder.folder, TRAIN, name, channel), array, grid)
                write_volume(label_path(folder.folder, TRAIN, name), case.target, grid)
                record = {"source_case": source.case, "semantic": str(source.semantic), **case.record,
                          "geometry": {"spacing_zyx": grid.spacing_zyx, "origin_xyz": grid.origin_xyz,
                                       "direction": grid.direction}}
                results.append(CaseResult(name, TRAIN, source.subject, record=record))
        labels = phase1_labels or default_phase1_labels(scheme, sorted(values_seen))
        spec = Phase2Spec(cutout, scheme, labels, with_image, lowest_vertebra)
        target_map = LabelMap("phase2-instance", (("above", (PHASE2_ABOVE,)), ("centre", (PHASE2_CENTRE,)),
                                                  ("below", (PHASE2_BELOW,))))
        return finish_dataset(folder, results=results, problems=[], label_map=target_map,
                              channel_names=spec.channel_names(), source=f"{scheme}-instance", source_root=root,
                              options={"cutout": cutout.to_json(), "with_image": with_image},
                              reverse_map="phase-2 classes: above/centre/below vertebra of the cutout centre",
                              orientation=CANONICAL_ORIENTATION, extra_json={SPEC_KEY: spec.to_json()})


def read_dataset_json(folder: PathLike) -> dict:
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise OSError(f"{path}: not found; is {folder} an nnU-Net dataset or trained model folder?")
    with open(path) as f:
        return json.load(f)
