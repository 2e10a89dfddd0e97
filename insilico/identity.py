"""One identity for every resumable job: what produced an ``out=`` folder, and the one check that a rerun is that job.

A resumable folder (``record_stimuli(out=)``, ``maximize``/``metamer``/``pgd``/
``controversial`` ``out=``, a gallery site) keeps a *job identity*, a JSON
object of three parts::

    {"identity": 1,
     "model":    {name: fingerprint},   # per model: class, module structure and settings, every parameter and buffer
     "stimuli":  {name: {"n": N, "chunks": {"<start>-<stop>": digest, ...}}},
     "settings": {...}}                 # every setting that changes the result

A rerun builds the same object and :func:`check` compares the two; any
difference is refused with a :class:`~insilico.errors.JobMismatchError` that
names every difference in words ("model parameters differ (0.weight)",
"stimuli 0..63 differ", "setting steps: 16 (folder) vs 32 (now)") and says
the fix (``out=Job(folder, overwrite=True)`` / ``--force``, or another folder).

Design
------
- **Model fingerprint** (:func:`model_fingerprint`): the class names of
  ``named_modules()``; each module's *settings* (:func:`module_settings`:
  its ``extra_repr()``, its public plain attributes such as
  ``negative_slope``, ``padding``, ``eps``, ``inplace``, and the source of
  its class's ``forward`` when the class is not torch's own); and, for
  every parameter and buffer, its name, dtype, shape and a digest of its
  bytes (a CPU copy, under ``no_grad``; bfloat16 and CUDA tensors alike).
  One pass over the weights: about 0.05 s for a ResNet-50
  (``benchmarks/fingerprint.py``). Per-module and per-tensor digests are
  kept so a refusal names the modules and tensors that changed.
  *Not covered* (documented limits): the ``training`` flag (every tool runs
  the model in eval); attributes that are private (``_name``), containers
  (dicts, sets) or objects other than plain values, tensors, dtypes and
  functions (their printed forms hold memory addresses, which differ in
  every process); code a ``forward`` calls outside its own body (helper
  functions, torch itself: upgrading torch is not seen); and a ``forward``
  whose source ``inspect`` cannot read (built in C, made by ``exec``): then
  only its class name counts.
- **Stimuli, per chunk, hashed once.** Stimuli are hashed in the chunks the
  job computes (:func:`chunk_digests`), never in a pass of their own where it
  can be avoided: a recording hashes each batch it has just read, right after
  launching the batch's forward pass (on an accelerator the hashing overlaps
  the computation), and stores the batch's digest with its progress (``progress-<rank>.json``, written
  atomically after every batch). On resume only the chunks already done are
  read and hashed again (no forward pass) and compared; the missing ones are
  recorded (and hashed) as usual. A complete folder re-asked with other
  stimuli is refused after reading them once. In-memory inputs of the design
  tools (images, references, labels, targets, start images) are hashed per
  chunk when the job starts: one read of tensors the job then runs many
  forward and backward passes over.
- **Digest**: ``sha1`` of the tensor's dtype, shape and bytes
  (:func:`digest`; hardware-accelerated on current CPUs, about 2 GB/s per
  core). A tensor over 4 MiB is hashed as a tree of fixed 4 MiB blocks, the
  blocks in parallel threads (``hashlib`` releases the GIL), so a batch of
  64 images of 224 px (38 MB) takes one core's 2 GB/s times the cores; the
  digest does not depend on the number of threads. It guards against
  accidents (another model, other images), not against an attacker who can
  write into the folder anyway.
- What is *not* in an identity: progress bars, ``shard``, ``batch_size`` of a
  recording (a stimulus's responses do not depend on its batch companions:
  the tool contract) and ``channels_last`` (memory order only).

Example
-------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
>>> x = torch.rand(5, 3)
>>> a = job_identity(net, {"steps": 16}, {"images": x}, chunk=2)
>>> sorted(a["stimuli"]["images"]["chunks"])
['0-2', '2-4', '4-5']
>>> check(a, job_identity(net, {"steps": 16}, {"images": x}, chunk=2), "out")  # the same job: passes
>>> x[3] += 1
>>> with torch.no_grad():
...     net[0].bias += 1
>>> check(a, job_identity(net, {"steps": 32}, {"images": x}, chunk=2), "out")
Traceback (most recent call last):
...
insilico.errors.JobMismatchError: out holds the work of another run (model parameters differ (0.bias); images 2..3 differ; setting steps: 16 (folder) vs 32 (now)): pass out=Job(folder, overwrite=True) (--force on the command line) to start over there, or choose another out= folder
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import inspect
import json
import os
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .errors import JobMismatchError

VERSION = 1
HASH = "sha1"
_SHORT = 20  # hex characters kept of a per-tensor or per-chunk digest (80 bits)
_BLOCK = 1 << 22  # bytes per block of a large tensor's hash tree (4 MiB)
_POOL: dict = {}


def digest(tensor: Any) -> str:
    """Hex digest of a tensor's (or array's) dtype, shape and bytes, from a CPU copy; the same on any device.

    Example
    -------
    >>> digest(torch.zeros(2, 3)) == digest(torch.zeros(2, 3)) != digest(torch.zeros(3, 2))
    True
    """
    if not torch.is_tensor(tensor):
        tensor = torch.as_tensor(np.asarray(tensor))
    h = hashlib.new(HASH)
    h.update(f"{str(tensor.dtype).replace('torch.', '')}|{list(tensor.shape)}|".encode())
    if tensor.device.type != "meta":
        data = _bytes(tensor)
        if len(data) <= _BLOCK:
            h.update(data)
        else:  # a hash tree of fixed blocks, hashed in parallel (hashlib releases the GIL): the same on any machine
            blocks = [data[i:i + _BLOCK] for i in range(0, len(data), _BLOCK)]
            h.update(b"blocks|")
            for block in _pool().map(lambda b: hashlib.new(HASH, b).digest(), blocks):
                h.update(block)
    return h.hexdigest()[:_SHORT]


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that hash large tensors' blocks (one per CPU core, at most 16), made on first use in each
    process (a forked child, e.g. a DataLoader worker, has none of its parent's threads)."""
    if _POOL.get("pid") != os.getpid():
        _POOL.update(pid=os.getpid(), pool=concurrent.futures.ThreadPoolExecutor(min(16, os.cpu_count() or 1),
                                                                                 "insilico-digest"))
    return _POOL["pool"]


