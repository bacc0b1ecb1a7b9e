"""Errors that reach the user as one line: what went wrong, where, and how to fix it."""

from __future__ import annotations


class MribenchError(Exception):
    """A problem with the user's input or setup, reported without a traceback.

    The message names the file or value at fault and says what to do about it. The CLI
    prints ``error: <message>`` and exits with status 2.
    """


class DataError(MribenchError):
    """A data set, image, mask or split manifest cannot be used as it is."""


class ParamError(MribenchError):
    """A method's parameter is out of its allowed range or choices."""


class MethodFailed(MribenchError):
    """A method raised while fitting or predicting; the run records it and goes on."""
