"""The public API, pinned (plenoptic's test_api.py): names and ``inspect.signature`` strings.

``tests/contract/api.json`` holds, for every public name of ``insilico`` and of its tool packages, its
signature (a class: its constructor's; the classes exported by ``insilico`` itself also each public
method's). A rename, a new or removed parameter, a changed default fails here: changing the API is
done on purpose, by rewriting the file and reviewing its diff::

    python tests/contract/test_api.py        # rewrites tests/contract/api.json
"""
from __future__ import annotations

import importlib
import inspect
import json
import pathlib
import sys

PINNED = pathlib.Path(__file__).with_name("api.json")
#: Namespaces whose ``__all__`` is public API (``insilico``'s lazy tools included; the design package
#: re-exports nothing, its modules are named like their tools).
NAMESPACES = ("insilico", "insilico.experiments", "insilico.attribution", "insilico.rsa", "insilico.encoding",
              "insilico.gallery", "insilico.registry", "insilico.design.maximize", "insilico.design.metamers",
              "insilico.design.adversarial", "insilico.design.controversial", "insilico.design.mad",
              "insilico.design.eigendistortions", "insilico.design.population_control", "insilico.design.closed_loop",
              "insilico.design.transfer")
#: Tools defined in modules that are not exported by a namespace (the design modules, the predictor).
TOOL_NAMESPACE = "insilico.registry.tools()"


def _signature(obj) -> list[str]:
    """The signature as a list: each parameter as ``str(parameter)``, the ``/`` and ``*`` markers where
    ``str(signature)`` has them, and ``-> annotation`` last (a diff then names the parameter that changed)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins, some C types
        return ["<no signature>"]
    parts, kinds = [], [p.kind for p in sig.parameters.values()]
    for i, p in enumerate(sig.parameters.values()):
        first_keyword_only = p.kind is p.KEYWORD_ONLY and (i == 0 or kinds[i - 1] is not p.KEYWORD_ONLY)
        if first_keyword_only and p.VAR_POSITIONAL not in kinds:
            parts.append("*")
        parts.append(str(p))
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(kinds) or kinds[i + 1] is not p.POSITIONAL_ONLY):
            parts.append("/")
    if sig.return_annotation is not sig.empty:
        parts.append(f"-> {inspect.formatannotation(sig.return_annotation)}")
    return parts


def _members(cls) -> dict[str, list[str]]:
    out = {}
    for name, member in vars(cls).items():
        if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod))):
            continue
        out[f"{cls.__name__}.{name}"] = _signature(getattr(cls, name))
    return out


def current_api() -> dict[str, dict[str, list[str]]]:
    """``{namespace: {name: signature}}`` of the imported insilico (the working copy's, run from its root)."""
    from insilico.registry import tools

    api: dict[str, dict[str, list[str]]] = {}
    for namespace in NAMESPACES:
        module = importlib.import_module(namespace)
        names = {}
        for name in sorted(getattr(module, "__all__", ())):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue
            names[name] = _signature(obj)
            if namespace == "insilico" and inspect.isclass(obj) and not issubclass(obj, Exception):
                names.update(_members(obj))
        api[namespace] = names
    api[TOOL_NAMESPACE] = {name: [tool.target, *_signature(tool.load())] for name, tool in sorted(tools().items())}
    return api


def test_the_public_api_is_the_pinned_one():
    pinned = json.loads(PINNED.read_text())
    now = current_api()
    problems = []
    for namespace in sorted(set(pinned) | set(now)):
        old, new = pinned.get(namespace, {}), now.get(namespace, {})
        problems += [f"{namespace}.{n}: removed" for n in sorted(set(old) - set(new))]
        problems += [f"{namespace}.{n}: new {new[n]}" for n in sorted(set(new) - set(old))]
        for n in sorted(set(old) & set(new)):
            if old[n] != new[n]:
                gone = [p for p in old[n] if p not in new[n]]
                came = [p for p in new[n] if p not in old[n]]
                problems.append(f"{namespace}.{n}: " + (", ".join([*(f"-{p}" for p in gone), *(f"+{p}" for p in came)])
                                                         or "parameters reordered"))
    assert not problems, ("the public API changed; if on purpose, run `python tests/contract/test_api.py` and commit "
                          "tests/contract/api.json:\n" + "\n".join(problems))


def test_the_pin_is_stable_text():
    """No memory addresses or other run-dependent text in a pinned signature (it could never match)."""
    text = json.dumps(current_api())
    assert " at 0x" not in text


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).parents[2]))
    PINNED.write_text(json.dumps(current_api(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINNED}")
