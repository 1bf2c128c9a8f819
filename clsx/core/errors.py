"""User-facing errors.

Anything raised as a :class:`ClsxError` is a mistake in the input (a missing file, an unknown model,
a checkpoint for another network); the CLI prints it as one line and exits with ``exit_code``.
Every other exception is a bug in clsx and keeps its traceback.
"""

from __future__ import annotations


class ClsxError(Exception):
    """Base class of user errors: one line on stderr, exit status 1."""

    exit_code = 1


class ModelNotFoundError(ClsxError):
    """A model name that no source knows."""


class WeightsError(ClsxError):
    """A checkpoint that is missing, corrupt, unsafe, or does not fit the model."""


class ImageError(ClsxError):
    """A file that cannot be decoded as an image."""


class MissingDependencyError(ClsxError):
    """An optional package is not installed; the message names the extra that installs it."""


class SpecError(ClsxError):
    """An invalid preprocessing or model specification (bad --input-size, --mean, ...)."""


class OutputExistsError(ClsxError):
    """Refusing to overwrite an existing output without --force."""


class GateFailedError(ClsxError):
    """A verification, parity or accuracy gate was missed (exit status 3)."""

    exit_code = 3
