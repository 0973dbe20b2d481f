"""Exceptions for problems with the user's input.

``symtc`` reports an ``InputError`` as one line (``symtc COMMAND: error: MESSAGE``); every other
exception is a bug or an environment failure (CUDA out of memory, a full disk, ...) and keeps its
traceback. Raise these only where our code checks user input, with a message that names the file,
folder, flag or dataset and says what is wrong.
"""


class InputError(ValueError):
    """A problem with the user's input: a flag, a dataset, a file's content or a pairing of files.

    A ``ValueError``, so callers that catch ``ValueError`` keep working."""


class InputFileError(InputError, OSError):
    """An input file or folder that is missing, unreadable or empty.

    Also an ``OSError``, so callers that catch ``OSError`` keep working."""