def value_digest(value: Any) -> str:
    """Hex digest of a JSON-able value (labels, parameters); tensors inside count by :func:`digest`.

    Example
    -------
    >>> value_digest(["a", 1]) == value_digest(["a", 1]) != value_digest(["a", 2])
    True
    """
    text = json.dumps(value, sort_keys=True, default=_plain)
    return hashlib.new(HASH, text.encode()).hexdigest()[:_SHORT]


def _bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's values as raw bytes (C order, CPU), for any dtype numpy lacks (bfloat16, float8) too."""
    t = tensor.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    t = t.resolve_conj().resolve_neg().cpu().contiguous().reshape(-1)
    return memoryview(t.view(torch.uint8).numpy())


def model_fingerprint(model: nn.Module) -> dict:
    """What a model computes with: its class, module structure, each module's settings, every parameter and buffer.

    Returns
    -------
    dict
        ``class`` (the model's class), ``structure`` (digest of the class name
        of every ``named_modules()`` entry), ``modules`` (module name ->
        digest of its :func:`module_settings`), ``tensors`` (name ->
        ``"dtype[shape]:digest"`` for every parameter and buffer) and
        ``digest`` (of all of it: equal digests, equal models).

    Example
    -------
    >>> a = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    >>> f = model_fingerprint(a)
    >>> f["class"], sorted(f["tensors"])[:2], f["tensors"]["0.weight"].split(":")[0]
    ('torch.nn.modules.container.Sequential', ['0.bias', '0.weight'], 'float32[2,1,3,3]')
    >>> _ = a[1].running_mean.add_(1)  # a buffer changes the fingerprint too
    >>> model_fingerprint(a)["digest"] != f["digest"]
    True
    >>> a[0].padding = (1, 1)  # so does a setting (here the convolution's padding)
    >>> g = model_fingerprint(a)
    >>> g["modules"]["0"] != f["modules"]["0"], g["modules"]["1"] == f["modules"]["1"]
    (True, True)
    """
    structure = "\n".join(f"{name}={_class_name(type(m))}" for name, m in model.named_modules())
    modules = {name: value_digest(module_settings(m)) for name, m in model.named_modules()}
    tensors = {}
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            shape = ",".join(str(s) for s in t.shape)
            tensors[name] = f"{str(t.dtype).replace('torch.', '')}[{shape}]:{digest(t)}"
    whole = hashlib.new(HASH, structure.encode())
    whole.update(json.dumps(modules, sort_keys=True).encode())
    whole.update(json.dumps(tensors, sort_keys=True).encode())
    return {"class": _class_name(type(model)), "structure": hashlib.new(HASH, structure.encode()).hexdigest()[:_SHORT],
            "modules": modules, "tensors": tensors, "digest": whole.hexdigest()}


