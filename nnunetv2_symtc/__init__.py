"""nnU-Net v2 plugin for lumbar spine MRI segmentation (SymTC, size-adaptive CE, SPINEPS-style).

Importing this package is cheap (no torch): the start-up hook in ``discovery`` imports it in
every Python process of the environment.
"""
__version__ = "0.1.0"
