"""What each spine measurement is, independent of where the geometry comes from.

A source (the masks: ``measurement.masks``; the phantom's shape model: ``phantom.truth``)
describes each vertebra and disc in its sagittal plane (``VertebraGeometry``, ``DiscGeometry``);
``measure_levels`` turns them into one ``LevelMeasurement`` per level with the definitions of the
README section "Spine measurements". A value that cannot be measured is ``None`` with a reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.measurement.lines import Region, Run, direction_angle_deg, first_run, run_through, unit

BODY_FIELDS: Tuple[str, ...] = ("body_anterior_height_mm", "body_middle_height_mm", "body_posterior_height_mm",
                                "body_depth_mm", "body_volume_mm3", "body_wedge_deg")
DISC_FIELDS: Tuple[str, ...] = ("disc_anterior_height_mm", "disc_middle_height_mm", "disc_posterior_height_mm",
                                "disc_volume_mm3", "disc_height_index")
ALIGNMENT_FIELDS: Tuple[str, ...] = ("segmental_angle_deg", "slip_mm", "slip_percent")
CANAL_FIELDS: Tuple[str, ...] = ("canal_ap_body_mm", "canal_ap_disc_mm")
LEVEL_FIELDS: Tuple[str, ...] = BODY_FIELDS + DISC_FIELDS + ALIGNMENT_FIELDS + CANAL_FIELDS
"""Every per-level measurement, in table order (the unit ends the name; ``disc_*``, the segmental
angle, the slip and ``canal_ap_disc_mm`` belong to the disc below the level's vertebra)."""
ENDPLATE_FRACTION = 0.7
"""Share of a body's anteroposterior extent, centred, whose surface an endplate line is fitted
to (the rounded rims outside it are left out)."""
THIRDS: Tuple[str, ...] = ("anterior", "middle", "posterior")
THIRD_LINES = np.linspace(0.25, 0.75, 5)
"""Positions (fractions of a third) of the lines whose mean length is a third's height."""
SLIP_DEPTHS_MM = np.linspace(2.5, 4.5, 5)
"""How far inside each body (mm, from the disc surface) the slip is read on the posterior walls (mean)."""
CHORD_OFFSETS_MM = np.linspace(-2.0, 2.0, 5)
"""Offsets (mm, along the superior axis) of the parallel chords whose mean length is the body depth."""


@dataclass
class VertebraGeometry:
    """One vertebra in its sagittal plane (plane coordinates: ``measurement.lines``).

    ``body``: the vertebral body (endplates included) as a region; ``centre``: its centre;
    ``superior_endplate``/``inferior_endplate``: unit directions of the endplate lines pointing
    posterior (None when missing, with the reason in ``reasons['superior_endplate']`` /
    ``['inferior_endplate']``); ``canal``: the spinal canal (cord included) in the same plane;
    ``volume_mm3``: the body's volume. ``reasons['body']`` says why there is no body at all.
    """

    vertebra_id: int
    body: Optional[Region] = None
    centre: Optional[np.ndarray] = None
    superior_endplate: Optional[np.ndarray] = None
    inferior_endplate: Optional[np.ndarray] = None
    canal: Optional[Region] = None
    volume_mm3: Optional[float] = None
    reasons: Dict[str, str] = field(default_factory=dict)


@dataclass
class DiscGeometry:
    """The disc below vertebra ``upper_id`` in its sagittal plane: the disc, the two adjacent
    bodies and the canal as regions of that plane, its centre and volume."""

    upper_id: int
    region: Optional[Region] = None
    upper_body: Optional[Region] = None
    lower_body: Optional[Region] = None
    centre: Optional[np.ndarray] = None
    canal: Optional[Region] = None
    volume_mm3: Optional[float] = None
    reasons: Dict[str, str] = field(default_factory=dict)


@dataclass
class LevelMeasurement:
    """One row: the vertebra ``level`` (name from ``labels.VERTEBRA_NAMES``) and the disc below it
    (``disc``: ``'L4/L5'``; empty when there is none). ``values[name]`` is in the unit that ends
    ``name`` (``LEVEL_FIELDS``), None when not measured, with ``reasons[name]`` saying why.
    ``segments[name]``: the line drawn for a height or diameter, (start, end) in the level's
    plane coordinates (for the snapshot; the middle one of the lines averaged)."""

    level: str
    vertebra_id: int
    disc: str
    values: Dict[str, Optional[float]]
    reasons: Dict[str, str]
    segments: Dict[str, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class SpineMeasurements:
    """Every level of one case, top to bottom, and the lumbar lordosis (degrees, L1 to S1
    superior endplates; None with ``lordosis_reason``). ``reason``: why there are no levels."""

    case: str
    levels: List[LevelMeasurement]
    lumbar_lordosis_deg: Optional[float]
    lordosis_reason: str = ""
    reason: str = ""

    def level(self, name: str) -> LevelMeasurement:
        """The row of level ``name`` (e.g. ``'L3'``); ``KeyError`` if absent."""
        for row in self.levels:
            if row.level == name:
                return row
        raise KeyError(f"{self.case}: no level {name}")


def superior_axis(superior_endplate: np.ndarray, inferior_endplate: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(posterior axis, superior axis) of a body or disc between two endplate lines: the
    posterior axis bisects the two endplate directions; the superior axis is perpendicular."""
    posterior = unit(superior_endplate + inferior_endplate)
    return posterior, np.array([-posterior[1], posterior[0]])


def _third_points(centre: np.ndarray, posterior: np.ndarray, chord: Run, third: int) -> List[np.ndarray]:
    return [centre + (chord.low + (third + f) / 3 * chord.length) * posterior for f in THIRD_LINES]


def _body(v: VertebraGeometry, values: Dict, reasons: Dict, segments: Dict) -> None:
    """Body heights, depth and wedge angle: heights along the body's superior axis (bisecting
    its endplate lines) at the anterior, middle and posterior thirds of its mid-height chord."""
    if v.body is None:
        reasons.update({f: v.reasons["body"] for f in BODY_FIELDS})
        return
    values["body_volume_mm3"] = v.volume_mm3
    missing = [v.reasons[k] for k in ("superior_endplate", "inferior_endplate") if getattr(v, k) is None]
    if missing:
        reasons.update({f: "; ".join(missing) for f in BODY_FIELDS if f != "body_volume_mm3"})
        return
    posterior, superior = superior_axis(v.superior_endplate, v.inferior_endplate)
    values["body_wedge_deg"] = direction_angle_deg(v.superior_endplate) - direction_angle_deg(v.inferior_endplate)
    chord = run_through(v.body, v.centre, posterior)
    if chord is None or chord.cut:
        reason = "the body's mid-height chord " + ("reaches the field-of-view edge" if chord else "misses the body")
        reasons.update({f: reason for f in ("body_depth_mm",) + tuple(f"body_{t}_height_mm" for t in THIRDS)})
        return
    chords = [run_through(v.body, v.centre + offset * superior, posterior) for offset in CHORD_OFFSETS_MM]
    if any(c is None or c.cut for c in chords):
        reasons["body_depth_mm"] = "a mid-height chord reaches the field-of-view edge or misses the body"
    else:
        values["body_depth_mm"] = float(np.mean([c.length for c in chords]))
    for third, name in enumerate(THIRDS):
        points = _third_points(v.centre, posterior, chord, third)
        runs = [run_through(v.body, p, superior) for p in points]
        if any(r is None or r.cut for r in runs):
            reasons[f"body_{name}_height_mm"] = f"the {name} third reaches the field-of-view edge or a hole in the body"
        else:
            values[f"body_{name}_height_mm"] = float(np.mean([r.length for r in runs]))
            k = len(runs) // 2
            segments[f"body_{name}_height_mm"] = (points[k] + runs[k].low * superior, points[k] + runs[k].high * superior)


def _disc(d: DiscGeometry, upper: VertebraGeometry, lower: Optional[VertebraGeometry], values: Dict,
          reasons: Dict, segments: Dict) -> Optional[Tuple[np.ndarray, np.ndarray, float, float]]:
    """Disc heights between the two bodies, along the disc's superior axis (bisecting the upper
    inferior and lower superior endplate lines), at the thirds of its mid-height chord; returns
    (centre, superior axis, distance up and down to the bodies on the middle line) for the slip."""
    if d.region is None:
        reasons.update({f: d.reasons["disc"] for f in DISC_FIELDS})
        return None
    values["disc_volume_mm3"] = d.volume_mm3
    heights = [f for f in DISC_FIELDS if f != "disc_volume_mm3"]
    missing = []
    if upper.inferior_endplate is None:
        missing.append(upper.reasons["inferior_endplate"])
    if lower is None:
        missing.append(d.reasons["lower"])
    elif lower.superior_endplate is None:
        missing.append(lower.reasons["superior_endplate"])
    if missing:
        reasons.update({f: "; ".join(missing) for f in heights})
        return None
    posterior, superior = superior_axis(lower.superior_endplate, upper.inferior_endplate)
    chord = run_through(d.region, d.centre, posterior)
    if chord is None or chord.cut:
        reasons.update({f: "the disc's mid-height chord reaches the field-of-view edge or misses the disc" for f in heights})
        return None
    middle = None
    for third, name in enumerate(THIRDS):
        gaps = []
        for k, p in enumerate(_third_points(d.centre, posterior, chord, third)):
            up, down = first_run(d.upper_body, p, superior), first_run(d.lower_body, p, -superior)
            if up is None or down is None:
                break
            gaps.append(up.low + down.low)
            if k == len(THIRD_LINES) // 2:
                segments[f"disc_{name}_height_mm"] = (p - down.low * superior, p + up.low * superior)
            if third == 1 and k == len(THIRD_LINES) // 2:
                middle = (p, superior, up.low, down.low)
        if len(gaps) < len(THIRD_LINES):
            reasons[f"disc_{name}_height_mm"] = f"no body above and below the disc's {name} third"
        else:
            values[f"disc_{name}_height_mm"] = float(np.mean(gaps))
    body_middle = values.get("body_middle_height_mm")
    if values.get("disc_middle_height_mm") is not None and body_middle:
        values["disc_height_index"] = values["disc_middle_height_mm"] / body_middle
    else:
        reasons["disc_height_index"] = "needs the disc's and the body's middle heights"
    return middle


def _slip(d: DiscGeometry, lower: VertebraGeometry, middle, values: Dict, reasons: Dict) -> None:
    """Anterior slip of the upper body over the lower one: the distance, along the lower
    superior endplate, between their posterior walls, read on lines parallel to that endplate
    ``SLIP_DEPTHS_MM`` inside each body from the disc's middle line (mean); in % of the lower
    body's length along those lines."""
    if middle is None:
        reasons.update({f: "needs the disc's middle height" for f in ("slip_mm", "slip_percent")})
        return
    point, superior, up, down = middle
    along = lower.superior_endplate
    slips, lengths = [], []
    for depth in SLIP_DEPTHS_MM:
        upper_start, lower_start = point + (up + depth) * superior, point - (down + depth) * superior
        upper_run, lower_run = run_through(d.upper_body, upper_start, along), run_through(d.lower_body, lower_start, along)
        if upper_run is None or lower_run is None or upper_run.cut or lower_run.cut:
            reasons.update({f: "a body is too thin or cut where the slip is read" for f in ("slip_mm", "slip_percent")})
            return
        slips.append(float((lower_start - upper_start) @ along + lower_run.high - upper_run.high))
        lengths.append(lower_run.length)
    values["slip_mm"] = float(np.mean(slips))
    values["slip_percent"] = 100.0 * values["slip_mm"] / float(np.mean(lengths))


def _canal(canal: Optional[Region], start: Optional[np.ndarray], posterior: Optional[np.ndarray],
           segments: Dict, name: str) -> Tuple[Optional[float], str]:
    """Anteroposterior canal diameter: the first canal run met going posterior from ``start``."""
    if canal is None or start is None or posterior is None:
        return None, "needs the level's axis and centre"
    run = first_run(canal, start, posterior)
    if run is None or run.cut:
        return None, "no spinal canal behind it" if run is None else "the canal reaches the field-of-view edge"
    segments[name] = (start + run.low * posterior, start + run.high * posterior)
    return run.length, ""


def measure_levels(case: str, vertebrae: Sequence[VertebraGeometry], discs: Dict[int, DiscGeometry],
                   sacrum: Optional[VertebraGeometry]) -> SpineMeasurements:
    """Rows for ``vertebrae`` (top to bottom, mobile vertebrae), each with the disc below it from
    ``discs`` (keyed by the upper vertebra's id) and the vertebra below (the next in
    ``vertebrae``, else ``sacrum``: S1, of which only the superior endplate is used)."""
    rows = []
    below_of = {v.vertebra_id: b for v, b in zip(vertebrae, list(vertebrae[1:]) + [sacrum])}
    for v in vertebrae:
        values: Dict[str, Optional[float]] = {f: None for f in LEVEL_FIELDS}
        reasons: Dict[str, str] = {}
        segments: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        _body(v, values, reasons, segments)
        lower = below_of[v.vertebra_id]
        d = discs[v.vertebra_id]
        middle = _disc(d, v, lower, values, reasons, segments)
        if lower is not None and v.inferior_endplate is not None and lower.superior_endplate is not None:
            values["segmental_angle_deg"] = (direction_angle_deg(lower.superior_endplate)
                                             - direction_angle_deg(v.inferior_endplate))
        else:
            reasons["segmental_angle_deg"] = "needs both endplates at the disc"
        if lower is not None and lower.superior_endplate is not None:
            _slip(d, lower, middle, values, reasons)
        else:
            reasons.update({f: "needs the superior endplate below" for f in ("slip_mm", "slip_percent")})
        axes = (superior_axis(v.superior_endplate, v.inferior_endplate)[0]
                if v.superior_endplate is not None and v.inferior_endplate is not None else None)
        values["canal_ap_body_mm"], why = _canal(v.canal, v.centre, axes, segments, "canal_ap_body_mm")
        if why:
            reasons["canal_ap_body_mm"] = why
        disc_axis = (superior_axis(lower.superior_endplate, v.inferior_endplate)[0]
                     if lower is not None and lower.superior_endplate is not None and v.inferior_endplate is not None
                     else None)
        values["canal_ap_disc_mm"], why = _canal(d.canal, d.centre if d.region is not None else None, disc_axis,
                                                 segments, "canal_ap_disc_mm")
        if why:
            reasons["canal_ap_disc_mm"] = why
        below_name = L.VERTEBRA_NAMES[lower.vertebra_id] if lower is not None else ""
        disc_name = f"{L.VERTEBRA_NAMES[v.vertebra_id]}/{below_name}" if d.region is not None and below_name else ""
        rows.append(LevelMeasurement(L.VERTEBRA_NAMES[v.vertebra_id], v.vertebra_id, disc_name, values,
                                     {k: r for k, r in reasons.items() if values.get(k) is None}, segments))
    by_id = {v.vertebra_id: v for v in vertebrae}
    l1 = by_id.get(L.L1_ID)
    if l1 is None or l1.superior_endplate is None:
        lordosis, why = None, "no L1 superior endplate" + (f" ({l1.reasons['superior_endplate']})" if l1 else "")
    elif sacrum is None or sacrum.superior_endplate is None:
        lordosis, why = None, "no S1 superior endplate" + (f" ({sacrum.reasons['superior_endplate']})" if sacrum else "")
    else:
        lordosis, why = direction_angle_deg(sacrum.superior_endplate) - direction_angle_deg(l1.superior_endplate), ""
    return SpineMeasurements(case, rows, lordosis, why)
