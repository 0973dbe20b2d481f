"""``python -m nnunetv2_symtc`` is the ``symtc`` command."""
from nnunetv2_symtc.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
