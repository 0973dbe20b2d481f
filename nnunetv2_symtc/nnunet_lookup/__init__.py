"""The folder that ``nnUNet_extTrainer`` points at (see ``nnunetv2_symtc.discovery``).

Keep exactly one module here: nnU-Net imports every module of this folder while it searches.
"""
