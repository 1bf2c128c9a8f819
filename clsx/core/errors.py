"""User-facing errors.

Anything raised as a :class:`ClsxError` is a mistake in the input (a missing file, an unknown model,
a checkpoint for another network); the CLI prints it as one line and exits with ``exit_code``.
Every other exception is a bug in clsx and keeps its traceback.
"""

from __future__ import annotations

import re

#: C0 and C1 control characters, DEL, and the bidirectional overrides and isolates ("Trojan Source").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def terminal_safe(text: str) -> str:
    """``text`` as clsx shows it on a terminal line (stderr, ``clsx info``): file names, sidecar fields
    and library messages come from other people, so a control character (an escape sequence that
    clears the screen or sets the title, a carriage return that overwrites the line, a line break
    that forges a second ``clsx:`` line) or a bidirectional override is shown as a visible escape
    (``\\x1b``, ``\\n``, ``\\u202e``) instead of acting. Data outputs (CSV, JSON) keep names exact."""
    return _UNSAFE.sub(lambda m: _NAMED.get(m.group()) or (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                                        else f"\\u{ord(m.group()):04x}"), text)


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
