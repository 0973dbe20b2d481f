"""``report.html`` of a demo run: one self-contained page (images inlined as data URIs, no network).

It shows the headline table, the per-level Dice of each two-phase run, each test case's snapshot
beside the snapshot of its reference masks, and the training curves.
"""
from __future__ import annotations

import base64
import html
import math
import tempfile
from pathlib import Path
from typing import Dict, Mapping

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.cases { display: flex; flex-wrap: wrap; gap: 1.5em; }
.case figure { display: inline-block; margin: 0 0.5em 0 0; text-align: center; }
.case img { height: 380px; }
.curves img { width: 560px; max-width: 100%; }
"""


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _number(value) -> str:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return f"{value:.3f}"
    return "–"


def _table(rows: Mapping[str, Mapping[str, float]], first_column: str) -> str:
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [first_column, *columns])
    body = "".join("<tr><td>" + html.escape(name) + "</td>" + "".join(f"<td>{_number(row.get(c))}</td>" for c in columns)
                   + "</tr>" for name, row in rows.items())
    return f"<table><tr>{head}</tr>{body}</table>"


def reference_snapshot(image_file: Path, semantic_file: Path, instance_file: Path, target: Path) -> Path:
    """Render the reference masks of one case like a prediction's snapshot (mid-sagittal slice, PIR)."""
    import SimpleITK as sitk

    from nnunetv2_symtc.inference.outputs import write_snapshot
    from nnunetv2_symtc.io import Geometry, reorient

    images = [reorient(sitk.ReadImage(str(p))) for p in (image_file, semantic_file, instance_file)]
    image, semantic, instance = (sitk.GetArrayFromImage(i) for i in images)
    write_snapshot(target, image, semantic, instance, Geometry.from_sitk(images[0]).spacing_zyx)
    return target


def _transposed(rows: Mapping[str, Mapping[str, float]]) -> Dict[str, Dict[str, float]]:
    """``{run: {structure: value}}`` -> ``{structure: {run: value}}`` (structures in first-seen order)."""
    out: Dict[str, Dict[str, float]] = {}
    for run, row in rows.items():
        for structure, value in row.items():
            out.setdefault(structure, {})[run] = value
    return out


def write_demo_report(path: Path, summary: dict, two_phase: Path, reference: Path, images: Path,
                      curves: Dict[str, Path]) -> Path:
    """Write ``path`` from a demo ``summary`` (see ``nnunetv2_symtc.demo.run_demo``); returns ``path``.

    ``two_phase`` holds one prediction folder per run (snapshots ``*_seg-spine_snp.png``),
    ``reference`` the folder with ``semantic/`` and ``instance/`` reference masks, ``images`` the
    test images, ``curves`` role -> nnU-Net's ``progress.png``.
    """
    from nnunetv2_symtc.inference.inputs import SUFFIXES

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>symtc demo</title><style>{_STYLE}</style>"
             "</head><body><h1>nnunetv2_symtc demo on the phantom</h1>",
             f"<p>Budget <b>{html.escape(summary['budget'])}</b> on <b>{html.escape(summary['device'])}</b>, "
             f"{summary['total_seconds'] / 60:.1f} min; {len(summary['subjects']['train'])} training subjects, "
             f"{len(summary['subjects']['test'])} held-out {html.escape(summary['held_out'])} subjects (never trained on).</p>",
             "<h2>Headline (held-out scans)</h2>", _table(summary["headline"], "two-phase, phase 1 by"),
             "<p>Dice vertebrae: union of subregions 41–50 and the sacrum; discs: 100; canal: 60 ∪ 61; "
             "subregions: mean per-label Dice of 41–50 and 26; PQ at IoU &gt; 0.5 over vertebra ids 1–25, 28; "
             "level accuracy: reference vertebrae whose majority predicted id is their own.</p>",
             "<h2>Per-level Dice (instance masks; structures in the reference)</h2>",
             _table(_transposed(summary["per_level_dice"]), "structure"),
             "<h2>Test cases: prediction beside reference</h2>"]
    runs = sorted(p for p in Path(two_phase).iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory() as scratch:
        parts.append("<div class='cases'>")
        for image in sorted(Path(images).glob("*.nii.gz")):
            case = image.name[:-len(".nii.gz")]
            ref = reference_snapshot(image, Path(reference) / "semantic" / f"{case}{SUFFIXES['semantic']}",
                                     Path(reference) / "instance" / f"{case}{SUFFIXES['instance']}",
                                     Path(scratch) / f"{case}.png")
            figures = [f"<figure>{_image(ref, 'reference')}<figcaption>reference</figcaption></figure>"]
            for run in runs:
                snapshot = run / f"{case}{SUFFIXES['snapshot']}"
                if snapshot.is_file():
                    figures.append(f"<figure>{_image(snapshot, run.name)}<figcaption>{html.escape(run.name)}"
                                   "</figcaption></figure>")
            parts.append(f"<div class='case'><h3>{html.escape(case)}</h3>{''.join(figures)}</div>")
        parts.append("</div>")
    parts.append("<h2>Training curves (nnU-Net progress.png)</h2><div class='curves'>")
    for role, curve in curves.items():
        parts.append(f"<h3>{html.escape(role)}</h3>{_image(curve, role)}")
    parts.append("</div></body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
    return Path(path)
