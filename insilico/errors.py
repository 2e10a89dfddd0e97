"""Exceptions raised by insilico. Every message says what went wrong and how to fix it."""


class InsilicoError(Exception):
    """Base class of every error insilico raises on purpose."""


class UnitError(InsilicoError, LookupError):
    """A unit address that does not exist in the model: unknown module, bad index, missing step."""

    def __str__(self):  # LookupError would quote the message like a KeyError; keep it readable
        return str(self.args[0]) if self.args else ""


class StimulusError(InsilicoError, ValueError):
    """Stimuli of the wrong shape, range or dtype, or containing NaN/inf."""


class ModelInputError(StimulusError, RuntimeError):
    """The model failed on images of the size a tool made or used (``size=``; ``--size`` on the command line):
    too small for its convolutions, or not its fixed input size. The message names the option, the images'
    shape and the model's own error; a RuntimeError too, as the model's own error was."""


class SavedFileError(InsilicoError):
    """A file insilico reads (a result, a chunk, a recording's metadata, a cache) is missing, damaged,
    not insilico's, names a class that is not on the allow-list, or comes from an incompatible format
    version. ``path`` names the file."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class JobMismatchError(InsilicoError):
    """A resumable ``out=`` folder holds the work of another job (another model, other stimuli or other
    settings). ``differences`` names what differs; pass ``out=Job(folder, overwrite=True)`` (``--force``) to start over."""

    def __init__(self, message: str, differences=()):
        super().__init__(message)
        self.differences = list(differences)


class NumericsError(InsilicoError, FloatingPointError):
    """A loss, gradient or image became NaN or inf (typically a float16/bfloat16 model whose values overflow
    its range). Never returned as a result: the message names the step, the model's dtype and the fix
    (``model.float()``, or ``precision=`` to run a float32 model under autocast)."""


class UnsupportedDtypeError(InsilicoError, NotImplementedError):
    """An operation has no kernel for the model's dtype on its device (e.g. ``local_response_norm`` or ``cdist``
    in float16/bfloat16 on a CPU). The message names the operation (torch's own message) and the fix
    (``model.float()``, or the GPU); a NotImplementedError too, as torch's error was."""
