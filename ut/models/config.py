"""Typed, validated model configs: unknown keys are an error, every field is checked where the config is built.

:func:`config_keys_type` turns config dataclasses into a ``TypedDict`` (every key optional, each with its type and
its field comment as help) for a LightningModule's ``model_config`` argument: jsonargparse (LightningCLI) then
rejects an unknown key or a value of the wrong type while PARSING the command line / YAML (``--print_config``
included) with one line, ``Parser key "model.model_config": Unexpected keys: {'d_modle'}``, and
``--model.model_config.help <Name>`` lists every key. Absent keys keep the dataclass defaults (the dict is not
filled in), so that data-dependent sizes can still be filled from the DataModule.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from typing import Any, TypedDict, TypeVar

C = TypeVar("C", bound="ConfigBase")


@dataclasses.dataclass
class ConfigBase:
    """Base of every model config (dataclass with a comment per field in the subclasses)."""

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config keys {unknown}; valid keys are {sorted(names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self: C, **changes) -> C:
        return self.from_dict({**self.to_dict(), **changes})

    # helpers for __post_init__ checks
    def _check(self, ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"{type(self).__name__}: {message}")

    def _check_choice(self, name: str, choices: tuple) -> None:
        value = getattr(self, name)
        self._check(value in choices, f"{name}={value!r} is not one of {choices}")


_FIELD_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")


def field_comments(config_cls: type) -> dict[str, str]:
    """Field name -> its trailing ``# comment`` in the class body (the house style's comment per field), over the
    class and its config bases."""
    comments: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        if not (dataclasses.is_dataclass(klass) and issubclass(klass, ConfigBase)):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            m = _FIELD_COMMENT.match(line)
            if m:
                comments[m.group(1)] = m.group(2).strip()
    return comments


def config_keys_type(name: str, config_classes: typing.Sequence[type], optional_keys: typing.Iterable[str] = ()):
    """A ``TypedDict`` named ``name`` with every field of ``config_classes`` as an optional key (the union of their
    fields; a key whose types differ between the classes takes either). ``optional_keys`` may also be null (sizes
    filled from the data when absent or null)."""
    types: dict[str, Any] = {}
    docs: dict[str, str] = {}
    owners: dict[str, list[str]] = {}
    for cls in config_classes:
        hints = typing.get_type_hints(cls)
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if f.name in types and types[f.name] != hint:
                hint = types[f.name] | hint
            types[f.name] = hint
            docs.setdefault(f.name, comments.get(f.name, ""))
            owners.setdefault(f.name, []).append(cls.__name__)
    for key in optional_keys:
        if key in types:
            types[key] = types[key] | None
    keys_type = TypedDict(name, types, total=False)
    every = len(config_classes)
    lines = [f"Keys of {' / '.join(c.__name__ for c in config_classes)} (absent keys keep their defaults).", "",
             "Args:"]
    for key in types:
        only = "" if len(owners[key]) == every else f" [{', '.join(owners[key])} only]"
        lines.append(f"    {key}: {docs[key] or key}{only}")
    keys_type.__doc__ = "\n".join(lines) + "\n"
    return keys_type
