"""setup.py declares every third-party distribution the installed package imports."""
import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("nnunetv2_symtc", "trainers", "dataset_conversion")
OUR_TOP_LEVEL = {"nnunetv2_symtc", "trainers", "dataset_conversion"}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared_requirements() -> set:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    requires = next(k.value for k in call.keywords if k.arg == "install_requires")
    return {_normalised(re.split(r"[<>=!~\[; ]", ast.literal_eval(item))[0]) for item in requires.elts}


def _imported_top_level_modules() -> dict:
    """Top-level module name -> first file importing it, over every installed source file."""
    found = {}
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], path.relative_to(ROOT))
    return found


def test_every_imported_third_party_distribution_is_declared_in_setup_py():
    distributions = packages_distributions()
    declared = _declared_requirements()
    missing = {}
    for module, path in _imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module in OUR_TOP_LEVEL:
            continue
        owners = {_normalised(d) for d in distributions.get(module, [module])}
        if not owners & declared:
            missing[module] = (str(path), sorted(owners))
    assert not missing, f"imported but not in setup.py install_requires: {missing}"
