"""Every label convention this package reads or writes, and the maps between them.

Nothing else in the package hard-codes label numbers. Conventions (REFERENCE §3–§5):

- **SPIDER**: vertebrae 1–25 numbered *from the bottom* (1 = lowest lumbar, usually L5); 100 spinal
  canal; 101–125 partially visible vertebrae (100 + k); 201–225 discs (200 + the vertebra above,
  so 201 = L5/S1). The sacrum is unlabelled.
- **SPINEPS semantic** (subregions): 41–49 vertebra parts, 60 cord, 61 canal, 62 endplate,
  100 disc, 26 sacrum; newer versions add 50 (corpus), 52/53 (superior/inferior endplate).
- **SPINEPS instance**: vertebra ids 1–28 (C1–C7 = 1–7, T1–T12 = 8–19, T13 = 28, L1–L6 = 20–25,
  sacrum 26); disc 100 + X and endplate 200 + X, X = the vertebra directly above the disc space.
- **SSMSpine**: 0 background, 1–6 L1…S1, 7–11 discs L1/L2…L5/S1.
- **nnU-Net**: consecutive classes 0…n, optional ignore label n + 1. ``LabelMap`` maps a source
  convention onto them and back.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

# --------------------------------------------------------------------------------------------
# SPINEPS semantic (subregion) labels
# --------------------------------------------------------------------------------------------
ARCUS, SPINOUS_PROCESS = 41, 42
COSTAL_PROCESS_LEFT, COSTAL_PROCESS_RIGHT = 43, 44
SUPERIOR_ARTICULAR_LEFT, SUPERIOR_ARTICULAR_RIGHT = 45, 46
INFERIOR_ARTICULAR_LEFT, INFERIOR_ARTICULAR_RIGHT = 47, 48
VERTEBRAL_BODY = 49
VERTEBRA_CORPUS = 50
ENDPLATE_SUPERIOR, ENDPLATE_INFERIOR = 52, 53
SPINAL_CORD, SPINAL_CANAL, ENDPLATE = 60, 61, 62
DISC = 100
SACRUM = 26

SPINEPS_SEMANTIC_NAMES: Dict[int, str] = {
    ARCUS: "arcus",
    SPINOUS_PROCESS: "spinous_process",
    COSTAL_PROCESS_LEFT: "costal_process_left",
    COSTAL_PROCESS_RIGHT: "costal_process_right",
    SUPERIOR_ARTICULAR_LEFT: "superior_articular_left",
    SUPERIOR_ARTICULAR_RIGHT: "superior_articular_right",
    INFERIOR_ARTICULAR_LEFT: "inferior_articular_left",
    INFERIOR_ARTICULAR_RIGHT: "inferior_articular_right",
    VERTEBRAL_BODY: "vertebral_body",
    SPINAL_CORD: "spinal_cord",
    SPINAL_CANAL: "spinal_canal",
    ENDPLATE: "endplate",
    DISC: "disc",
    SACRUM: "sacrum",
}
"""The fixed SPINEPS semantic table (REFERENCE §5), in nnU-Net class order."""

SPINEPS_SEMANTIC_OPTIONAL_NAMES: Dict[int, str] = {
    VERTEBRA_CORPUS: "vertebra_corpus",
    ENDPLATE_SUPERIOR: "endplate_superior",
    ENDPLATE_INFERIOR: "endplate_inferior",
}
"""Labels of newer SPINEPS versions, added to a dataset only when present."""

VERTEBRA_SUBREGIONS: Tuple[int, ...] = tuple(range(ARCUS, VERTEBRAL_BODY + 1))
"""The nine subregions 41–49 that make up one vertebra."""
ENDPLATE_VALUES: Tuple[int, ...] = (ENDPLATE, ENDPLATE_SUPERIOR, ENDPLATE_INFERIOR)
LEFT_RIGHT_PAIRS: Tuple[Tuple[int, int], ...] = (
    (COSTAL_PROCESS_LEFT, COSTAL_PROCESS_RIGHT),
    (SUPERIOR_ARTICULAR_LEFT, SUPERIOR_ARTICULAR_RIGHT),
    (INFERIOR_ARTICULAR_LEFT, INFERIOR_ARTICULAR_RIGHT),
)
"""SPINEPS semantic labels that a left–right mirror swaps."""

# --------------------------------------------------------------------------------------------
# SPINEPS instance labels (vertebra ids, discs 100 + X, endplates 200 + X)
# --------------------------------------------------------------------------------------------
SPINEPS_DISC_OFFSET = 100
SPINEPS_ENDPLATE_OFFSET = 200
SACRUM_ID = 26
T12_ID = 19
L1_ID, L3_ID, L5_ID, L6_ID = 20, 22, 24, 25
T13_ID = 28

_CERVICAL = {i: f"C{i}" for i in range(1, 8)}
_THORACIC = {7 + i: f"T{i}" for i in range(1, 13)}
_LUMBAR = {T12_ID + i: f"L{i}" for i in range(1, 7)}
VERTEBRA_NAMES: Dict[int, str] = {**_CERVICAL, **_THORACIC, T13_ID: "T13", **_LUMBAR, SACRUM_ID: "S1"}
"""SPINEPS vertebra id -> level name."""

VERTEBRA_IDS_TOP_TO_BOTTOM: Tuple[int, ...] = (tuple(range(1, T12_ID + 1)) + (T13_ID,) + tuple(range(L1_ID, L6_ID + 1))
                                                + (SACRUM_ID,))
"""Every SPINEPS vertebra id in anatomical order, cranial first (T13 and L6 are rare variants)."""


def instance_value_name(value: int) -> str:
    """Name of a SPINEPS instance value: ``'L1'``, ``'L1/L2 disc'``... (``'disc below L1'``), ``'L1 endplate'``."""
    value = int(value)
    if value in VERTEBRA_NAMES:
        return VERTEBRA_NAMES[value]
    if value - SPINEPS_DISC_OFFSET in VERTEBRA_NAMES:
        return f"disc below {VERTEBRA_NAMES[value - SPINEPS_DISC_OFFSET]}"
    if value - SPINEPS_ENDPLATE_OFFSET in VERTEBRA_NAMES:
        return f"endplates at disc below {VERTEBRA_NAMES[value - SPINEPS_ENDPLATE_OFFSET]}"
    raise ValueError(f"{value} is not a SPINEPS instance value")


def is_spineps_instance_value(value: int) -> bool:
    """True for 0, vertebra ids 1–28, discs 101–128 and endplates 201–228."""
    return value == 0 or any(1 <= value - off <= 28 for off in (0, SPINEPS_DISC_OFFSET, SPINEPS_ENDPLATE_OFFSET))


def ids_upward_from(lowest_id: int, count: int) -> List[int]:
    """``count`` vertebra ids from ``lowest_id`` upwards along the standard sequence
    (``vertebra_id_above``): L5 = 24, L4 = 23, …; L6 = 25 -> L5 = 24; T13 = 28 -> T12 = 19; L1 = 20 -> T12 = 19.

    This is the naming rule counting from a known lowest vertebra (from the sacrum: L5).
    ``ValueError`` when fewer than ``count`` vertebrae exist above and including ``lowest_id``.
    """
    ids = [int(lowest_id)]
    while len(ids) < count:
        above = vertebra_id_above(ids[-1])
        if above is None:
            raise ValueError(f"cannot name {count} vertebrae upwards from id {lowest_id}: only {len(ids)} exist")
        ids.append(above)
    return ids[:count]


def levels_up_to_c1(lowest_id: int) -> int:
    """How many vertebrae ``ids_upward_from(lowest_id, ...)`` can name (e.g. 24 for L5, 25 for L6, 20 for T13)."""
    count, current = 1, vertebra_id_above(lowest_id)
    while current is not None:
        count, current = count + 1, vertebra_id_above(current)
    return count


# --------------------------------------------------------------------------------------------
# SPIDER labels
# --------------------------------------------------------------------------------------------
SPIDER_MAX_LEVEL = 25
SPIDER_CANAL = 100
SPIDER_PARTIAL_OFFSET = 100
SPIDER_DISC_OFFSET = 200


def is_spider_value(value: int) -> bool:
    """True for 0, vertebrae 1–25, canal 100, partial vertebrae 101–125 and discs 201–225."""
    return (value == 0 or value == SPIDER_CANAL or 1 <= value <= SPIDER_MAX_LEVEL
            or 1 <= value - SPIDER_PARTIAL_OFFSET <= SPIDER_MAX_LEVEL
            or 1 <= value - SPIDER_DISC_OFFSET <= SPIDER_MAX_LEVEL)


def spider_level_to_vertebra_id(level: int) -> int:
    """SPIDER bottom-up level (1 = lowest lumbar) -> SPINEPS id, assuming five lumbar vertebrae.

    ``1 -> 24 (L5)``, ``5 -> 20 (L1)``, ``6 -> 19 (T12)``, … ``24 -> 1 (C1)``.
    """
    if not 1 <= level <= L5_ID:
        raise ValueError(f"SPIDER level {level} has no SPINEPS id (valid: 1-{L5_ID})")
    return L5_ID + 1 - level


def vertebra_id_to_spider_level(vertebra_id: int) -> int:
    """Inverse of ``spider_level_to_vertebra_id`` (ids 1–24 only)."""
    if not 1 <= vertebra_id <= L5_ID:
        raise ValueError(f"vertebra id {vertebra_id} has no SPIDER level (valid: 1-{L5_ID})")
    return L5_ID + 1 - vertebra_id


def spider_levels(vertebra_ids: Iterable[int]) -> Dict[int, int]:
    """SPIDER level of each SPINEPS vertebra id of a spine in which ``vertebra_ids`` are present.

    SPIDER counts vertebrae upward from the lowest lumbar vertebra (level 1), so a transitional
    vertebra shifts the count: with an L6 (25) present, L6 = 1, L5 = 2, … T12 = 7; with a T13 (28),
    L5 … L1 = 1 … 5, T13 = 6 (it sits among the thoracics, counted like any other vertebra), T12 = 7.
    Without either, ``vertebra_id_to_spider_level``. The sacrum (26) has no level and is left out.
    Raises ``ValueError`` for values that are not vertebra ids and for levels beyond 25.
    """
    ids = {int(v) for v in vertebra_ids} - {SACRUM_ID}
    unknown = sorted(ids - set(VERTEBRA_IDS_TOP_TO_BOTTOM))
    if unknown:
        raise ValueError(f"{unknown} are not SPINEPS vertebra ids (valid: 1-28)")
    sequence = [v for v in VERTEBRA_IDS_TOP_TO_BOTTOM if v != SACRUM_ID and (v not in (T13_ID, L6_ID) or v in ids)]
    levels = {v: len(sequence) - position for position, v in enumerate(sequence)}
    beyond = sorted(v for v in ids if levels[v] > SPIDER_MAX_LEVEL)
    if beyond:
        raise ValueError(f"vertebrae {beyond} would get SPIDER levels above {SPIDER_MAX_LEVEL} (both a T13 and an L6)")
    return {v: levels[v] for v in ids}


def spider_value_name(value: int) -> str:
    """Name of a SPIDER value: ``'vertebra 1 (L5)'``, ``'spinal canal'``, ``'partial vertebra 3 (L3)'``,
    ``'disc 1 (L5/S1)'``; level names assume five lumbar vertebrae. ``ValueError`` if not SPIDER."""
    value = int(value)
    if not is_spider_value(value) or value == 0:
        raise ValueError(f"{value} is not a SPIDER label value")
    if value == SPIDER_CANAL:
        return "spinal canal"
    level = value % 100

    def level_name(k: int) -> str:
        return VERTEBRA_NAMES[spider_level_to_vertebra_id(k)] if k <= L5_ID else f"level {k}"

    if value > SPIDER_DISC_OFFSET:
        below = "S1" if level == 1 else level_name(level - 1)
        return f"disc {level} ({level_name(level)}/{below})"
    kind = "partial vertebra" if value > SPIDER_PARTIAL_OFFSET else "vertebra"
    return f"{kind} {level} ({level_name(level)})"


def values_cut_by_field_of_view(mask: np.ndarray) -> List[int]:
    """Non-zero values of a PIR label array (z, y, x) = (R-L, S-I, A-P) on its superior, inferior,
    anterior or posterior faces: the structures a sagittal field of view cuts (SPIDER's "partially
    visible"). The left/right faces are ignored: thick sagittal stacks often clip lateral processes."""
    faces = np.concatenate([mask[:, 0].ravel(), mask[:, -1].ravel(), mask[:, :, 0].ravel(), mask[:, :, -1].ravel()])
    return [int(v) for v in np.unique(faces) if v]


def spider_mask_from_parts(vertebra: np.ndarray, disc_above: np.ndarray, canal: np.ndarray,
                           partial_ids: Iterable[int] = ()) -> np.ndarray:
    """SPIDER label array (uint16) from SPINEPS ids, all arrays of one shape.

    ``vertebra``: SPINEPS vertebra id (1–25, 28) of every bone voxel, 0 elsewhere (the sacrum, 26,
    stays unlabelled as in SPIDER); ``disc_above``: id of the vertebra above each disc voxel;
    ``canal``: bool mask of the spinal canal (cord included). Levels count upward from the lowest
    lumbar vertebra present (``spider_levels``: an L6 or a T13 shifts them). Vertebrae in
    ``partial_ids`` (cut by the field of view) get 100 + level. Raises ``ValueError`` for ids
    without a SPIDER level.
    """
    out = np.zeros(vertebra.shape, dtype=np.uint16)
    out[canal] = SPIDER_CANAL
    partial = {int(p) for p in partial_ids}
    vertebra_ids = [int(v) for v in np.unique(vertebra) if v]
    disc_ids = [int(v) for v in np.unique(disc_above) if v]
    levels = spider_levels(vertebra_ids + disc_ids)
    for vid in vertebra_ids:
        if vid != SACRUM_ID:
            out[vertebra == vid] = levels[vid] + (SPIDER_PARTIAL_OFFSET if vid in partial else 0)
    for vid in disc_ids:
        out[disc_above == vid] = SPIDER_DISC_OFFSET + levels[vid]
    return out


# --------------------------------------------------------------------------------------------
# SSMSpine labels
# --------------------------------------------------------------------------------------------
SSMSPINE_VERTEBRAE: Tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5", "S1")
SSMSPINE_DISCS: Tuple[str, ...] = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
SSMSPINE_NAMES: Dict[int, str] = {0: "background",
                                  **{i + 1: n for i, n in enumerate(SSMSPINE_VERTEBRAE)},
                                  **{i + 7: n for i, n in enumerate(SSMSPINE_DISCS)}}
"""SSMSpine value -> name (0–11)."""


# --------------------------------------------------------------------------------------------
# nnU-Net consecutive classes <-> source values
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelMap:
    """Map between a source label convention and nnU-Net's consecutive classes.

    ``classes[i]`` is nnU-Net class ``i + 1``: a name and the source values mapped onto it (the
    first one is what ``decode`` writes back). ``ignore_values`` go to nnU-Net's ignore label
    (``len(classes) + 1``); ``background_values`` go to 0. Any other value is an error.
    """

    scheme: str
    classes: Tuple[Tuple[str, Tuple[int, ...]], ...]
    ignore_values: Tuple[int, ...] = ()
    background_values: Tuple[int, ...] = ()
    notes: str = ""
    _lut: Dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        lut = {0: 0}
        for v in self.background_values:
            lut[int(v)] = 0
        for index, (name, values) in enumerate(self.classes, start=1):
            for v in values:
                if int(v) in lut:
                    raise ValueError(f"source value {v} is mapped twice in label map {self.scheme!r}")
                lut[int(v)] = index
        for v in self.ignore_values:
            if int(v) in lut:
                raise ValueError(f"source value {v} is both a class and ignored in {self.scheme!r}")
            lut[int(v)] = self.ignore_label
        object.__setattr__(self, "_lut", lut)

    @property
    def num_classes(self) -> int:
        """Number of nnU-Net classes including background (the ignore label excluded)."""
        return len(self.classes) + 1

    @property
    def ignore_label(self) -> Optional[int]:
        """nnU-Net's ignore label (max class + 1), or ``None`` if nothing is ignored."""
        return self.num_classes if self.ignore_values else None

    def dataset_json_labels(self) -> Dict[str, int]:
        """The ``labels`` entry of nnU-Net's ``dataset.json``."""
        labels = {"background": 0, **{name: i for i, (name, _) in enumerate(self.classes, start=1)}}
        if self.ignore_label is not None:
            labels["ignore"] = self.ignore_label
        return labels

    def unknown_values(self, source: np.ndarray) -> List[int]:
        """Source values present in ``source`` that this map does not know (sorted)."""
        return sorted(int(v) for v in np.unique(source) if int(v) not in self._lut)

    def encode(self, source: np.ndarray) -> np.ndarray:
        """Source label array -> nnU-Net class array (uint8); ``ValueError`` lists unknown values."""
        values, inverse = np.unique(source, return_inverse=True)
        unknown = [int(v) for v in values if int(v) not in self._lut]
        if unknown:
            raise ValueError(f"label values {unknown} are not part of the {self.scheme!r} convention")
        mapped = np.array([self._lut[int(v)] for v in values], dtype=np.uint8)
        return mapped[inverse.reshape(source.shape)]

    def decode(self, classes: np.ndarray) -> np.ndarray:
        """nnU-Net class array -> source values (the first source value of each class).

        The ignore label decodes to 0. Exact inverse of ``encode`` whenever every class has a
        single source value.
        """
        lut = np.zeros(max(self.num_classes + 1, int(classes.max(initial=0)) + 1), dtype=np.int32)
        for index, (_, values) in enumerate(self.classes, start=1):
            lut[index] = values[0]
        if int(classes.max(initial=0)) > self.num_classes:
            raise ValueError(f"class {int(classes.max())} does not exist in label map {self.scheme!r}")
        out = lut[classes.astype(np.int64)]
        return out.astype(np.uint16 if out.max(initial=0) > 255 else np.uint8)

    def to_json(self) -> dict:
        return {"scheme": self.scheme,
                "classes": [{"name": n, "class": i, "source_values": list(v)}
                            for i, (n, v) in enumerate(self.classes, start=1)],
                "ignore_values": list(self.ignore_values),
                "background_values": list(self.background_values),
                "notes": self.notes}

    @classmethod
    def from_json(cls, data: dict) -> "LabelMap":
        classes = tuple((c["name"], tuple(c["source_values"])) for c in sorted(data["classes"], key=lambda c: c["class"]))
        return cls(data["scheme"], classes, tuple(data.get("ignore_values", ())),
                   tuple(data.get("background_values", ())), data.get("notes", ""))

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=2)

    @classmethod
    def load(cls, path) -> "LabelMap":
        with open(path) as f:
            return cls.from_json(json.load(f))


