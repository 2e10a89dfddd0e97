"""Attribution: what in an image drives a unit.

The tools (the table below is generated from their registrations,
:func:`insilico.registry.tool_table`) use captum where it has the method, and
the Zeiler & Fergus deconvolution where it does not.
"""
from ..registry import export as _export
from ..registry import tool_table as _tool_table

__all__ = _export(__name__, globals())  # every registered tool of the package (insilico.registry.discover)
if __doc__:  # None under python -OO
    __doc__ += "\n" + _tool_table(__name__)
