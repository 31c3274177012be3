"""Errors that name the argument they are about, so each front end can name it in its own words.

A message is written once as a template in which every parameter appears as `{name}` (a Python identifier in braces;
`{{` and `}}` are literal braces, as in `str.format`; `literal(text)` escapes a text for a template). `str(error)` names parameters as Python does (`` `window_overlap` ``); the command line
renders the same template with its flags, the web page with its labels, batch with its JSON keys
(`workflow.settings.SettingsError`). No message is ever rewritten after the fact.
"""

import re


PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(template: str, name_of) -> str:
    """`template` with each `{name}` replaced by `name_of(name)`, and `{{` / `}}` by one brace."""

    def replace(match):
        if match.group(1) is None:
            return match.group(0)[0]
        return name_of(match.group(1))

    return PLACEHOLDER.sub(replace, template)


def rename(template: str, new_name) -> str:
    """`template` with each `{name}` renamed `{new_name(name)}`, escaped braces kept: a template still."""

    def replace(match):
        if match.group(1) is None:
            return match.group(0)
        return "{" + new_name(match.group(1)) + "}"

    return PLACEHOLDER.sub(replace, template)


def literal(text: str) -> str:
    """`text` (an error from elsewhere, a value) escaped for a template: its braces stay braces."""
    return str(text).replace("{", "{{").replace("}", "}}")


def parameters_of(template: str) -> list[str]:
    """The parameters a template names, in order, each once."""
    return list(dict.fromkeys(name for name in PLACEHOLDER.findall(template) if name))


class ParameterError(ValueError):
    """A bad value of `parameter` (a pipeline parameter's name); `template` may name other parameters too."""

    def __init__(self, parameter: str, template: str):
        self.parameter = parameter
        self.template = template
        super().__init__(render(template, lambda name: f"`{name}`"))
