"""Reading fields of a typed event by handle or dotted path, at run time and statically.

Paths are resolved case-insensitively over field names and wire aliases, with ``_`` ignored,
so ``Job.Release.ProcessKey``, ``job.release.process_key`` and ``JOB.RELEASE.PROCESSKEY`` are
the same path. A list on the way is walked element by element (a path yields every value it
reaches), and free-form bags (``SpecificContent``, ``InputArguments``...) are entered by key,
case-insensitively too.

The static side walks the pydantic models of the event classes, so that ``receiver check``
can reject a path no event has and can read enum values of a rule with the field's enum.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import AliasChoices, BaseModel

from receiver.events import Event, JobState, LogLevel, ProcessingExceptionType, RobotState

__all__ = [
    "HANDLE_TYPES",
    "SHORTCUTS",
    "PathInfo",
    "event_classes",
    "norm",
    "resolve_path",
    "static_path",
]


def norm(name: str) -> str:
    """Fold a field name or alias for comparison: lower case, without ``_``."""
    return name.replace("_", "").lower()


# Handle name -> the type its value has (for checking rule values at load).
HANDLE_TYPES: dict[str, type] = {
    "type": str,
    "event_id": str,
    "timestamp": datetime,
    "tenant": int,
    "folder": int,
    "job_state": JobState,
    "job_key": str,
    "job_id": int,
    "process": str,
    "robot": str,
    "machine": str,
    "queue": str,
    "level": LogLevel,
    "message": str,
    "entity_key": str,
    # Beyond docs/contracts.md: the events expose these too, and rules want them.
    "robot_state": RobotState,
    "exception_type": ProcessingExceptionType,
    "robot_down": bool,
}

# Folded match key -> handle (or "source"). ``job.state`` is the state of the (first) job of
# any job event, including the ``Jobs`` arrays of job.created / job.stopped.
SHORTCUTS: dict[str, str] = {norm(h): h for h in HANDLE_TYPES}
SHORTCUTS.update({"source": "source", "job.state": "job_state", "job.key": "job_key", "job.id": "job_id"})


_FIELD_MAPS: dict[type[BaseModel], dict[str, str]] = {}


def _field_map(cls: type[BaseModel]) -> dict[str, str]:
    """Folded field name or alias -> attribute name, for one model class (cached)."""
    found = _FIELD_MAPS.get(cls)
    if found is not None:
        return found
    result: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        result[norm(name)] = name
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                result.setdefault(norm(alias), name)
            elif isinstance(alias, AliasChoices):
                for choice in alias.choices:
                    if isinstance(choice, str):
                        result.setdefault(norm(choice), name)
    _FIELD_MAPS[cls] = result
    return result


def resolve_path(obj: object, segments: Sequence[str]) -> list[Any]:
    """Return every non-null value that the folded ``segments`` reach from ``obj``.

    Lists are entered element by element, at any depth and at the end, so a path through
    ``Jobs`` or ``Sessions`` yields one value per element.
    """
    out: list[Any] = []
    _walk(obj, segments, 0, out)
    return out


def _walk(obj: object, segments: Sequence[str], i: int, out: list[Any]) -> None:
    if obj is None:
        return
    if isinstance(obj, list | tuple):
        for item in obj:
            _walk(item, segments, i, out)
        return
    if i == len(segments):
        out.append(obj)
        return
    seg = segments[i]
    if isinstance(obj, BaseModel):
        name = _field_map(type(obj)).get(seg)
        if name is not None:
            _walk(getattr(obj, name), segments, i + 1, out)
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            if isinstance(key, str) and norm(key) == seg:
                _walk(value, segments, i + 1, out)
                return


def event_classes() -> tuple[type[Event], ...]:
    """Every concrete event class (subclasses of ``Event``, recursively)."""
    seen: list[type[Event]] = []
    stack: list[type[Event]] = [Event]
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.append(cls)
            stack.extend(cls.__subclasses__())
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class PathInfo:
    """What a dotted path leads to across the event classes.

    Attributes:
        found: some event class has this path.
        enums: the enum types at its end (rule values are read with their ``parse``).
        leaf_types: every type at its end (``object`` for free-form bags).
        depth: for a path no class has, the index of the first segment no class knows.
        suggestion: the field name nearest to that segment (did-you-mean), or None.
    """

    found: bool
    enums: tuple[type[Enum], ...]
    leaf_types: tuple[type, ...]
    depth: int = 0
    suggestion: str | None = None


_ANY = object


def _members(tp: Any) -> list[Any]:
    """Unwrap Annotated / Optional / unions / lists to the element types a path step can meet."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        # A lenient enum field keeps an unknown value as its string: the field is that enum.
        if any(isinstance(a, type) and issubclass(a, Enum) for a in args):
            args = [a for a in args if a is not str]
        return [m for a in args for m in _members(a)]
    if origin in (list, tuple, Sequence, set, frozenset):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return [m for a in args for m in _members(a)] or [_ANY]
    if origin in (dict, Mapping) or tp is Any or tp is object or tp is None:
        return [_ANY]
    return [tp]


def static_path(segments: Sequence[str], classes: Sequence[type[BaseModel]]) -> PathInfo:
    """Find what the folded ``segments`` reach in the models of ``classes``.

    Args:
        segments: the folded path segments (see :func:`norm`).
        classes: the event classes to look in.

    Returns:
        Whether any class has the path, the types at its end and, if none has it, a suggestion.
    """
    leaves: list[type] = []
    best: tuple[int, str, list[str]] = (-1, "", [])
    for cls in classes:
        depth, prefix, names = _static_walk(cls, segments, 0, "", leaves)
        if depth > best[0]:
            best = (depth, prefix, names)
    if leaves:
        uniq = tuple(dict.fromkeys(leaves))
        enums = tuple(t for t in uniq if isinstance(t, type) and issubclass(t, Enum))
        return PathInfo(True, enums, uniq)
    depth, _, names = best
    suggestion = None
    if depth >= 0:
        close = difflib.get_close_matches(segments[depth], [norm(n) for n in names], n=1, cutoff=0.6)
        if close:
            suggestion = next(n for n in names if norm(n) == close[0])
    return PathInfo(False, (), (), max(depth, 0), suggestion)


def _static_walk(
    tp: Any, segments: Sequence[str], i: int, prefix: str, leaves: list[type]
) -> tuple[int, str, list[str]]:
    """Walk one type; returns (depth, prefix, field names) of the deepest failed step."""
    worst: tuple[int, str, list[str]] = (-1, "", [])
    for member in _members(tp):
        if i == len(segments):
            leaves.append(member)
            continue
        if member is _ANY:
            leaves.append(_ANY)
            continue
        if isinstance(member, type) and issubclass(member, BaseModel):
            fmap = _field_map(member)
            name = fmap.get(segments[i])
            if name is None:
                if i > worst[0]:
                    worst = (i, prefix, list(member.model_fields))
                continue
            annotation = member.model_fields[name].annotation
            got = _static_walk(annotation, segments, i + 1, f"{prefix}{name}.", leaves)
            if got[0] > worst[0]:
                worst = got
    return worst