_PLAIN = (bool, int, float, str, type(None), torch.dtype)


def module_settings(module: nn.Module) -> dict:
    """What configures one module's forward beyond its tensors (see the module docstring for what is not covered).

    Returns
    -------
    dict
        ``class``, ``repr`` (its ``extra_repr()``), ``attributes`` (public
        attributes holding plain values, tuples/lists of them, tensors by
        digest or functions by name; ``training`` left out) and ``forward``
        (a digest of the source of its class's ``forward`` when the class is
        not defined in torch; ``"unreadable"`` when ``inspect`` cannot read it).

    Example
    -------
    >>> a, b = torch.nn.LeakyReLU(0.1), torch.nn.LeakyReLU(0.3)
    >>> module_settings(a)["attributes"]["negative_slope"], module_settings(a) != module_settings(b)
    (0.1, True)
    """
    attributes = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key == "training":
            continue
        if _plain_setting(value):
            attributes[key] = value
        elif torch.is_tensor(value):
            attributes[key] = f"tensor:{digest(value)}"
        elif callable(value) and hasattr(value, "__qualname__") and not isinstance(value, nn.Module):
            attributes[key] = f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    try:
        text = module.extra_repr()
    except Exception:  # a user's extra_repr that fails must not stop a recording
        text = "unreadable"
    return {"class": _class_name(type(module)), "repr": text, "attributes": attributes,
            "forward": _forward_source(type(module))}


def _plain_setting(value: Any) -> bool:
    if isinstance(value, (tuple, list, torch.Size)):
        return all(_plain_setting(v) for v in value)
    return isinstance(value, _PLAIN)


_SOURCES: dict = {}


def _forward_source(cls: type) -> str:
    """Digest of the source of ``cls.forward`` (cached per class); "" for torch's own classes (their settings
    say what they do; the torch version is not part of an identity), "unreadable" when it has none."""
    if cls not in _SOURCES:
        forward = getattr(cls, "forward", None)
        if (getattr(forward, "__module__", "") or "").split(".")[0] == "torch":
            _SOURCES[cls] = ""
        else:
            try:
                _SOURCES[cls] = value_digest(inspect.getsource(forward))
            except (OSError, TypeError):
                _SOURCES[cls] = "unreadable"
    return _SOURCES[cls]


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def chunk_digests(tensor: Any, chunk: int) -> dict:
    """``{"n": N, "chunks": {"<a>-<b>": digest}}`` of a per-sample tensor (N, ...) cut into aligned chunks of ``chunk``.

    Example
    -------
    >>> sorted(chunk_digests(torch.rand(5, 2), 2)["chunks"])
    ['0-2', '2-4', '4-5']
    """
    if not torch.is_tensor(tensor):
        tensor = torch.as_tensor(np.asarray(tensor))
    tensor = tensor.detach().cpu()
    n, size = len(tensor), max(1, int(chunk))
    return {"n": n, "chunks": {f"{a}-{min(a + size, n)}": digest(tensor[a:a + size]) for a in range(0, n, size)}}