def _single(pairs: Iterable[Tuple[str, int]]) -> Tuple[Tuple[str, Tuple[int, ...]], ...]:
    return tuple((name, (value,)) for name, value in pairs)


def spineps_semantic_map(optional_values: Sequence[int] = ()) -> LabelMap:
    """SPINEPS subregions -> one nnU-Net class per label of the fixed table, plus ``optional_values``
    (any of 50, 52, 53) appended in that order. Round-trips exactly."""
    extra = [v for v in SPINEPS_SEMANTIC_OPTIONAL_NAMES if v in set(optional_values)]
    unknown = sorted(set(optional_values) - set(SPINEPS_SEMANTIC_OPTIONAL_NAMES))
    if unknown:
        raise ValueError(f"{unknown} are not optional SPINEPS semantic labels (50, 52, 53)")
    pairs = [(n, v) for v, n in SPINEPS_SEMANTIC_NAMES.items()] + [(SPINEPS_SEMANTIC_OPTIONAL_NAMES[v], v) for v in extra]
    return LabelMap("spineps-semantic", _single(pairs))


def ssmspine_map() -> LabelMap:
    """SSMSpine 0–11 -> nnU-Net classes 0–11 (identity), named L1…S1 and L1/L2…L5/S1."""
    return LabelMap("ssmspine", _single((n, v) for v, n in SSMSPINE_NAMES.items() if v))


