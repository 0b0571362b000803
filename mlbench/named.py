"""Components named in a config list: shift detectors (``monitor.detectors``,
``cycle.detectors``) and update policies (``cycle.policies``).

An entry is either the name of a preset that a class declares (``presets = {"bbsd_soft": {}}``:
a name and the constructor arguments it stands for) or a mapping with ``_target_`` — any
importable subclass, inside mlbench or not, with its constructor arguments. Both are built
here, so a built-in and a plugin go through the same code. The run offers shared values
(``alpha``, ``seed``, ...) to every constructor that declares a parameter of that name.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

from mlbench.errors import MlbenchError, first_line

T = TypeVar("T")


def import_file(path: Any) -> Any:
    """A loose ``.py`` file as a module named after it (as ``import <stem>`` would name it, so
    objects pickled from it find it again); its folder goes on the import path so it can import
    its neighbours. The same file is imported once per process."""
    import importlib.util
    import sys
    from pathlib import Path

    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(f"no file {p}")
    known = sys.modules.get(p.stem)
    if known is not None and getattr(known, "__file__", None) == str(p):
        return known
    if str(p.parent) not in sys.path:
        sys.path.insert(0, str(p.parent))
    spec = importlib.util.spec_from_file_location(p.stem, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[p.stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[p.stem]
        raise
    return module


def import_object(name: str) -> Any:
    """``pkg.module:attr``, ``path/file.py:attr`` or ``pkg.module.attr`` (the longest importable
    module prefix, then attributes). Raises what the import raises."""
    if ":" in name:
        mod, _, attr = name.rpartition(":")
        obj = import_file(mod) if mod.endswith(".py") else importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as e:
            if e.name is not None and not ".".join(parts[:i]).startswith(e.name):
                raise  # the module exists but one of its own imports is missing
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    return importlib.import_module(name)


def import_plugins(modules: Any) -> None:
    """Import the modules ``plugins`` names before anything is built, so the artifact formats
    and presets they define are registered (a ``_target_`` imports its own module anyway)."""
    for m in modules or []:
        try:
            importlib.import_module(str(m))
        except Exception as e:  # noqa: BLE001 - any failure of the user's module is one line
            raise MlbenchError(f"plugins: cannot import {m!r} ({type(e).__name__}: {first_line(e)})") from None


def subclasses(base: type) -> list[type]:
    """Every subclass of ``base`` imported so far, depth first, in definition order."""
    out: list[type] = []
    for c in base.__subclasses__():
        out += [c, *[s for s in subclasses(c) if s not in out]]
    return list(dict.fromkeys(out))


def presets(base: type) -> dict[str, tuple[type, dict[str, Any]]]:
    """Name → (class, constructor arguments) of every preset the subclasses of ``base`` declare."""
    out: dict[str, tuple[type, dict[str, Any]]] = {}
    for cls in subclasses(base):
        for name, kwargs in cls.__dict__.get("presets", {}).items():
            out[name] = (cls, dict(kwargs))
    return out


def _offer(cls: type, given: dict[str, Any], offered: dict[str, Any]) -> dict[str, Any]:
    """The offered values the constructor declares and the entry did not set."""
    params = inspect.signature(cls).parameters
    return {k: v for k, v in offered.items() if k in params and k not in given}


def _locate(target: str, where: str) -> type:
    from hydra.utils import (
        get_class,  # keeps `mlbench --help` from importing Hydra's instantiate machinery
    )
    try:
        return get_class(target)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's target
        raise MlbenchError(f"{where}: cannot import {target!r} ({first_line(e)})") from None


def build(entry: Any, base: type[T], where: str, **offered: Any) -> T:
    """One component from a config entry (a preset name or a ``_target_`` mapping); its
    ``name`` is the preset name, the mapping's ``name``, or the class's ``name`` attribute."""
    if isinstance(entry, str):
        known = presets(base)
        if entry not in known:
            close = difflib.get_close_matches(entry, known, n=1)
            raise MlbenchError(f"{where}: unknown {entry!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                               + f"; one of {', '.join(sorted(known))}, or a mapping with _target_")
        cls, kwargs = known[entry]
        name = entry
    elif isinstance(entry, Mapping) and "_target_" in entry:
        kwargs = {str(k): v for k, v in entry.items() if k not in ("_target_", "name")}
        cls = _locate(str(entry["_target_"]), where)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise MlbenchError(f"{where}: {entry['_target_']} is not a {base.__module__}.{base.__name__}")
        name = str(entry.get("name") or getattr(cls, "name", cls.__name__))
    else:
        raise MlbenchError(f"{where}: each entry is a name or a mapping with _target_, got {entry!r}")
    try:
        obj = cls(**kwargs, **_offer(cls, kwargs, offered))
    except MlbenchError:
        raise
    except (TypeError, ValueError) as e:
        raise MlbenchError(f"{where}: {name}: {first_line(e)}") from None
    obj.name = name
    return obj


def build_all(entries: Any, base: type[T], where: str, **offered: Any) -> list[T]:
    """:func:`build` for each entry; names must be distinct."""
    out = [build(e, base, where, **offered) for e in entries or []]
    names = [getattr(o, "name") for o in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MlbenchError(f"{where}: {', '.join(dup)} named more than once")
    return out


def target_of(obj: Any) -> str:
    """The ``_target_`` that builds ``obj``'s class (recorded in summary.json beside its section)."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def recorded_class(section: dict[str, Any], base: type[T], legacy: str, default: type[T]) -> type[T]:
    """The class that wrote a section of summary.json, so it can render it again: the recorded
    ``target``; for a section without one (or whose class cannot be imported here, a plugin not
    on the path), the subclass of ``base`` whose own ``legacy`` attribute (or name) matches the
    section's; else ``default``."""
    cls: Any = None
    if section.get("target"):
        try:
            from hydra.utils import (
                get_class,  # Hydra's locator: the same resolution as the config's _target_
            )
            cls = get_class(section["target"])
        except Exception:  # noqa: BLE001 - not importable here: render with what is known
            cls = None
    if isinstance(cls, type) and issubclass(cls, base):
        return cls
    want = section.get(legacy)
    return next((c for c in subclasses(base) if c.__dict__.get(legacy, c.__name__) == want), default)


def what_it_does(obj: Any) -> str:
    """One line about a component for the report: the first paragraph of its class's
    docstring (the class name when it has none)."""
    doc = inspect.getdoc(type(obj)) or type(obj).__name__
    return " ".join(doc.split("\n\n", 1)[0].split())
