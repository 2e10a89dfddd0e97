"""Exceptions raised by insilico. Every message says what went wrong and how to fix it."""


class InsilicoError(Exception):
    """Base class of every error insilico raises on purpose."""


class UnitError(InsilicoError, LookupError):
    """A unit address that does not exist in the model: unknown module, bad index, missing step."""

    def __str__(self):  # LookupError would quote the message like a KeyError; keep it readable
        return str(self.args[0]) if self.args else ""


class StimulusError(InsilicoError, ValueError):
    """Stimuli of the wrong shape, range or dtype, or containing NaN/inf."""
