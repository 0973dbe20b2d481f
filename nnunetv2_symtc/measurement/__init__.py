"""Per-level spine geometry from two-phase outputs (``symtc measure``): disc and body heights,
volumes, wedge and segmental angles, lumbar lordosis, slip and canal diameters.

Modules: ``lines`` (sagittal-plane regions, lines and line fits), ``definitions`` (what each
measurement is), ``masks`` (the geometry of SPINEPS-valued masks), ``tables`` (CSV and JSON).
The phantom's true values come from ``phantom.truth`` with the same definitions.
"""
from nnunetv2_symtc.measurement.definitions import LEVEL_FIELDS, LevelMeasurement, SpineMeasurements
from nnunetv2_symtc.measurement.masks import measure_images, measure_masks

__all__ = ["LEVEL_FIELDS", "LevelMeasurement", "SpineMeasurements", "measure_images", "measure_masks"]
