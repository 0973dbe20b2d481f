"""Re-exports our trainers for nnU-Net's lookup; the classes live in ``nnunetv2_symtc.trainers``."""
from nnunetv2_symtc.trainers import *  # noqa: F401,F403