# --------------------------------------------------------------------------------------------
# SPIDER -> nnU-Net label maps
# --------------------------------------------------------------------------------------------
SPIDER_PARTIAL_CHOICES: Tuple[str, ...] = ("vertebra", "level", "ignore", "background")
"""What partially visible SPIDER vertebrae (101–125) become: their vertebra class (``vertebra`` in
the semantic scheme, ``level`` in the levels scheme: the same thing), nnU-Net's ignore label, or 0."""


def _spider_partial_values(partial: str, scheme: str) -> Tuple[Tuple[int, ...], Tuple[int, ...], bool]:
    """-> (ignore values, background values, merge into vertebra classes) for a ``partial`` choice."""
    if partial not in SPIDER_PARTIAL_CHOICES:
        raise ValueError(f"partial={partial!r} for the SPIDER {scheme} scheme; choose one of {SPIDER_PARTIAL_CHOICES}")
    partials = tuple(SPIDER_PARTIAL_OFFSET + k for k in range(1, SPIDER_MAX_LEVEL + 1))
    if partial == "ignore":
        return partials, (), False
    if partial == "background":
        return (), partials, False
    return (), (), True


def spider_semantic_map(partial: str = "vertebra") -> LabelMap:
    """SPIDER -> 3 classes: ``vertebra`` (1–25), ``disc`` (201–225), ``spinal_canal`` (100).

    ``partial`` decides what 101–125 become (``vertebra``/``level``: the vertebra class; ``ignore``;
    ``background``). Not reversible value by value: ``decode`` writes 1 for every vertebra and 201
    for every disc; ``dataset_conversion.reverse.spider_semantic_to_source`` numbers them bottom-up.
    """
    ignore, background, merge = _spider_partial_values(partial, "semantic")
    levels = range(1, SPIDER_MAX_LEVEL + 1)
    vertebrae = tuple(levels) + (tuple(SPIDER_PARTIAL_OFFSET + k for k in levels) if merge else ())
    classes = (("vertebra", vertebrae),
               ("disc", tuple(SPIDER_DISC_OFFSET + k for k in levels)),
               ("spinal_canal", (SPIDER_CANAL,)))
    return LabelMap("spider-semantic", classes, ignore, background,
                    notes=f"partially visible vertebrae (101-125): {partial}; mapped back approximately: "
                          "vertebrae (separated between the discs) and discs are numbered bottom-up")


