"""SSMSpine (SymTC authors' synthetic 2D lumbar MRI) -> 2D nnU-Net raw dataset.

Source layout (REFERENCE §3): ``{Train,Test}/p<ID>/aug<K>.pt``, each a ``torch.save``d dict with
``img``/``img_corrected``/``img_equalized`` (512×512), ``label`` (1×512×512, values 0–11) and the
landmarks ``bone`` (6×236×2), ``disk`` (5×176×2), ``shape`` (1696×2); tensors or numpy arrays.

Each file becomes the case ``p<ID>_aug<K>``: an image of array shape (1, 512, 512) (z, y, x) with unit
spacing and a PIR direction (rows run superior -> inferior, columns anterior -> posterior), so 2D
nnU-Net trains on the slice along array axis 0. ``Test`` goes to ``imagesTs``/``labelsTs``; folds
group by ``p<ID>`` (one texture). Landmarks go to ``landmarksTr/<case>.npz`` (``landmarksTs``) with
keys ``bone``, ``disk``, ``shape`` in pixels, (x = column, y = row), float32.

``.pt`` files are loaded with ``torch.load(weights_only=True)``; a file that needs full unpickling
(which can run arbitrary code) is a problem unless ``trust_pickle``.
"""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from nnunetv2_symtc.io import CANONICAL_ORIENTATION, Geometry, PathLike
from nnunetv2_symtc.labels import SSMSPINE_NAMES, ssmspine_map
from nnunetv2_symtc.dataset_conversion.validation import (
    Problem, ProblemFound, image_problems, label_problems, raise_if_any)
from nnunetv2_symtc.dataset_conversion.writer import (
    TEST, TRAIN, CaseJob, CaseResult, DatasetFolder, direction_for, finish_dataset, image_path, label_path,
    run_jobs, side_path, write_volume)
from nnunetv2_symtc.errors import InputError

