"""Command-line flags, made from the option tables (`workflow.settings`): one flag per option of a command, in the
option's group, with its type, choices, default and help; and the settings read back from parsed arguments."""

from __future__ import annotations

import argparse

from .settings import (
    EDIT_OPTIONS,
    MODEL_OPTIONS,
    PROMPTS,
    SWITCH,
    TRISTATE,
    WORDS,
    Option,
    OptionTable,
    argparse_type,
    options_for,
    render_names,
)


class _ExtendWords(argparse.Action):
    """`--mask-words horse rider` and `--mask-words horse,rider` both give ["horse", "rider"]."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [word for words in values for word in words or []] or None)


def option_group(parser: argparse.ArgumentParser, title: str):
    """The parser's argument group called `title` (made if missing), so every option sits in a titled group."""
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def help_text(option: Option, table: OptionTable, style: str = "cli") -> str:
    """An option's help, naming the options it mentions as `style` does."""
    from ..cogvideox_ddim_errors import render

    return render(option.help, render_names(table, style))


def add_option(parser, option: Option, table: OptionTable, **changes):
    """The flag of `option` in its group of `parser`; `changes` replace argparse arguments (e.g. `default`)."""
    group = option_group(parser, option.group)
    arguments = {"default": option.default, "help": help_text(option, table), "dest": option.name}
    if option.metavar:
        arguments["metavar"] = option.metavar
    if option.kind is SWITCH:
        arguments["action"] = "store_true"
    elif option.kind is TRISTATE:
        arguments["action"] = argparse.BooleanOptionalAction
    elif option.kind is PROMPTS:
        arguments.update(action="append", default=None)
    elif option.kind is WORDS:
        arguments.update(nargs="+", type=argparse_type(option), action=_ExtendWords)
    elif option.choices is not None:
        arguments["choices"] = option.choices
    else:
        arguments["type"] = argparse_type(option)
    group.add_argument(option.flag_name, **{**arguments, **changes})


def add_options(parser, command: str, table: OptionTable = EDIT_OPTIONS, video: bool = False):
    """Every option of `table` that `command` has, as flags; `video` adds the positional source video first."""
    if video:
        video_option = table["video"]
        suffix = "" if command == "invert" else "; optional with --inversion"
        option_group(parser, video_option.group).add_argument(
            "video", nargs="?", default=None, help="input video file (any format ffmpeg reads)" + suffix)
    for option in options_for(command, table):
        add_option(parser, option, table)


def add_model_options(parser, command: str = "edit"):
    """The model and memory flags (`MODEL_OPTIONS`)."""
    add_options(parser, command, MODEL_OPTIONS)


def settings_from_args(args, table: OptionTable = EDIT_OPTIONS):
    """`table`'s settings from parsed arguments: each option's value where the parser has it, else its default."""
    values = {option.name: getattr(args, option.name) for option in table if hasattr(args, option.name)}
    if "prompts" in table and "prompts" in values:
        values["prompts"] = values["prompts"] or []
    return table.settings_class(**values)


def model_and_edit_settings(args):
    """(ModelSettings, EditSettings) from parsed arguments."""
    return settings_from_args(args, MODEL_OPTIONS), settings_from_args(args, EDIT_OPTIONS)