def job_identity(model: nn.Module | Mapping[str, nn.Module] | None, settings: Mapping | None = None,
                 stimuli: Mapping[str, Any] | None = None, chunk: int | None = None) -> dict:
    """The JSON-able identity of a job (see the module docstring).

    Parameters
    ----------
    model : nn.Module, dict name -> nn.Module, or None
        The model (stored as ``{"model": fingerprint}``), or several (a model group).
    settings : dict
        Every setting that changes the result (JSON-able; tuples become lists).
    stimuli : dict name -> tensor (N, ...) or ``{"n", "chunks"}``, optional
        Per-sample inputs (images, references, labels, targets, start
        images), hashed in chunks of ``chunk`` samples; None values are kept
        as "none given". A dict already holding ``n``/``chunks`` is kept as is.
    chunk : int, optional
        Samples per chunk (default: all in one).
    """
    models = {} if model is None else {"model": model} if isinstance(model, nn.Module) else dict(model)
    inputs = {}
    for name, value in (stimuli or {}).items():
        if value is None or (isinstance(value, dict) and "n" in value):
            inputs[name] = value
        else:
            inputs[name] = chunk_digests(value, chunk or len(value))
    identity = {"identity": VERSION, "model": {k: model_fingerprint(m) for k, m in models.items()},
                "stimuli": inputs, "settings": dict(settings or {})}
    return json.loads(json.dumps(identity, default=_plain))


def _plain(value: Any) -> Any:
    """JSON for what JSON lacks: tensors, arrays and modules by digest (their printed forms elide values),
    functions by name, other objects (objectives, rules, transforms) by class and attributes, the rest by str."""
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        return f"tensor:{digest(value)}"
    if isinstance(value, nn.Module):
        return f"module:{model_fingerprint(value)['digest']}"
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    fields = getattr(value, "__dict__", None)
    if fields is None and hasattr(type(value), "__slots__"):
        fields = {k: getattr(value, k) for k in type(value).__slots__ if hasattr(value, k)}
    if isinstance(fields, dict):
        return {"__class__": _class_name(type(value)), **{str(k): v for k, v in fields.items()}}
    return str(value)


def check(stored: Mapping | None, current: Mapping, where: str) -> None:
    """Refuse ``current`` where ``stored`` is another job; silent when they are the same.

    Raises
    ------
    JobMismatchError
        ``where`` holds another job's work (or no identity at all); the
        message names every difference and the fix; ``differences`` lists them.
    """
    version = stored.get("identity") if isinstance(stored, Mapping) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise JobMismatchError(
            f"{where} holds work with a job identity of version {version}, made by a newer insilico (this one reads "
            f"version {VERSION}), so it cannot be checked against this run: upgrade insilico, or pass out=Job(folder, overwrite=True) "
            "(--force on the command line) to start over there, or choose another out= folder",
            [f"job identity version {version} (newer than {VERSION})"])
    if version != VERSION:
        raise JobMismatchError(
            f"{where} holds work without a job identity (made by an older insilico, or not by this tool), so "
            "it cannot be checked against this run: pass out=Job(folder, overwrite=True) (--force on the command line) to start "
            "over there, or choose another out= folder", ["no job identity"])
    current = json.loads(json.dumps(current, default=_plain))
    differences = [*_model_differences(stored.get("model", {}), current.get("model", {})),
                   *_stimulus_differences(stored.get("stimuli", {}), current.get("stimuli", {})),
                   *_setting_differences(stored.get("settings", {}), current.get("settings", {}))]
    if differences:
        raise JobMismatchError(
            f"{where} holds the work of another run ({'; '.join(differences)}): pass out=Job(folder, overwrite=True) (--force on "
            "the command line) to start over there, or choose another out= folder", differences)


