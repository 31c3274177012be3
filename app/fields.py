"""The page's fields, derived from the option table: every `EDIT_OPTIONS` option with `page=True` is a field, and its
control, label, help and reader come from the option (`control`, `page_value`, `read_field`), so a new option in
`workflow/settings.py` reaches the page, its API and its messages with no edit here.

The page's conventions, applied by kind: an optional number whose 0 is no valid value reads 0 as "not set" (an emptied
number field reaches the server as 0); an empty text is None (or the option's empty value); "Frames" takes "all".
Values that do not read raise `SettingsError` naming the field, which `error_text` renders with the page's labels.
Nothing here imports Gradio: a control is described (`Control`) and `app.page` makes it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..workflow.flags import help_text
from ..workflow.settings import (
    BLOCKS,
    EDIT_OPTIONS,
    FLOAT,
    FRAMES,
    INT,
    OPTIONAL_FLOAT,
    OPTIONAL_INT,
    OPTIONAL_TEXT,
    PATH,
    PROMPTS,
    STEP_RANGE,
    SWITCH,
    TEXT,
    TRISTATE,
    WORDS,
    EditSettings,
    Option,
    read_value,
    render_error,
)


PAGE_FIELDS = tuple(option.name for option in EDIT_OPTIONS if option.page)
API_NAMES = {"prompts": "edit_prompts"}  # the edit function's parameter names where they differ from the field's
# Groups of the table whose options the page folds under "Local edit (mask)"; every other field not on the first
# screen goes under "Advanced".
MASK_GROUPS = ("mask (local edits)", "local edits")

NUMBER_KINDS = (INT, FLOAT, OPTIONAL_INT, OPTIONAL_FLOAT)
WHOLE_KINDS = (INT, OPTIONAL_INT)
TEXT_KINDS = (TEXT, OPTIONAL_TEXT, STEP_RANGE, BLOCKS, WORDS, PROMPTS, FRAMES)  # typed into a text box
TRISTATE_VALUES = {None: "auto", True: "on", False: "off"}


def page_option(name: str) -> Option:
    return EDIT_OPTIONS[name]


def zero_is_unset(option: Option) -> bool:
    """Whether the page reads 0 in this field as "not set" (None): an optional count or number for which 0 is no valid
    value (a window overlap of 0 is one: that field is empty when not set)."""
    optional = option.kind in (OPTIONAL_INT, OPTIONAL_FLOAT, FRAMES)
    return optional and not (option.minimum is not None and option.minimum <= 0)


def _is_zero(value) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    try:
        return float(str(value).strip()) == 0
    except ValueError:
        return False


def page_value(name: str):
    """The page's value for a field's default (and the API's default for its parameter): "not set" is 0 in a number
    field whose 0 means it and empty in a text field; auto/on/off for a three-way switch; lists as text."""
    option = page_option(name)
    default = option.default
    if option.kind is TRISTATE:
        return TRISTATE_VALUES[default]
    if default is None:
        if zero_is_unset(option) and option.kind is not FRAMES:
            return 0
        return "" if option.kind in TEXT_KINDS else None
    if option.kind is STEP_RANGE:
        return ",".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)
    if option.kind in (BLOCKS, WORDS):
        return ", ".join(map(str, default))
    if option.kind is PROMPTS:
        return "\n".join(default)
    return default


def read_field(name: str, value):
    """A page value of the field `name` as its settings value (the page's conventions, then `option.read`); raises
    `SettingsError` naming the field and what to type."""
    option = page_option(name)
    if value is None and option.kind in TEXT_KINDS:
        value = ""  # an emptied text box
    if zero_is_unset(option) and (value in ("", None) or _is_zero(value)):
        return None
    return read_value(option, value)


def settings_from_page(values: dict) -> EditSettings:
    """EditSettings from the page's values by field name; a value that does not read raises `SettingsError`."""
    return EditSettings(**{name: read_field(name, values[name]) for name in PAGE_FIELDS})


def page_help(name: str) -> str | None:
    """An option's help as the page shows it under the control: other options named by their labels, its default
    written out."""
    option = page_option(name)
    if not option.help:
        return None
    shown = page_value(name)
    default = "none" if shown in (None, "") else shown
    text = help_text(option, EDIT_OPTIONS, "page").replace("%(default)s", str(default))
    return in_page_words(text, option)


def in_page_words(text: str, option: Option) -> str:
    """Help written for the command line in the page's words: its placeholder (SCALE) as "this value", asides on what
    other commands write (invert, batch) left out."""
    if option.metavar and option.metavar.isupper():
        text = re.sub(rf"\b{re.escape(option.metavar)}\b", "this value", text)
    return re.sub(r" \([^()]*\b(?:invert|batch)\b[^()]*\)", "", text)


def error_text(error: BaseException, uploads=()) -> str:
    """An error in the page's words (`render_error(error, "page")`: options named by their labels), each uploaded
    file (a path in the app's temporary folder) by its own name."""
    text = render_error(error, "page")
    for upload in sorted(uploads, key=len, reverse=True):
        text = text.replace(upload, os.path.basename(upload))
    return text


# ---------------------------------------------------------------------------------------------------------------------
# Controls


@dataclass(frozen=True)
class Control:
    """A page control to make: a Gradio component's class name and its arguments."""

    component: str
    arguments: dict = field(default_factory=dict)


def control(name: str, **overrides) -> Control:
    """The control of the field `name`, from its option: a Radio for choices and auto/on/off, a Checkbox for a switch,
    a Slider for a number with both bounds, a Number for other numbers (whole numbers for counts), a File for a path,
    a Textbox otherwise; labelled with `option.page_label`, its help under it. `overrides` replace arguments."""
    option = page_option(name)
    arguments = {"value": page_value(name), "label": option.page_label, "info": page_help(name)}
    if option.choices is not None:
        component, arguments["choices"] = "Radio", list(option.choices)
    elif option.kind is TRISTATE:
        component, arguments["choices"] = "Radio", list(TRISTATE_VALUES.values())
    elif option.kind is SWITCH:
        component = "Checkbox"
    elif option.kind in NUMBER_KINDS:
        component, numbers = _number_control(option)
        arguments.update(numbers)
    elif option.kind is PATH:
        component, arguments["type"] = "File", "filepath"
    else:
        component = "Textbox"
    return Control(component, {**arguments, **overrides})


def _number_control(option: Option) -> tuple[str, dict]:
    whole = option.kind in WHOLE_KINDS
    if option.minimum is not None and option.maximum is not None:
        step = 1 if whole else (option.maximum - option.minimum) / 20
        return "Slider", {"minimum": option.minimum, "maximum": option.maximum, "step": step}
    minimum = 0 if zero_is_unset(option) else option.minimum  # the page's 0 ("not set") must be accepted
    arguments = {"precision": 0 if whole else None, "minimum": minimum, "maximum": option.maximum}
    return "Number", {key: value for key, value in arguments.items() if value is not None or key == "precision"}


def fields_in(where: str, placed=()) -> list[str]:
    """The page fields not `placed` by hand that go under "Advanced" (`where="advanced"`) or "Local edit (mask)"
    (`where="mask"`), in the table's order: how a new option reaches the page."""
    in_mask = {name for name in PAGE_FIELDS if page_option(name).group in MASK_GROUPS}
    chosen = in_mask if where == "mask" else set(PAGE_FIELDS) - in_mask
    return [name for name in PAGE_FIELDS if name in chosen and name not in placed]


def api_parameters() -> list[tuple[str, object]]:
    """The edit endpoint's parameters, in the page fields' order: (API name, default: the page's)."""
    return [(API_NAMES.get(name, name), page_value(name)) for name in PAGE_FIELDS]


# ---------------------------------------------------------------------------------------------------------------------
# "Length": the model's window, a number of frames or the whole clip; it sets "Frames" (`num_frames`)


LENGTH_LABEL = "Length"


def stride_control() -> str:
    """How the length note's stride hint names the page's control."""
    return f'"{page_option("frame_stride").page_label}" {{stride}} (Advanced)'


def length_choices(native_frames: int) -> list[tuple[str, str]]:
    return [(f"The model's window ({native_frames} frames)", "window"), ("A number of frames", "frames"),
            ("The whole clip", "all")]


def num_frames_for_length(length: str, frame_count) -> str:
    """"Frames" (`num_frames` as the page sends it) for a length choice: empty for the model's window, the count
    typed (empty or 0: the model's window too), or "all"."""
    if length == "all":
        return "all"
    if length == "frames" and frame_count not in (None, ""):
        return str(frame_count)
    return ""


def default_size_note(transformer: dict) -> str:
    """What 0 means in Height and Width: CogVideoX 1.5 picks a size from the source's shape, the others have one."""
    from ..cogvideox_ddim_checkpoint import any_size, default_video_size

    if any_size(transformer):
        height, width = default_video_size(transformer, 9, 16)  # what a 16:9 source gets
        return f"0: the source's aspect, as many pixels as {width}x{height}"
    height, width = default_video_size(transformer)
    return f"0: the model's {width}x{height}"
