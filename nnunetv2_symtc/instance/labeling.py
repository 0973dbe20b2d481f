"""Post-processing of a vertebra-instance map: clean-up, level naming, discs and endplates.

Arrays are PIR (axis 1 grows towards inferior); spacing in mm, array order. Rules (REFERENCE §5):

- **Fragments** (``absorb_fragments``). Before naming, an instance far smaller than its neighbours
  is merged into the vertebra it touches most, or dropped: a fragment never takes a level.
- **Naming.** The user's ``lowest_vertebra`` wins; otherwise, with the sacrum in view, the lowest
  vertebra above it is L5 (24); otherwise the source dataset's convention. Names count upwards along
  the standard sequence (L5 = 24, L4 = 23, … L1 = 20, T12 = 19; above L6 = 25 comes L5, above
  T13 = 28 comes T12).
- **Discs.** Each disc component is ``100 + X``, X = the vertebra directly above it.
- **Endplates** (semantic 62, or 52/53). Each endplate voxel belongs to its nearest vertebra V. On
  V's lower side it is ``200 + V``; on V's upper side ``200 + (vertebra above V)``: the lower
  endplate of X and the upper endplate of the vertebra below X both get ``200 + X``, even when the
  disc is out of view. The sacrum gets no endplate label of its own (its upper endplate is that
  of the disc above it; anything below its centre is left unlabelled).
- "The vertebra above V" is the neighbour above V in the map when there is one, otherwise the
  standard sequence (``labels.vertebra_id_above``).
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from nnunetv2_symtc.instance.centres import FULL_CONNECTIVITY, SUPERIOR_INFERIOR_AXIS, bounding_box
from nnunetv2_symtc.labels import (BODY_VALUES, DISC, ENDPLATE, ENDPLATE_INFERIOR, ENDPLATE_SUPERIOR, ENDPLATE_VALUES,
                                   L1_ID, L5_ID, SACRUM, SACRUM_ID, SPIDER_CANAL, SPIDER_DISC_OFFSET, SPIDER_MAX_LEVEL,
                                   SPIDER_PARTIAL_OFFSET, SPINAL_CANAL, SPINAL_CORD, SPINEPS_DISC_OFFSET,
                                   SPINEPS_ENDPLATE_OFFSET, VERTEBRA_IDS_TOP_TO_BOTTOM, VERTEBRA_INSTANCE_IDS,
                                   T13_ID, VERTEBRA_NAMES, VERTEBRA_VALUES, ids_upward_from, levels_up_to_c1,
                                   spider_levels, values_cut_by_field_of_view, vertebra_id_above)

MIN_SACRUM_VOXELS = 30


def _centroids_si(instance: np.ndarray, semantic: np.ndarray, spacing_zyx: Sequence[float]) -> Dict[int, float]:
    """Superior–inferior position (mm) of each instance's body centroid (whole instance if bodiless)."""
    box = bounding_box(instance > 0)
    if box is None:
        return {}
    flat = instance[box].astype(np.int64).ravel()
    rows = np.arange(box[SUPERIOR_INFERIOR_AXIS].start, box[SUPERIOR_INFERIOR_AXIS].stop)
    shape = tuple(s.stop - s.start for s in box)
    si = np.broadcast_to((rows * spacing_zyx[SUPERIOR_INFERIOR_AXIS]).reshape(1, -1, 1), shape).ravel()
    body = np.isin(semantic[box], BODY_VALUES).ravel()
    all_count = np.bincount(flat)
    all_sum = np.bincount(flat, weights=si)
    body_count = np.bincount(flat[body], minlength=all_count.size)
    body_sum = np.bincount(flat[body], weights=si[body], minlength=all_count.size)
    return {int(v): float(body_sum[v] / body_count[v] if body_count[v] else all_sum[v] / all_count[v])
            for v in np.flatnonzero(all_count[1:]) + 1}


def vertebrae_top_to_bottom(instance: np.ndarray, semantic: np.ndarray, spacing_zyx: Sequence[float],
                            sacrum_id: Optional[int] = SACRUM_ID) -> List[int]:
    """Vertebra ids present in ``instance`` (``sacrum_id`` excluded), ordered by body position, top first."""
    centres = _centroids_si(instance, semantic, spacing_zyx)
    return sorted((v for v in centres if v != sacrum_id), key=centres.get)