def _model_differences(old: Mapping, new: Mapping) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        label = "model" if set(old) | set(new) == {"model"} else f"model {name!r}"
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            out.append(f"{label}: {'given' if a else 'none'} (folder) vs {'given' if b else 'none'} (now)")
            continue
        if a.get("digest") == b.get("digest"):
            continue
        if a.get("class") != b.get("class"):
            out.append(f"{label}: {a.get('class')} (folder) vs {b.get('class')} (now)")
            continue
        ta, tb = a.get("tensors", {}), b.get("tensors", {})
        if a.get("structure") != b.get("structure") or set(ta) != set(tb):
            only_a, only_b = sorted(set(ta) - set(tb)), sorted(set(tb) - set(ta))
            extra = "".join(f", {side}: {_few(names)}" for side, names in
                            (("only in the folder's", only_a), ("only in this", only_b)) if names)
            out.append(f"{label} structure differs (other modules{extra})")
        ma, mb = a.get("modules"), b.get("modules", {})
        if ma is None:
            out.append(f"{label}: the folder's fingerprint has no module settings (made by an older insilico)")
        elif set(ma) == set(mb) and ma != mb:
            out.append(f"{label} module settings differ ({_few(sorted(k for k in ma if ma[k] != mb[k]))})")
        changed = sorted(k for k in set(ta) & set(tb) if ta[k] != tb[k])
        reshaped = [f"{k}: {ta[k].split(':')[0]} vs {tb[k].split(':')[0]}" for k in changed
                    if ta[k].split(":")[0] != tb[k].split(":")[0]]
        if reshaped:
            out.append(f"{label} tensor shapes or dtypes differ ({_few(reshaped)})")
        elif changed:
            out.append(f"{label} parameters differ ({_few(changed)})")
    return out


def _stimulus_differences(old: Mapping, new: Mapping) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new), key=lambda k: (k != "stimuli", k)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            if a != b:
                out.append(f"{name}: {'given' if a else 'none'} (folder) vs {'given' if b else 'none'} (now)")
            continue
        if a.get("n") != b.get("n"):
            out.append(f"{name}: {a.get('n')} (folder) vs {b.get('n')} (now)")
            continue
        ca, cb = a.get("chunks", {}), b.get("chunks", {})
        differ = sorted((_range(k) for k in set(ca) | set(cb) if ca.get(k) != cb.get(k)))
        if differ:
            out.append(f"{name} {_few([f'{s}..{e - 1}' for s, e in differ], 4)} differ")
    return out


def _setting_differences(old: Mapping, new: Mapping) -> list[str]:
    return [f"setting {k}: {_show(old, k)} (folder) vs {_show(new, k)} (now)"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) or (k in old) != (k in new)]


def _range(key: str) -> tuple[int, int]:
    start, stop = key.split("-")
    return int(start), int(stop)


def _few(items: list, keep: int = 3) -> str:
    return ", ".join(items[:keep]) + (f", +{len(items) - keep} more" if len(items) > keep else "")


def _show(settings: Mapping, key: str) -> str:
    text = json.dumps(settings[key]) if key in settings else "(absent)"
    return text if len(text) <= 60 else text[:57] + "..."


def fingerprint_differences(stored: Mapping, current: Mapping) -> list[str]:
    """What differs between two :func:`model_fingerprint` results, as in :func:`check`'s message (empty: same model).

    Example
    -------
    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> fingerprint_differences(model_fingerprint(a), model_fingerprint(a))
    []
    >>> fingerprint_differences(model_fingerprint(a), model_fingerprint(b))
    ['model parameters differ (bias, weight)']
    """
    return _model_differences({"model": dict(stored)}, {"model": dict(current)})


__all__ = ["HASH", "VERSION", "check", "chunk_digests", "digest", "fingerprint_differences", "job_identity",
           "model_fingerprint", "module_settings",
           "value_digest"]
