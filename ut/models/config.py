"""Typed, validated model configs: unknown keys are an error, every field is checked where the config is built."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

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
