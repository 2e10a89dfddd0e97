"""The version of insilico (read by every module that records versions, without importing the package root),
and its distribution name.

The distribution is ``insilico-ephys`` (``pip install insilico-ephys``); the import name stays ``insilico``.
The PyPI name ``insilico`` belongs to an unrelated ChEMBL package that also installs a top-level
``insilico/`` folder: installed beside this library, the two overwrite each other's files, so
``import insilico`` warns when it finds it (:func:`shadowing_distribution`).

Example
-------
>>> DISTRIBUTION
'insilico-ephys'
>>> shadowing_distribution(lambda name: None) is None
True
"""

__version__ = "0.1.0"

#: The name pip installs this library under.
DISTRIBUTION = "insilico-ephys"
#: The start of this library's summary (its metadata), to tell an old install of it under another name from a
#: foreign package.
SUMMARY = "In-silico electrophysiology"
#: Distributions known to install a top-level ``insilico`` package of their own.
CLASHING = ("insilico",)


def _installed(name: str):
    import importlib.metadata

    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def shadowing_distribution(find=_installed) -> str | None:
    """A message naming the other installed distribution that owns the import name ``insilico``, or None.

    Only the distributions in :data:`CLASHING` are looked up (a lookup by name costs under a millisecond,
    while scanning every installed distribution costs a third of a second at each import); this library
    installed under its former name ``insilico`` is recognised by its summary and is not reported.
    ``find(name)`` returns the distribution's metadata object or None (tests pass their own).
    """
    for name in CLASHING:
        dist = find(name)
        if dist is None or str(dist.metadata.get("Summary") or "").startswith(SUMMARY):
            continue
        return (f"the import name 'insilico' is also installed by the distribution {name!r} {dist.version} "
                f"({dist.metadata.get('Summary') or 'no summary'}), which is not this library ({DISTRIBUTION}, "
                f"in-silico electrophysiology): the two overwrite each other's files. Fix: pip uninstall {name} "
                f"{DISTRIBUTION}, then pip install {DISTRIBUTION}")
    return None
