"""The web page: upload a video, type what should change, watch source and edit side by side (Gradio Blocks).

`cogvideox-ddim-inversion app` loads the checkpoint once (the committed toy checkpoint unless `--model` names another)
and serves one page. Each run goes through the edit workflow as the command line does: `prepare_edit()` (every
check), then `edit_video()`. One job per module:

- `fields`: the page's fields, derived from the option table (`workflow.settings.EDIT_OPTIONS`): control, label, help
  and reader of each option with `page=True`, so a new option reaches the page with no edit here;
- `session`: runs (one at a time, stopped through `edit_video(stop=...)`), the inversion cache, status text, the
  portable run.json, the example clips; no Gradio;
- `page`: the layout and the wiring of its events;
- `server`: the flags, launching, signals.

Importing this package imports neither Gradio nor torch (the command line's `--help` stays fast): the entry points
below load their module when called.
"""


def add_app_arguments(parser):
    """The app's flags (`app.server.add_app_arguments`)."""
    from .server import add_app_arguments as add

    return add(parser)


def launch_app(args, prevent_thread_lock: bool = False):
    """Load the checkpoint, build the page and serve it (`app.server.launch_app`)."""
    from .server import launch_app as launch

    return launch(args, prevent_thread_lock)


def run_app(args):
    """`cogvideox-ddim-inversion app` (`app.server.run_app`)."""
    from .server import run_app as run

    return run(args)


__all__ = ["add_app_arguments", "launch_app", "run_app"]
