"""Install nnunetv2_symtc.

The design card fixes three top-level source folders; they are installed as one package:
``nnunetv2_symtc/`` -> ``nnunetv2_symtc``, ``trainers/`` -> ``nnunetv2_symtc.trainers`` and
``dataset_conversion/`` -> ``nnunetv2_symtc.dataset_conversion``.

``nnunetv2_symtc-nnunet.pth`` is installed into site-packages (as a data file, so that it works for
both ``pip install .`` and ``pip install -e .``). At interpreter start-up it adds our trainer shim
folder to ``nnUNet_extTrainer``, so ``nnUNetv2_train -tr SymTCTrainer`` works without exports.
"""
import os
import sysconfig

from setuptools import find_packages, setup
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))


def _site_packages_relative_to_prefix() -> str:
    paths = sysconfig.get_paths()
    return os.path.relpath(paths["purelib"], paths["data"])


def _version() -> str:
    with open(os.path.join(HERE, "nnunetv2_symtc", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("__version__ not found in nnunetv2_symtc/__init__.py")


class _DistributionWithEditableData(Distribution):
    """setuptools' ``editable_wheel`` installs data files only if ``dist.has_data()`` exists, and
    ``Distribution`` names it ``has_data_files``; without this, ``pip install -e .`` skips the hook."""

    def has_data(self) -> bool:
        return self.has_data_files()


library_packages = find_packages(include=["nnunetv2_symtc", "nnunetv2_symtc.*"])
package_dir = {"nnunetv2_symtc": "nnunetv2_symtc"}
for source_folder in ("trainers", "dataset_conversion"):
    package_dir[f"nnunetv2_symtc.{source_folder}"] = source_folder
    library_packages.append(f"nnunetv2_symtc.{source_folder}")
    library_packages += [f"nnunetv2_symtc.{source_folder}.{p}" for p in find_packages(source_folder)]

setup(
    name="nnunetv2_symtc",
    version=_version(),
    description="nnU-Net v2 plugin for lumbar spine MRI: SymTC, size-adaptive CE, MSFF U-Net, "
    "SPINEPS-style two-phase instance segmentation, converters and evaluation.",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    distclass=_DistributionWithEditableData,
    packages=library_packages,
    package_dir=package_dir,
    data_files=[(_site_packages_relative_to_prefix(), ["nnunetv2_symtc-nnunet.pth"])],
    install_requires=[
        "nnunetv2>=2.8.1,<2.9",
        "torch",  # not pinned: pip resolves torch and torchvision together with nnunetv2
        "SimpleITK",
        "batchgenerators",
        "batchgeneratorsv2",  # synthesis/transform.py: the BasicTransform nnU-Net 2.8 composes
        "numpy",
        "scipy",
        "scikit-image",
        "dynamic-network-architectures",
        "acvl-utils",  # inference/two_phase.py: nnU-Net's pad_nd_image
        "connected-components-3d",  # cc3d, losses/size_adaptive.py
        "tqdm",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "medpy", "tptbox"]},
    entry_points={"console_scripts": ["symtc = nnunetv2_symtc.cli:main"]},
)