def clean_instances(instance: np.ndarray, semantic: np.ndarray) -> Tuple[np.ndarray, Dict[str, int]]:
    """Mask instances by the semantic vertebra voxels and give orphan components to their neighbour.

    Orphans are the vertebra voxels no instance owns plus every component of an instance apart from
    its largest. Each orphan component goes to the instance it touches most (26-connectivity) or is
    deleted when it touches none. Returns the cleaned map and voxel counts.
    """
    vertebra = np.isin(semantic, VERTEBRA_VALUES)
    out = np.where(vertebra, instance, 0).astype(instance.dtype)
    report = {"masked_by_semantic": int(((instance > 0) & ~vertebra).sum()), "orphans_reassigned": 0, "orphans_deleted": 0}
    box = bounding_box(vertebra)
    if box is None:
        return out, report
    view, vert = out[box], vertebra[box]
    orphan = vert & (view == 0)
    for v, sub in enumerate(ndimage.find_objects(view), start=1):
        if sub is None:
            continue
        components, count = ndimage.label(view[sub] == v, FULL_CONNECTIVITY)
        if count > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            stray = (components > 0) & (components != int(np.argmax(sizes)))
            view[sub][stray] = 0
            orphan[sub] |= stray
    components, count = ndimage.label(orphan, FULL_CONNECTIVITY)
    for label, sub in enumerate(ndimage.find_objects(components), start=1):
        grown = _grown(sub)
        piece = components[grown] == label
        neighbours = _touching_ids(view[grown], piece)
        if neighbours.size:
            view[grown][piece] = np.bincount(neighbours).argmax()
            report["orphans_reassigned"] += int(piece.sum())
        else:
            report["orphans_deleted"] += int(piece.sum())
    return out, report


def _grown(box: Tuple[slice, ...]) -> Tuple[slice, ...]:
    """``box`` grown by one voxel on every side (clipped at 0; numpy clips the upper end)."""
    return tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)