def spider_levels_map(max_level: int = SPIDER_MAX_LEVEL, partial: str = "level") -> LabelMap:
    """SPIDER -> one class per level (SymTC style): ``vertebra_1 … vertebra_N``, ``disc_1 … disc_N``
    (disc k = 200 + k, below vertebra k) and ``spinal_canal``; N = ``max_level``, counted from the
    bottom as SPIDER does. Values above ``max_level`` are unknown (an error).

    ``partial``: 100 + k becomes class ``vertebra_k`` (``level``/``vertebra``; decodes to k), the
    ignore label, or background. Every other value round-trips exactly.
    """
    if not 1 <= max_level <= SPIDER_MAX_LEVEL:
        raise ValueError(f"max_level={max_level}; SPIDER levels run 1-{SPIDER_MAX_LEVEL}")
    ignore, background, merge = _spider_partial_values(partial, "levels")
    levels = range(1, max_level + 1)
    if not merge:  # partial vertebrae above max_level are unknown like full ones
        ignore = tuple(v for v in ignore if v - SPIDER_PARTIAL_OFFSET <= max_level)
        background = tuple(v for v in background if v - SPIDER_PARTIAL_OFFSET <= max_level)
    classes = tuple((f"vertebra_{k}", (k,) + ((SPIDER_PARTIAL_OFFSET + k,) if merge else ())) for k in levels)
    classes += tuple((f"disc_{k}", (SPIDER_DISC_OFFSET + k,)) for k in levels)
    classes += (("spinal_canal", (SPIDER_CANAL,)),)
    return LabelMap("spider-levels", classes, ignore, background,
                    notes=f"levels 1-{max_level} counted from the bottom; partially visible vertebrae "
                          f"(101-125): {partial}")


