"""The types of the options table (`workflow.settings`): a `Kind` (how a value is typed, checked and written), an
`Option` (one user option: its kind, default, bounds or choices, help, flag, page label and the pipeline parameter it
feeds) and an `OptionTable` (an ordered table that makes its settings dataclass). Torch-free."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------------------------------
# Kinds: how a value is typed (a flag, a CSV cell, a page's text), checked and written


def parse_bool(text) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise ValueError("give true or false")


def parse_optional_bool(text):
    if text is None or str(text).strip().lower() in ("", "auto", "none"):
        return None
    return parse_bool(text)


def parse_step_range(text) -> float | tuple[float, float]:
    """"END" (a fraction of the steps) or "START,END" (a window), as `reference_steps` / `mask_steps` take them."""
    if isinstance(text, (list, tuple)):
        parts = [float(part) for part in text]
    else:
        parts = [float(part) for part in str(text).split(",")]
    if len(parts) not in (1, 2):
        raise ValueError("type a fraction such as 0.5 or a range such as 0,0.6")
    return parts[0] if len(parts) == 1 else tuple(parts)


def parse_blocks(text) -> list[int] | None:
    """Comma-separated transformer block indices ("0,1,2"); empty: None (all, or the default)."""
    if isinstance(text, (list, tuple)):
        return [int(block) for block in text]
    text = str(text).strip()
    return [int(block) for block in text.split(",")] if text else None


def parse_words(text) -> list[str] | None:
    """"horse, brown dog" -> ["horse", "brown dog"]: words or phrases of the source prompt; empty: None."""
    if isinstance(text, (list, tuple)):
        words = [str(word).strip() for word in text]
    else:
        words = [word.strip() for word in str(text).split(",")]
    return [word for word in words if word] or None


def parse_prompts(text) -> list[str]:
    """Edit prompts: a list as given, or one per line of a text."""
    if isinstance(text, (list, tuple)):
        return [str(prompt) for prompt in text]
    return [line.strip() for line in str(text).splitlines() if line.strip()]


def parse_frames(text) -> int | str | None:
    """A frame count, or "all" (the whole clip); empty: None (the model's native count)."""
    value = "" if text is None else str(text).strip()
    if value.lower() == "all":
        return "all"
    return int(value) if value else None


def parse_ratios(text) -> tuple[float, ...] | None:
    """Comma-separated numbers, or a file holding a JSON list of them (`mag_ratios`)."""
    if isinstance(text, (list, tuple)):
        return tuple(float(ratio) for ratio in text)
    if os.path.isfile(str(text)):
        with open(str(text)) as file:
            return tuple(float(ratio) for ratio in json.load(file))
    return tuple(float(ratio) for ratio in str(text).split(","))


def _optional(parse):
    def read(text):
        return None if text is None or str(text).strip() == "" else parse(text)

    read.__name__ = f"optional_{parse.__name__}"
    return read


@dataclass(frozen=True)
class Kind:
    """A type of option value: its annotation, how text reads as it (`parse`; raises ValueError), what to type (a
    hint for messages), and whether a JSON list of values is read item by item (`listed`)."""

    name: str
    annotation: str
    parse: Callable[[Any], Any]
    hint: str
    listed: bool = False


TEXT = Kind("text", "str", lambda text: "" if text is None else str(text), "type a text")
def parse_path(text) -> str | None:
    if text in (None, ""):
        return None
    if not isinstance(text, (str, os.PathLike)):
        raise ValueError("give a file path")
    return os.fspath(text)


PATH = Kind("path", "str | None", parse_path, "give a file path")
OPTIONAL_TEXT = Kind("optional_text", "str | None", lambda text: str(text) if text not in (None, "") else None,
                     "type a text, or leave it empty")
INT = Kind("int", "int", int, "type a whole number")
OPTIONAL_INT = Kind("optional_int", "int | None", _optional(int), "type a whole number, or leave it empty")
FLOAT = Kind("float", "float", float, "type a number")
OPTIONAL_FLOAT = Kind("optional_float", "float | None", _optional(float), "type a number, or leave it empty")
SWITCH = Kind("switch", "bool", parse_bool, "give true or false")
TRISTATE = Kind("tristate", "bool | None", parse_optional_bool, "give auto, on or off")
CHOICE = Kind("choice", "str", str, "pick one of the choices")
OPTIONAL_CHOICE = Kind("optional_choice", "str | None", _optional(str), "pick one of the choices")
STEP_RANGE = Kind("step_range", "float | tuple[float, float]", parse_step_range,
                  "type a fraction such as 0.5 or a range such as 0,0.6", listed=True)
BLOCKS = Kind("blocks", "list[int] | None", parse_blocks,
              "type block numbers separated by commas, such as 0,1,2, or leave it empty", listed=True)
WORDS = Kind("words", "list[str] | None", parse_words, "type words separated by commas", listed=True)
PROMPTS = Kind("prompts", "list[str]", parse_prompts, "type one prompt per line", listed=True)
FRAMES = Kind("frames", "int | str | None", parse_frames, "type a frame count, or all for the whole clip")
RATIOS = Kind("ratios", "tuple[float, ...] | None", _optional(parse_ratios),
              "type numbers separated by commas, or a file with a JSON list", listed=True)
RECORD = Kind("record", "dict", dict, "a JSON object")


# ---------------------------------------------------------------------------------------------------------------------
# Options


AUTO = "auto"  # `Option.flag` / `parameter` / `label`: derived from the name


@dataclass(frozen=True)
class Option:
    """One user option. `flag`, `parameter` and `label` default to ones derived from `name` ("--steps", "steps",
    "Steps"); `parameter=None` feeds no pipeline parameter, `flag=None` has no flag of its own.

    - `feeds`: the pipeline calls taking `parameter`: "invert" (`invert()`), "call" (`__call__`).
    - `inversion`: an inversion depends on it: "always", "source" (only where a video is read) or "mask" (only with
      mask words); see `workflow.inversions`.
    - `memory_only`: it changes memory or speed, never the outputs (left out of batch's settings hash).
    - `commands`: the commands with its flag ("edit", "invert", "batch"); `page`: the web page offers it.
    - `minimum` / `maximum`: bounds a value is checked against, which the page's controls take too.
    """

    name: str
    kind: Kind
    default: Any = None
    help: str = ""
    group: str = "edit"
    flag: str | None = AUTO
    parameter: str | None = AUTO
    label: str = AUTO
    feeds: tuple[str, ...] = ()
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    inversion: str | None = None
    memory_only: bool = False
    metavar: str | None = None
    commands: tuple[str, ...] = ("edit", "invert", "batch")
    page: bool = True

    @property
    def flag_name(self) -> str | None:
        return "--" + self.name.replace("_", "-") if self.flag == AUTO else self.flag

    @property
    def parameter_name(self) -> str | None:
        return self.name if self.parameter == AUTO else self.parameter

    @property
    def page_label(self) -> str:
        return self.name.replace("_", " ").capitalize() if self.label == AUTO else self.label

    def read(self, value):
        """A value as a flag, a job or the page gives it (text, or JSON) as this option's value; raises ValueError
        with what to type."""
        if value is None:
            if self.default is None:
                return None
            raise ValueError(self.kind.hint)
        if (isinstance(value, (list, tuple)) and not self.kind.listed) or (
                isinstance(value, bool) and self.kind not in (SWITCH, TRISTATE)):
            raise ValueError(self.kind.hint)
        if isinstance(value, float) and self.kind in (INT, OPTIONAL_INT, FRAMES):
            if not value.is_integer():
                raise ValueError(self.kind.hint)
            value = int(value)
        try:
            result = self.kind.parse(value)
        except (TypeError, ValueError) as error:
            raise ValueError(str(error) if isinstance(error, ValueError) and str(error).startswith(
                ("type", "give", "pick")) else self.kind.hint) from None
        if self.choices is not None and result is not None and result not in self.choices:
            raise ValueError(f"choose one of {', '.join(map(str, self.choices))}")
        return result


@dataclass(frozen=True)
class OptionTable:
    """An ordered table of options and the settings dataclass made from it (`settings_class`), whose fields are the
    options' names, types and defaults, with `base`'s methods."""

    name: str
    options: tuple[Option, ...]
    base: type = object
    doc: str = ""

    def __post_init__(self):
        names = [option.name for option in self.options]
        duplicates = {name for name in names if names.count(name) > 1}
        if duplicates:
            raise ValueError(f"Options named twice in {self.name}: {sorted(duplicates)}")

    def __iter__(self):
        return iter(self.options)

    def __getitem__(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(name)

    def __contains__(self, name) -> bool:
        return any(option.name == name for option in self.options)

    def with_options(self, *options: Option) -> "OptionTable":
        """A copy of the table with `options` added (or replacing those of the same name)."""
        names = {option.name for option in options}
        kept = tuple(option for option in self.options if option.name not in names)
        return dataclasses.replace(self, options=kept + tuple(options))

    @functools.cached_property
    def settings_class(self) -> type:
        """The settings dataclass: a field per option (name, type, default), with `base`'s methods."""
        fields = []
        for option in self.options:
            default = option.default
            spec = (field(default_factory=lambda default=default: type(default)(default))
                    if isinstance(default, (list, dict)) else field(default=default))
            fields.append((option.name, option.kind.annotation, spec))
        cls = dataclasses.make_dataclass(self.name, fields, bases=(self.base,))
        cls.__doc__ = self.doc
        cls.__module__ = __name__
        cls.table = self
        return cls

    def names(self, **attributes) -> list[str]:
        """Names of the options whose attributes have these values, e.g. `names(memory_only=True)`."""
        return [option.name for option in self.options
                if all(getattr(option, key) == value for key, value in attributes.items())]

    def by_parameter(self, parameter: str) -> Option | None:
        return next((option for option in self.options if option.parameter_name == parameter), None)
