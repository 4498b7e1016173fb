"""Where task and flow results are kept, and how they are encoded.

A persisted result is written through a :class:`ResultStorage` with a
:class:`Serializer`; its reference (``<storage>:<key>``) rides on the final
state as ``result_ref``, so a later process (or ``weir flow-run inspect``)
can read it back. The default storage is a folder under ``WEIR_HOME``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

from weir.errors import InvalidArgument

__all__ = ["JSONSerializer", "LocalFileSystem", "PickleSerializer", "ResultStorage", "Serializer", "load_result"]


class Serializer(Protocol):
    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JSONSerializer:
    name = "json"

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class PickleSerializer:
    """cloudpickle: any Python object, read back by the same code."""

    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        import cloudpickle

        return bytes(cloudpickle.dumps(value))

    def loads(self, data: bytes) -> Any:
        import pickle

        return pickle.loads(data)


SERIALIZERS: dict[str, Serializer] = {"json": JSONSerializer(), "pickle": PickleSerializer()}


def serializer_for(value: Any) -> Serializer:
    if value is None:
        return SERIALIZERS["pickle"]
    if isinstance(value, str):
        try:
            return SERIALIZERS[value]
        except KeyError:
            raise InvalidArgument(f"unknown result_serializer {value!r}; use 'json' or 'pickle'") from None
    return value  # type: ignore[no-any-return]


class ResultStorage(Protocol):
    scheme: str

    def write(self, key: str, data: bytes) -> str: ...

    def read(self, ref: str) -> bytes: ...


class LocalFileSystem:
    """Results as files in a folder (default ``WEIR_HOME/results``)."""

    scheme = "file"

    def __init__(self, basepath: str | Path) -> None:
        self.basepath = Path(basepath).expanduser()

    def write(self, key: str, data: bytes) -> str:
        self.basepath.mkdir(parents=True, exist_ok=True)
        path = self.basepath / key
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see half a result
        return f"file://{path}"

    def read(self, ref: str) -> bytes:
        return Path(ref.removeprefix("file://")).read_bytes()


def encode(serializer: Serializer, data: bytes) -> bytes:
    return serializer.name.encode() + b"\n" + data


def load_result(ref: str) -> Any:
    """Read a persisted result back from its reference."""
    if not ref.startswith("file://"):
        raise InvalidArgument(f"cannot read result reference {ref!r}: unknown storage")
    raw = LocalFileSystem("/").read(ref)
    name, _, data = raw.partition(b"\n")
    return serializer_for(name.decode()).loads(data)
