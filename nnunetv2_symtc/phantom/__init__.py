"""Synthetic lumbar spine MR phantom: anatomy, MR appearance and writers for SPIDER, SPINEPS and SSMSpine.

>>> from nnunetv2_symtc.phantom import PhantomConfig, generate_subject
>>> subject = generate_subject(0, PhantomConfig.tiny())
>>> subject.images["t2"].shape == subject.spine_mask.shape
True

Modules: ``anatomy`` (random shape parameters), ``painting`` (their rasterisation to tissues and
labels), ``mri`` (contrast, texture, partial volume, bias, Rician noise), ``subject`` (configuration,
field of view, ``PhantomSubject``), ``ssmspine`` (2D mid-sagittal samples with landmarks) and ``writers``.
"""
from nnunetv2_symtc.phantom.ssmspine import generate_ssmspine_sample
from nnunetv2_symtc.phantom.subject import PhantomConfig, PhantomSubject, generate_subject, on_grid
from nnunetv2_symtc.phantom.writers import write_spider, write_spineps, write_ssmspine

__all__ = ["PhantomConfig", "PhantomSubject", "generate_subject", "on_grid", "generate_ssmspine_sample",
           "write_spider", "write_spineps", "write_ssmspine"]
