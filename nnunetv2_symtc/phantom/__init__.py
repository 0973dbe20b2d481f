"""Synthetic lumbar spine MR phantom: anatomy, MR appearance and writers for SPIDER, SPINEPS and SSMSpine.

>>> from nnunetv2_symtc.phantom import PhantomConfig, generate_subject
>>> subject = generate_subject(0, PhantomConfig.tiny())
>>> subject.images["t2"].shape == subject.spine_mask.shape
True
"""
from nnunetv2_symtc.phantom.subject import PhantomConfig, PhantomSubject, generate_subject, on_grid
from nnunetv2_symtc.phantom.writers import write_spider, write_spineps, write_ssmspine

__all__ = ["PhantomConfig", "PhantomSubject", "generate_subject", "on_grid",
           "write_spider", "write_spineps", "write_ssmspine"]
