"""Reading a source plans file and writing a derived one (a "plans transfer"): shared by the plans writers."""
import json
from copy import deepcopy
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple

from nnunetv2_symtc.errors import InputError, InputFileError


def read_source(preprocessed_dataset_folder: Path, source_plans: str,
                configurations: Optional[Sequence[str]]) -> Tuple[Path, Dict, Dict]:
    """``(source plans path, plans, dataset.json)`` of a planned dataset; clear errors for missing
    files and for ``configurations`` the plans do not have."""
    folder = Path(preprocessed_dataset_folder)
    source = folder / f"{source_plans}.json"
    if not source.is_file():
        raise InputFileError(f"{source}: plans not found; run nnUNetv2_plan_and_preprocess first")
    dataset_json = folder / "dataset.json"
    if not dataset_json.is_file():
        raise InputFileError(f"{dataset_json}: not found next to the plans")
    plans = json.loads(source.read_text())
    unknown = set(configurations or ()) - set(plans["configurations"])
    if unknown:
        raise InputError(f"{source}: no configuration(s) {sorted(unknown)}; it has {sorted(plans['configurations'])}")
    return source, plans, json.loads(dataset_json.read_text())


def planned_configurations(plans: Dict, target_plans: str, configurations: Optional[Sequence[str]],
                           required_key: str) -> Tuple[Dict, Iterator[Tuple[str, Dict]]]:
    """A copy of ``plans`` named ``target_plans`` and its configurations to rewrite: those in
    ``configurations`` (default all) that have ``required_key`` themselves (cascade
    configurations that inherit it are left to inherit)."""
    out = deepcopy(plans)
    out["plans_name"] = target_plans
    selected = ((name, c) for name, c in out["configurations"].items()
                if (configurations is None or name in configurations) and required_key in c)
    return out, selected


def write_plans(source: Path, plans: Dict) -> Path:
    """Write ``plans`` as ``<plans_name>.json`` next to ``source``; returns the path."""
    target = source.parent / f"{plans['plans_name']}.json"
    target.write_text(json.dumps(plans, indent=4))
    return target
