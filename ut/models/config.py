"""Typed, validated model configs: unknown keys are an error, every field is checked where the config is built.

A field with a fixed set of values is typed ``Literal[...]`` (the shared vocabularies below: :data:`Norm`,
:data:`Transition`, ...) and :class:`ConfigBase` checks every such field once, in its ``__post_init__``, as litgpt's
``Config`` does: ``TransformerConfig(norm="mid")`` raises ``TransformerConfig: norm='mid' is not one of ('pre',
'post')``. A subclass's ``__post_init__`` starts with ``super().__post_init__()`` (so the choices are valid before its
own cross-field checks read them); tests/ut/models/test_config_choices.py checks every config class this way.

:func:`config_keys_type` turns config dataclasses into a ``TypedDict`` (every key optional, each with its type and
its field comment as help) for a LightningModule's ``model_config`` argument: jsonargparse (LightningCLI) then
rejects an unknown key or a value of the wrong type while PARSING the command line / YAML (``--print_config``
included) with one line, ``Parser key "model.model_config": Unexpected keys: {'d_modle'}``, and
``--model.model_config.help <Name>`` lists every key. Absent keys keep the dataclass defaults (the dict is not
filled in), so that data-dependent sizes can still be filled from the DataModule.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Mapping
from types import NoneType, UnionType
from typing import Any, Literal, TypedDict, TypeVar

C = TypeVar("C", bound="ConfigBase")

# choices shared by several configs (each implemented where named)
Norm = Literal["pre", "post"]  # LayerNorm placement, ut/nn/layers.py Residual
Transition = Literal["ffn", "sepconv"]  # position-wise part of a layer, ut/nn/layers.py make_transition
# the UT models' transitions: those and a mixture of experts (the sparse UT, ut/models/moe_transition.py)
UniversalTransition = Literal["ffn", "sepconv", "moe"]
Activation = Literal["relu", "gelu"]  # feed-forward activation, ut/nn/layers.py FeedForward
PositionKind = Literal["sinusoidal", "learned"]  # position / UT timestep signal, ut/nn/positions.py
Pooling = Literal["mean", "first", "last"]  # answer read-out, ut/models/encoder_classifier.py pool
MoEPriority = Literal["position", "choice"]  # expert capacity priority, ut/nn/moe.py
MoEBalance = Literal["importance", "switch"]  # MoE load-balancing loss, ut/nn/moe.py


@dataclasses.dataclass
class ConfigBase:
    """Base of every model config (dataclass with a comment per field in the subclasses); validates every
    ``Literal`` field on construction (module docstring)."""

    def __post_init__(self):
        self.check_choices({name: getattr(self, name) for name in self.choices()})

    @classmethod
    def choices(cls) -> dict[str, tuple]:
        """Field name -> its allowed values, for every field typed ``Literal[...]`` (``| None`` allows None)."""
        return _literal_choices(cls)

    @classmethod
    def check_choices(cls, values: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming the field, the value and the allowed values for the first entry of ``values``
        (field -> value, any subset of the fields) outside its field's choices."""
        for name, allowed in cls.choices().items():
            if name in values and values[name] not in allowed:
                raise ValueError(f"{cls.__name__}: {name}={values[name]!r} is not one of {allowed}")

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

    # helper for the subclasses' __post_init__ checks
    def _check(self, ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"{type(self).__name__}: {message}")


@functools.cache
def _literal_choices(config_cls: type) -> dict[str, tuple]:
    """The fields typed ``Literal[...]``, alone or in a union with other literals and ``None``."""
    hints, choices = typing.get_type_hints(config_cls), {}
    for name in (f.name for f in dataclasses.fields(config_cls)):
        hint = hints[name]
        parts = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, UnionType) else (hint,)
        if any(typing.get_origin(p) is Literal for p in parts) and all(
                typing.get_origin(p) is Literal or p is NoneType for p in parts):
            choices[name] = tuple(v for p in parts for v in (typing.get_args(p) if p is not NoneType else (None,)))
    return choices


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
