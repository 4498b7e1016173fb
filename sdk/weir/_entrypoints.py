"""Loading a flow from a deployment's entrypoint.

An entrypoint is ``path/to/file.py:function`` (the path relative to the
working directory) or ``package.module:function`` (importable with the
working directory on ``sys.path``). ``weir deploy`` and the worker both load
flows through :func:`load_flow`; every failure is one ``InvalidArgument``
naming the field ``entrypoint``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from weir.errors import InvalidArgument
from weir.flows import Flow

__all__ = ["entrypoint_for", "load_flow"]

_FIELD = "entrypoint"


def load_flow(entrypoint: str, working_directory: str | os.PathLike[str] | None = None) -> Flow[Any, Any]:
    """The :class:`weir.Flow` an entrypoint names.

    Relative file paths and module imports are resolved against
    ``working_directory`` (default: the current directory), which is put on
    ``sys.path`` so the flow's own imports of sibling modules work.
    """
    target, sep, attr = entrypoint.rpartition(":")
    if not sep or not target or not attr:
        raise InvalidArgument(
            f"entrypoint {entrypoint!r}: expected 'path/to/file.py:function' or 'package.module:function'",
            field=_FIELD,
        )
    base = Path(working_directory or Path.cwd()).resolve()
    if target.endswith(".py") or "/" in target or os.sep in target:
        module = _load_file(entrypoint, (base / target).resolve(), base)
    else:
        module = _import_module(entrypoint, target, base)
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise InvalidArgument(
                f"entrypoint {entrypoint!r}: {target} has no attribute {attr!r}", field=_FIELD
            ) from None
    if not isinstance(value, Flow):
        raise InvalidArgument(
            f"entrypoint {entrypoint!r}: {attr} is a {type(value).__name__}, not a flow (decorate it with @flow)",
            field=_FIELD,
        )
    return value


def entrypoint_for(flow: Flow[Any, Any], working_directory: str | os.PathLike[str] | None = None) -> str:
    """``<source file relative to working_directory>:<function>`` for a flow.

    A file outside ``working_directory`` keeps its absolute path.
    """
    fn = flow.fn
    if "<locals>" in fn.__qualname__:
        raise InvalidArgument(
            f"flow {flow.name!r} is defined inside a function; a worker can only load module-level flows",
            field=_FIELD,
        )
    source = getattr(sys.modules.get(fn.__module__), "__file__", None)
    if source is None:
        raise InvalidArgument(f"flow {flow.name!r} has no source file; give an entrypoint", field=_FIELD)
    base = Path(working_directory or Path.cwd()).resolve()
    path = Path(source).resolve()
    shown = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
    return f"{shown}:{fn.__qualname__}"


def _add_to_path(directory: Path) -> None:
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))


def _load_file(entrypoint: str, path: Path, base: Path) -> ModuleType:
    if not path.is_file():
        raise InvalidArgument(f"entrypoint {entrypoint!r}: no file {path}", field=_FIELD)
    # A flow loaded twice (a worker running many runs) is one module, executed once.
    digest = hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()
    name = f"__weir_flow_{path.stem}_{digest}"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    _add_to_path(base)
    _add_to_path(path.parent)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidArgument(f"entrypoint {entrypoint!r}: {path} is not a Python file", field=_FIELD)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise InvalidArgument(
            f"entrypoint {entrypoint!r}: importing {path} failed: {type(exc).__name__}: {exc}", field=_FIELD
        ) from exc
    # The module has a made-up name no other process can import: functions
    # from it must travel by value to process-pool workers.
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    return module


def _import_module(entrypoint: str, target: str, base: Path) -> ModuleType:
    _add_to_path(base)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise InvalidArgument(
                f"entrypoint {entrypoint!r}: no module {exc.name!r} (looked in {base} and sys.path)", field=_FIELD
            ) from None
        raise InvalidArgument(f"entrypoint {entrypoint!r}: importing {target} failed: {exc}", field=_FIELD) from exc
    except Exception as exc:
        raise InvalidArgument(
            f"entrypoint {entrypoint!r}: importing {target} failed: {type(exc).__name__}: {exc}", field=_FIELD
        ) from exc