def _touching_ids(labels: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """Non-zero values of ``labels`` in the 26-connected ring around ``piece`` (bool, same shape), one per voxel."""
    ring = ndimage.binary_dilation(piece, FULL_CONNECTIVITY) & ~piece
    neighbours = labels[ring]
    return neighbours[neighbours > 0]


FRAGMENT_FRACTION = 0.25
"""An instance below this fraction of its neighbours' median volume is a fragment, not a vertebra."""


def absorb_fragments(instance: np.ndarray, semantic: np.ndarray, spacing_zyx: Sequence[float],
                     min_fraction: float = FRAGMENT_FRACTION, neighbours_per_side: int = 2
                     ) -> Tuple[np.ndarray, List[Dict[str, object]]]:
    """Merge instances far smaller than a vertebra into the vertebra they touch most, before naming.

    ``instance`` holds numbered candidates (PIR, any ids but the sacrum's). An instance is a
    fragment when its volume (mm³) is below ``min_fraction`` x the median volume of up to
    ``neighbours_per_side`` instances above and below it (ordered by body position). A fragment
    goes to the non-fragment instance it touches most (26-connectivity) or is dropped when it
    touches none. An instance touching the superior or inferior face of the volume is a vertebra
    cut by the field of view and is kept. Returns the new map and one record per small instance
    (``instance``, ``voxels``, ``ml``, ``neighbour_median_ml``, ``action``: ``merged``/``dropped``/
    ``kept: cut by the field of view``, ``into``: the receiving instance or ``None``).
    """
    out = instance.copy()
    order = vertebrae_top_to_bottom(out, semantic, spacing_zyx, sacrum_id=None)
    if len(order) < 2:
        return out, []
    voxels = np.bincount(out.ravel().astype(np.int64))
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    cut = set(np.unique(out[:, 0]).tolist()) | set(np.unique(out[:, -1]).tolist())
    small = []
    for i, v in enumerate(order):
        others = order[max(i - neighbours_per_side, 0):i] + order[i + 1:i + 1 + neighbours_per_side]
        reference = float(np.median(voxels[others]))
        if voxels[v] < min_fraction * reference:
            small.append((v, reference))
    fragments = {v for v, _ in small if v not in cut}
    boxes = ndimage.find_objects(out)
    records: List[Dict[str, object]] = []
    for v, reference in sorted(small, key=lambda item: voxels[item[0]]):
        record = {"instance": int(v), "voxels": int(voxels[v]), "ml": round(float(voxels[v]) * voxel_ml, 3),
                  "neighbour_median_ml": round(reference * voxel_ml, 3), "into": None}
        if v not in fragments:
            records.append({**record, "action": "kept: cut by the field of view"})
            continue
        grown = _grown(boxes[v - 1])
        piece = out[grown] == v
        touching = _touching_ids(out[grown], piece)
        touching = touching[~np.isin(touching, list(fragments))]
        if touching.size:
            into = int(np.bincount(touching).argmax())
            out[grown][piece] = into
            records.append({**record, "action": "merged", "into": into})
        else:
            out[grown][piece] = 0
            records.append({**record, "action": "dropped"})
    return out, records


def sacrum_in_view(semantic: np.ndarray) -> bool:
    return int((semantic == SACRUM).sum()) >= MIN_SACRUM_VOXELS


NAMING_RULE_SOURCES = ("user", "sacrum", "default")
"""Which rule named the levels: ``--lowest-vertebra``, the sacrum in view, or the source dataset's convention."""


def level_ids(count: int, sacrum_visible: bool, lowest_vertebra: Optional[int] = None,
              default_lowest: int = L5_ID, default_rule: str = "source convention") -> Tuple[List[int], str, str]:
    """Ids for ``count`` vertebrae, top first, the rule used (a sentence for the metadata) and its
    source (one of ``NAMING_RULE_SOURCES``).

    Precedence: the user's ``lowest_vertebra`` (an explicit choice wins, e.g. for a lumbarised L6 or a
    sacralised L5), then the sacrum in view (lowest = L5), then ``default_lowest``. Ids count upwards
    along the standard sequence (``labels.ids_upward_from``: above L6 comes L5, above T13 comes T12).
    Fewer than ``count`` ids when there are more candidates than levels up to C1.
    """
    if lowest_vertebra is not None:
        lowest, source = int(lowest_vertebra), "user"
        rule = f"user override: lowest vertebra = {VERTEBRA_NAMES.get(lowest, lowest)} ({lowest}), counting upwards"
    elif sacrum_visible:
        lowest, source = L5_ID, "sacrum"
        rule = f"sacrum in view: the lowest vertebra above it is L5 ({L5_ID}), counting upwards"
    else:
        lowest, source = int(default_lowest), "default"
        rule = f"{default_rule}: lowest vertebra = {VERTEBRA_NAMES.get(lowest, lowest)} ({lowest}), counting upwards"
    if lowest not in VERTEBRA_INSTANCE_IDS:
        raise ValueError(f"lowest vertebra {lowest} is not a mobile SPINEPS vertebra id (1-25, 28)")
    return ids_upward_from(lowest, min(count, levels_up_to_c1(lowest)))[::-1], rule, source


def name_vertebrae(instance: np.ndarray, semantic: np.ndarray, spacing_zyx: Sequence[float],
                   lowest_vertebra: Optional[int] = None, default_lowest: int = L5_ID,
                   default_rule: str = "source convention", sacrum_id: Optional[int] = SACRUM_ID
                   ) -> Tuple[np.ndarray, Dict[str, object]]:
    """Rename the vertebra instances by level; returns the new map and ``{"rule": ..., "rule_source":
    "user"|"sacrum"|"default", "ids_top_to_bottom": [...], "candidates_top_to_bottom": [...]}`` (the
    old id of each named instance, parallel to the new ids). Voxels of ``sacrum_id`` keep
    ``SACRUM_ID``; pass ``None`` when ``instance`` holds numbered candidates only (the merged
    phase-2 map), so that a 26th candidate is named like the others. Candidates above the highest
    nameable level are removed and counted as ``"unnamed_top_candidates"``."""
    order = vertebrae_top_to_bottom(instance, semantic, spacing_zyx, sacrum_id)
    ids, rule, source = level_ids(len(order), sacrum_in_view(semantic), lowest_vertebra, default_lowest,
                                  default_rule)
    unnamed = len(order) - len(ids)
    lut = np.zeros(max(int(instance.max(initial=0)), SACRUM_ID) + 1, dtype=np.uint16)
    if sacrum_id is not None:
        lut[sacrum_id] = SACRUM_ID
    for old, new in zip(order[unnamed:], ids):
        lut[old] = new
    naming = {"rule": rule, "rule_source": source, "ids_top_to_bottom": ids,
              "candidates_top_to_bottom": [int(v) for v in order[unnamed:]]}
    if unnamed:
        naming["unnamed_top_candidates"] = unnamed
    return lut[instance], naming


def sequence_warnings(ids_top_to_bottom: Sequence[int]) -> List[str]:
    """Warnings for a vertebra sequence that is not strictly consecutive in anatomical order."""
    order = {v: i for i, v in enumerate(VERTEBRA_IDS_TOP_TO_BOTTOM)}
    warnings = []
    for upper, lower in zip(ids_top_to_bottom, ids_top_to_bottom[1:]):
        if order[lower] <= order[upper]:
            warnings.append(f"vertebra {lower} lies below {upper} but comes before it anatomically")
        elif vertebra_id_above(lower) != upper and not (upper == T13_ID and lower == L1_ID):
            warnings.append(f"vertebra ids jump from {upper} to {lower} (levels missing in between)")
    return warnings


def _nearest_vertebra(vertebrae: np.ndarray, targets: np.ndarray, spacing_zyx: Sequence[float],
                      margin_mm: float = 40.0) -> np.ndarray:
    """For each voxel of ``targets`` (bool), the id of the nearest voxel of ``vertebrae`` (0 if none).

    Searched within ``margin_mm`` around the targets (the whole volume if no vertebra lies there).
    """
    out = np.zeros(int(targets.sum()), dtype=vertebrae.dtype)
    if not (vertebrae > 0).any() or not out.size:
        return out
    box = bounding_box(targets)
    box = tuple(slice(max(b.start - int(np.ceil(margin_mm / s)), 0), min(b.stop + int(np.ceil(margin_mm / s)), n))
                for b, s, n in zip(box, spacing_zyx, targets.shape))
    if not (vertebrae[box] > 0).any():
        box = tuple(slice(0, n) for n in targets.shape)
    _, nearest = ndimage.distance_transform_edt(vertebrae[box] == 0, sampling=spacing_zyx, return_indices=True)
    local = targets[box]
    return vertebrae[box][tuple(index[local] for index in nearest)]


def add_discs_and_endplates(vertebrae: np.ndarray, semantic: np.ndarray, spacing_zyx: Sequence[float]
                            ) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Full SPINEPS instance map from vertebra ids and the semantic mask.

    ``vertebrae`` holds vertebra ids only (1–28; anything else is ignored); the sacrum (semantic 26)
    becomes ``SACRUM_ID``. Returns the instance map (uint16), the per-voxel endplate side map
    (``ENDPLATE_SUPERIOR``/``ENDPLATE_INFERIOR`` where an endplate is labelled, else 0) and warnings.
    """
    warnings: List[str] = []
    valid = np.isin(vertebrae, VERTEBRA_INSTANCE_IDS) & np.isin(semantic, VERTEBRA_VALUES)
    out = np.where(valid, vertebrae, 0).astype(np.uint16)
    out[semantic == SACRUM] = SACRUM_ID
    side = np.zeros(semantic.shape, dtype=np.uint8)
    owners = out.copy()
    centres = _centroids_si(owners, semantic, spacing_zyx)
    order = sorted(centres, key=centres.get)
    above_in_map = {lower: upper for upper, lower in zip(order, order[1:])}

    above = np.zeros(max(VERTEBRA_IDS_TOP_TO_BOTTOM) + 1, dtype=np.int64)
    for v in order:
        above[v] = above_in_map.get(v) or vertebra_id_above(v) or 0

    si_mm = np.arange(semantic.shape[SUPERIOR_INFERIOR_AXIS]) * spacing_zyx[SUPERIOR_INFERIOR_AXIS]
    centre_lut = np.zeros(len(above))
    centre_lut[order] = [centres[v] for v in order]
    is_endplate, is_disc = np.isin(semantic, ENDPLATE_VALUES), semantic == DISC
    targets = is_endplate | is_disc
    if targets.any() and not order:
        warnings.append(f"{int(targets.sum())} disc/endplate voxels left unlabelled: no vertebra in the mask")
    if not targets.any() or not order:
        return out, side, warnings
    coords = np.nonzero(targets)
    nearest = _nearest_vertebra(owners, targets, spacing_zyx).astype(np.int64)
    below_centre = si_mm[coords[SUPERIOR_INFERIOR_AXIS]] > centre_lut[nearest]
    x = np.where(below_centre, nearest, above[nearest])
    x[(nearest == SACRUM_ID) & below_centre] = 0  # no endplate or disc label below the sacrum
    disc_voxels = is_disc[coords]
    x[disc_voxels] = _majority_per_component(is_disc, tuple(c[disc_voxels] for c in coords), x[disc_voxels])
    if (x == 0).any():
        warnings.append(f"{int((x == 0).sum())} disc/endplate voxels left unlabelled (below the sacrum or above C1)")
    labelled = x > 0
    offset = np.where(disc_voxels, SPINEPS_DISC_OFFSET, SPINEPS_ENDPLATE_OFFSET)
    keep = tuple(c[labelled] for c in coords)
    out[keep] = (offset + x)[labelled]
    endplate_keep = tuple(c[labelled & ~disc_voxels] for c in coords)
    side[endplate_keep] = np.where(below_centre[labelled & ~disc_voxels], ENDPLATE_INFERIOR, ENDPLATE_SUPERIOR)
    return out, side, warnings


def _majority_per_component(targets: np.ndarray, coords: Tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
    """Replace per-voxel answers by the majority of each connected component of ``targets``."""
    components, _ = ndimage.label(targets, FULL_CONNECTIVITY)
    component = components[coords]
    out = x.copy()
    for c in np.unique(component):
        members = component == c
        out[members] = Counter(x[members].tolist()).most_common(1)[0][0]
    return out


def split_endplates(semantic: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Semantic map with endplate voxels written as superior (52) / inferior (53) by ``side``."""
    out = semantic.copy()
    endplate = np.isin(semantic, ENDPLATE_VALUES) & (side > 0)
    out[endplate] = side[endplate]
    return out


def merge_endplates(semantic: np.ndarray) -> np.ndarray:
    """Semantic map with 52/53 read as the single endplate label 62."""
    out = semantic.copy()
    out[np.isin(out, (ENDPLATE_SUPERIOR, ENDPLATE_INFERIOR))] = ENDPLATE
    return out


def spineps_to_spider(instance: np.ndarray, semantic: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """SPINEPS instance + semantic (PIR arrays) -> SPIDER values.

    Vertebrae get their level counted upward from the lowest lumbar vertebra in the map
    (``labels.spider_levels``): L5 = 1 normally; with a lumbarised L6, L6 = 1, L5 = 2, …; a T13 is
    counted among the thoracics (L1 = 5, T13 = 6, T12 = 7). A vertebra the in-plane field of view
    cuts (partially visible) gets 100 + level; disc 100 + X -> 200 + level(X); endplates -> the
    level of their nearest vertebra; canal and cord -> 100. The sacrum becomes 0 (SPIDER leaves
    it unlabelled).
    """
    levels = spider_levels(_vertebra_ids_named(instance))
    lut = np.zeros(SPINEPS_ENDPLATE_OFFSET + max(VERTEBRA_IDS_TOP_TO_BOTTOM) + 1, dtype=np.uint16)
    for v, level in levels.items():
        lut[v] = level
        lut[SPINEPS_DISC_OFFSET + v] = SPIDER_DISC_OFFSET + level
    out = lut[instance.astype(np.int64)]
    endplate = instance > SPINEPS_ENDPLATE_OFFSET
    vertebrae = np.where(np.isin(instance, list(levels)), instance, 0)
    out[endplate] = lut[_nearest_vertebra(vertebrae, endplate, spacing_zyx).astype(np.int64)]
    cut = [v for v in values_cut_by_field_of_view(out) if v <= SPIDER_MAX_LEVEL]
    out[np.isin(out, cut)] += SPIDER_PARTIAL_OFFSET
    out[np.isin(semantic, (SPINAL_CANAL, SPINAL_CORD)) & (out == 0)] = SPIDER_CANAL
    return out


def _vertebra_ids_named(instance: np.ndarray) -> List[int]:
    """Vertebra ids a SPINEPS instance map names: its vertebrae, and X of every disc 100 + X and
    endplate 200 + X (so a vertebra seen only through its disc still counts)."""
    values = [int(v) for v in np.unique(instance) if v]
    return sorted({v % SPINEPS_DISC_OFFSET for v in values if v % SPINEPS_DISC_OFFSET})
