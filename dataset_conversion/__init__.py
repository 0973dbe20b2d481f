"""Converters from SPIDER, SSMSpine and SPINEPS/BIDS data to nnU-Net raw datasets, and back.

One module per source (``spider``, ``ssmspine``, ``spineps``), and ``phase2_cutouts`` (the phase-2
training dataset of the two-phase segmentation, derived from SPINEPS or SPIDER data); ``writer`` (temporary folder, jobs,
splits, side files) and ``validation`` (problem checks) are shared; ``reverse`` maps predictions back
to the source's label values.
"""
from nnunetv2_symtc.dataset_conversion.reverse import map_to_source
from nnunetv2_symtc.dataset_conversion.spider import convert_spider
from nnunetv2_symtc.dataset_conversion.spineps import convert_spineps
from nnunetv2_symtc.dataset_conversion.ssmspine import convert_ssmspine
from nnunetv2_symtc.dataset_conversion.validation import ConversionError, Problem
from nnunetv2_symtc.dataset_conversion.writer import skipped_cases

__all__ = ["convert_spider", "convert_ssmspine", "convert_spineps", "map_to_source", "skipped_cases",
           "ConversionError", "Problem"]
