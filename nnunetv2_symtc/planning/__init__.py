"""Plans writers: nnU-Net plans whose configurations name our networks (``architecture`` entries).

``plan_symtc`` (``symtc plan-symtc``) writes SymTC / SymTC3D plans sized for a GPU memory budget;
``plan_msff`` (``symtc plan-msff``) writes plans naming the MSFF U-Net. Both copy a source plans
file and keep its ``data_identifier``, so the preprocessed data is reused.
"""
from nnunetv2_symtc.planning.msff import plan_msff  # noqa: F401
from nnunetv2_symtc.planning.symtc import plan_symtc  # noqa: F401

__all__ = ["plan_symtc", "plan_msff"]