# --------------------------------------------------------------------------------------------
# Two-phase (SPINEPS-style) instance segmentation
# --------------------------------------------------------------------------------------------
VERTEBRA_VALUES: Tuple[int, ...] = VERTEBRA_SUBREGIONS + (VERTEBRA_CORPUS,)
"""Semantic values whose voxels belong to a vertebra instance (41–49, 50)."""
BODY_VALUES: Tuple[int, ...] = (VERTEBRAL_BODY, VERTEBRA_CORPUS)
"""Semantic values that make up a vertebral body (where phase-2 cutouts are centred)."""

PHASE2_ABOVE, PHASE2_CENTRE, PHASE2_BELOW = 1, 2, 3
PHASE2_LABELS: Dict[str, int] = {"background": 0, "above": PHASE2_ABOVE, "centre": PHASE2_CENTRE,
                                 "below": PHASE2_BELOW}
"""Phase-2 target classes: the vertebra above the cutout's centre vertebra, the centre one, the one below."""
PHASE2_SLOT_OFFSETS: Dict[int, int] = {PHASE2_ABOVE: -1, PHASE2_CENTRE: 0, PHASE2_BELOW: 1}
"""Phase-2 class -> position relative to the centre vertebra (counted top to bottom)."""

SPINEPS_PHASE2_CHANNELS: Tuple[Tuple[int, ...], ...] = tuple((v,) for v in VERTEBRA_SUBREGIONS)
"""Phase-2 input channels for SPINEPS semantic masks: one binary channel per subregion 41–49
(SPINEPS's one-hot input without its background channel, which is implied)."""

VERTEBRA_INSTANCE_IDS: Tuple[int, ...] = tuple(v for v in VERTEBRA_IDS_TOP_TO_BOTTOM if v != SACRUM_ID)
"""Mobile vertebra ids (no sacrum), cranial first."""


def vertebra_id_above(vertebra_id: int) -> Optional[int]:
    """The id of the vertebra directly above ``vertebra_id`` in the standard sequence without the
    T13/L6 variants (C2 -> C1, L1 -> T12, T13 -> T12, L6 -> L5, sacrum -> L5); ``None`` for C1."""
    variants = {T13_ID: T12_ID, L6_ID: L5_ID}
    if int(vertebra_id) in variants:
        return variants[int(vertebra_id)]
    order = [v for v in VERTEBRA_IDS_TOP_TO_BOTTOM if v not in variants]
    if int(vertebra_id) not in order:
        raise ValueError(f"{vertebra_id} is not a SPINEPS vertebra id (valid: 1-28)")
    position = order.index(int(vertebra_id))
    return order[position - 1] if position > 0 else None
