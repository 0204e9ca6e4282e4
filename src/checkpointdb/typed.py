"""Typed state: a checkpoint's data read as an instance of a dataclass or a pydantic model.

``store.manager(sid, model=State)`` gives a manager whose reads return
``Checkpoint[State]``. The store keeps plain JSON either way: a model only
changes what the manager hands back, and what ``create`` accepts. Pydantic
(v2) is optional: a pydantic class is recognised by its ``model_validate`` and
``model_dump`` methods, so this module never imports pydantic.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Generic, Protocol, TypeVar, cast

from .checkpoint import Checkpoint, JSONDict
from .errors import InvalidDataError

M = TypeVar("M")


class _Pydantic(Protocol):
    """The part of a pydantic v2 model class this module uses."""

    @classmethod
    def model_validate(cls, obj: Any) -> Any: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


def _is_pydantic(model: object) -> bool:
    return isinstance(model, type) and all(
        callable(getattr(model, name, None)) for name in ("model_validate", "model_dump")
    )


def _from_json(kind: Any, value: Any) -> Any:
    """``value`` (stored JSON) as the annotation ``kind`` asks: nested dataclasses built."""
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise TypeError(f"{kind.__name__} needs a JSON object, got {type(value).__name__}")
        hints = typing.get_type_hints(kind)
        known = {field.name for field in dataclasses.fields(kind) if field.init}
        unknown = sorted(set(value) - known)
        if unknown:
            raise TypeError(f"{kind.__name__} has no field {', '.join(map(repr, unknown))}")
        return kind(**{key: _from_json(hints[key], item) for key, item in value.items()})
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        # The first member that takes the value; dataclasses are tried before plain types.
        for member in sorted(args, key=lambda arg: not dataclasses.is_dataclass(arg)):
            try:
                return _from_json(member, value)
            except TypeError:
                continue
        return value
    if origin in (list, tuple) and isinstance(value, list) and args:
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            return tuple(_from_json(arg, item) for arg, item in zip(args, value, strict=False))
        items = [_from_json(args[0], item) for item in value]
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {key: _from_json(args[1], item) for key, item in value.items()}
    return value


class StateModel(Generic[M]):
    """How one model class turns a checkpoint's stored JSON into instances and back.

    Args:
        model: a dataclass, or a pydantic v2 model class.

    Raises:
        InvalidDataError: ``model`` is neither.
    """

    def __init__(self, model: type[M]) -> None:
        self.pydantic = _is_pydantic(model)
        if not self.pydantic and not (
            isinstance(model, type) and dataclasses.is_dataclass(model)
        ):
            raise InvalidDataError(
                f"model must be a dataclass or a pydantic model class, got {model!r}"
            )
        self.model = model

    def load(self, data: JSONDict) -> M:
        """Stored data as a model instance.

        Raises:
            TypeError, ValueError: the data does not fit the model.
        """
        if self.pydantic:
            return cast(M, cast(type[_Pydantic], self.model).model_validate(data))
        return cast(M, _from_json(self.model, data))

    def dump(self, value: Any) -> Any:
        """What ``create`` stores for ``value``: a model instance as JSON; anything else as is."""
        if not isinstance(value, self.model):
            return value
        if self.pydantic:
            return cast(_Pydantic, value).model_dump(mode="json")
        return dataclasses.asdict(cast(Any, value))

    def checkpoint(self, checkpoint: Checkpoint) -> Checkpoint[M]:
        """The checkpoint with its data as a model instance.

        Raises:
            InvalidDataError: the stored data does not fit the model (names the checkpoint).
        """
        try:
            data = self.load(checkpoint.data)
        except (TypeError, ValueError) as exc:
            raise InvalidDataError(
                f"checkpoint {checkpoint.id!r}: its data does not fit "
                f"{self.model.__name__}: {exc}"
            ) from None
        return Checkpoint(
            id=checkpoint.id,
            name=checkpoint.name,
            timestamp=checkpoint.timestamp,
            data=data,
            metadata=checkpoint.metadata,
            pinned=checkpoint.pinned,
            parent_id=checkpoint.parent_id,
        )