IMAGE_KEYS: Tuple[str, ...] = ("img", "img_corrected", "img_equalized")
LABEL_KEY = "label"
LANDMARK_SHAPES: Dict[str, Tuple[int, ...]] = {"bone": (6, 236, 2), "disk": (5, 176, 2), "shape": (1696, 2)}
"""Landmark arrays of one SSMSpine file and their shapes, in pixels, last axis (x = column, y = row)."""
LANDMARKS = "landmarks"
SUBSETS: Dict[str, str] = {"Train": TRAIN, "Test": TEST}
SLICE_GEOMETRY = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), direction_for(CANONICAL_ORIENTATION))
"""Unit spacing; ITK x = columns -> posterior, y = rows -> inferior, z = the single slice -> right."""
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
WEIGHTS_ONLY_REFUSAL = "Unsupported global"
"""In torch's message when ``weights_only=True`` meets a global it does not allow (corrupt files
give the same exception type without it)."""
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _natural_key(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def load_pt(path: Path, trust_pickle: bool = False) -> dict:
    """``torch.load`` with ``weights_only=True``; full unpickling only if ``trust_pickle``.

    Raises ``ProblemFound`` naming the file when it cannot be read or needs full unpickling.
    """
    import pickle

    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if WEIGHTS_ONLY_REFUSAL not in str(e):
            reason = next((line for line in str(e).splitlines()[::-1] if line.strip()), type(e).__name__)
            raise ProblemFound([Problem(str(path), f"cannot be read as a torch file: {ANSI_ESCAPE.sub('', reason).strip()}")]) from None
        if not trust_pickle:
            lines = [ANSI_ESCAPE.sub("", line).strip() for line in str(e).splitlines() if line.strip()]
            reason = next(line for line in lines if WEIGHTS_ONLY_REFUSAL in line)
            raise ProblemFound([Problem(str(path), "needs full unpickling, which can run arbitrary code "
                                        f"(weights_only=True refused it: {reason}); if you trust the source, "
                                        "pass --trust-pickle (trust_pickle=True)")]) from None
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:  # any failure of a corrupt file is reported, not raised
            raise ProblemFound([Problem(str(path), f"cannot be loaded: {type(e2).__name__}: {e2}")]) from None
    except Exception as e:  # corrupt or truncated files raise many different errors
        raise ProblemFound([Problem(str(path), f"cannot be read as a torch file: {type(e).__name__}: {e}")]) from None
    if not isinstance(data, dict):
        raise ProblemFound([Problem(str(path), f"holds a {type(data).__name__}, expected a dict")])
    return data


def _as_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def write_landmarks(path: Path, landmarks: Dict[str, np.ndarray]) -> None:
    """``.npz`` readable by ``np.load``, byte-identical for equal input (fixed zip timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(landmarks):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(landmarks[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def read_landmarks(path: PathLike) -> Dict[str, np.ndarray]:
    """The landmark arrays of one converted case (``bone``, ``disk``, ``shape``)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@dataclass(frozen=True)
class _SSMPayload:
    source: Path
    root: Path
    image_key: str
    trust_pickle: bool


def _squeeze_2d(array: np.ndarray) -> np.ndarray:
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return array


def _convert_case(job: CaseJob, folder: Path) -> CaseResult:
    payload: _SSMPayload = job.payload
    path = payload.source
    data = load_pt(path, payload.trust_pickle)
    missing = [k for k in (payload.image_key, LABEL_KEY, *LANDMARK_SHAPES) if k not in data]
    if missing:
        raise ProblemFound([Problem(str(path), f"missing key(s) {missing} (has {sorted(map(str, data))})", job.case)])
    image = _squeeze_2d(_as_numpy(data[payload.image_key])).astype(np.float32)
    label = _squeeze_2d(_as_numpy(data[LABEL_KEY]))
    problems: List[Problem] = []
    if image.ndim != 2:
        problems.append(Problem(str(path), f"{payload.image_key!r} has shape {image.shape}, expected 2D", job.case))
    elif label.shape != image.shape:
        problems.append(Problem(str(path), f"{LABEL_KEY!r} shape {label.shape} differs from "
                                f"{payload.image_key!r} shape {image.shape}", job.case))
    problems += image_problems(f"{path}[{payload.image_key!r}]", image, job.case)
    problems += label_problems(f"{path}[{LABEL_KEY!r}]", label, lambda v: v in SSMSPINE_NAMES, "SSMSpine", job.case)
    landmarks = {}
    for key, shape in LANDMARK_SHAPES.items():
        points = _as_numpy(data[key]).astype(np.float32)
        if points.shape != shape:
            problems.append(Problem(str(path), f"landmarks {key!r} have shape {points.shape}, expected {shape}", job.case))
        elif not np.isfinite(points).all():
            problems.append(Problem(str(path), f"landmarks {key!r} have NaN/infinite values", job.case))
        landmarks[key] = points
    raise_if_any(problems)

    write_volume(image_path(folder, job.subset, job.case), image[None], SLICE_GEOMETRY)
    write_volume(label_path(folder, job.subset, job.case), label.astype(np.uint8)[None], SLICE_GEOMETRY)
    write_landmarks(side_path(folder, LANDMARKS, job.subset, job.case, ".npz"), landmarks)
    record = {"source": str(path.relative_to(payload.root)), "patient": job.group,
              "geometry": {"spacing_zyx": SLICE_GEOMETRY.spacing_zyx, "origin_xyz": SLICE_GEOMETRY.origin_xyz,
                           "direction": SLICE_GEOMETRY.direction}}
    return CaseResult(job.case, job.subset, job.group, record=record)


def find_files(root: PathLike) -> List[Tuple[str, str, Path]]:
    """``(subset, patient folder, file)`` for every ``{Train,Test}/p*/aug*.pt``, in natural order."""
    root = Path(root)
    if not any((root / s).is_dir() for s in SUBSETS):
        raise InputError(f"{root}: has neither Train/ nor Test/; an SSMSpine root holds Train/p<ID>/aug<K>.pt")
    found = []
    for subset in SUBSETS:
        for patient in sorted((root / subset).glob("p*"), key=lambda p: _natural_key(p.name)):
            if patient.is_dir():
                for f in sorted(patient.glob("aug*.pt"), key=lambda p: _natural_key(p.name)):
                    found.append((subset, patient.name, f))
    if not found:
        raise InputError(f"{root}: no Train/p*/aug*.pt or Test/p*/aug*.pt files")
    return found


def convert_ssmspine(root: PathLike, dataset_id: int, dataset_name: Optional[str] = None, *,
                     image_key: str = "img", trust_pickle: bool = False, strict: bool = False,
                     overwrite: bool = False, raw_dir: Optional[PathLike] = None, num_processes: int = 1) -> Path:
    """Convert an SSMSpine root to a 2D ``DatasetXXX_<name>`` (see module docstring); returns its path.

    ``image_key``: ``img``, ``img_corrected`` or ``img_equalized``. Problems skip their file (listed in the
    output and in ``dataset.json``), or raise ``ConversionError`` at the first one when ``strict``.
    """
    if image_key not in IMAGE_KEYS:
        raise InputError(f"image_key={image_key!r}; choose one of {IMAGE_KEYS}")
    root = Path(root)
    label_map = ssmspine_map()
    with DatasetFolder(dataset_id, dataset_name or "SSMSpine", raw_dir, overwrite) as folder:
        jobs = [CaseJob(f"{patient}_{f.stem}", SUBSETS[subset], patient, _SSMPayload(f, root, image_key, trust_pickle))
                for subset, patient, f in find_files(root)]
        results, problems = run_jobs(_convert_case, jobs, folder.folder, num_processes, strict, "SSMSpine")
        return finish_dataset(
            folder, results=results, problems=problems, label_map=label_map, channel_names={"0": image_key},
            source="ssmspine", source_root=root,
            options={"image_key": image_key, "trust_pickle": trust_pickle},
            reverse_map="exact: nnU-Net classes equal SSMSpine values 0-11", orientation=CANONICAL_ORIENTATION,
            extra_json={"symtc_landmarks": {"folders": [f"{LANDMARKS}{TRAIN}", f"{LANDMARKS}{TEST}"],
                                            "keys": {k: list(v) for k, v in LANDMARK_SHAPES.items()},
                                            "units": "pixels, last axis (x = column, y = row)"}})
