"""What the app does between the page and the edit workflow, without Gradio: runs (`Runs`: one at a time, a stop flag
per browser session), each run of the page's values (`Editor.run`: `prepare_edit`, then `edit_video`), the inversion
cache (`inversion_key`, `prune`), what the page says (`status_text`, `adjustment_notes`, `length_note`), the portable
run.json served for download, the example clips and the duration limit.

Stopping: `edit_video(stop=...)` is handed the run's flag (`threading.Event.is_set`); the workflow ends the pipeline's
call at its next step through diffusers' own `callback_on_step_end` / `_interrupt` and raises `RunStopped`.

Keeping the inversion: a run saves its inversion (`save_inversion`) under `inversions/` in the app's folder, named by a
hash of what it depends on (`workflow.inversions.inversion_dependencies`) and the checkpoint; the next run with the
same hash passes that file back as `inversion` (checked against the loaded checkpoint as `edit --inversion` is).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape

from ..workflow.checks import prepare_edit
from ..workflow.inversions import inversion_dependencies
from ..workflow.run import RunStopped, edit_video, print_log, write_json
from ..workflow.settings import EDIT_OPTIONS, EditSettings, SettingsError
from ..workflow.window_plan import (
    WindowPlan,
    length_choice_text,
    length_text,
    progress_description,
    steps_run,
    temporal_compression,
    window_plan,
)
from .fields import error_text, settings_from_page, stride_control


KEEP_RUNS = 8  # result folders kept on disk (older ones are deleted; Gradio has copied what the page shows)
KEEP_INVERSIONS = 4  # saved inversions kept (the least recently used is deleted first)
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the server's checkout (or install)
MAX_FIXED_POINT_ITERATIONS = 10  # extra evaluations per inversion step; 2-4 is what helps
STOPPED = "Stopped. Nothing was kept of this run; press Edit to run again."


class PageError(Exception):
    """A refusal or failure to show in the page, in its words; `fields`: the page fields it names (its own first),
    which the page highlights."""

    def __init__(self, message: str, fields=()):
        super().__init__(message)
        self.fields = tuple(fields)


def error_fields(error: BaseException) -> tuple[str, ...]:
    """The page fields an error names (`SettingsError.fields`, a shipped `ParameterError`'s option), its own first."""
    from ..cogvideox_ddim_errors import ParameterError
    from .fields import PAGE_FIELDS

    if isinstance(error, ParameterError) and not isinstance(error, SettingsError):
        error = SettingsError.from_parameter_error(error)
    return tuple(name for name in getattr(error, "fields", ()) if name in PAGE_FIELDS)


@dataclass(frozen=True)
class Limits:
    """What bounds a visitor's run, from the launch flags and the checkpoint: every number a visitor sends that costs
    work has a maximum here, checked before any model work (`Editor.check_limits`)."""

    max_duration: float = 60.0  # seconds of video (--max-duration): frames and windows
    max_prompts: int = 4  # edit prompts per run (--max-prompts)
    max_steps: int = 100  # steps (--max-steps); fixed-point iterations are bounded by the option table
    max_windows_per_call: int = 4  # "Windows per call" (--max-windows-per-call): memory
    max_side: int = 720  # height and width: the checkpoint's largest supported size
    trajectory_device: str | None = None  # the server's choice (--trajectory-device), never a visitor's

    @classmethod
    def for_checkpoint(cls, config: dict, **flags) -> Limits:
        from ..cogvideox_ddim_checkpoint import native_size

        return cls(max_side=max(native_size(config["transformer"])), **flags)

    def bounds(self) -> dict[str, int]:
        """The upper bound of each bounded page field."""
        return {"steps": self.max_steps, "window_batch_size": self.max_windows_per_call, "height": self.max_side,
                "width": self.max_side, "mask_dilation": self.max_side, "mask_feather": self.max_side,
                "fixed_point_iterations": MAX_FIXED_POINT_ITERATIONS}


def label(name: str) -> str:
    return EDIT_OPTIONS[name].page_label


# ---------------------------------------------------------------------------------------------------------------------
# Checks and the inversion cache


def check_duration(path: str, max_duration: float):
    """Refuse a video over the duration limit, from its header alone (`probe_video` also refuses a file that is not
    a video). Gradio refuses files over the size limit while they upload: `launch(max_file_size=...)`."""
    from ..cogvideox_ddim_video_io import probe_video

    duration = probe_video(path).duration or 0.0
    if duration > max_duration:
        raise ValueError(
            f"The video lasts {duration:.1f} s; this app takes videos up to {max_duration:g} s. Trim it and upload "
            "it again."
        )


def inversion_key(settings: EditSettings, model: str) -> str:
    """Name of the saved inversion these settings can reuse: a hash of what an inversion depends on
    (`inversion_dependencies`: the video by content, the source prompt, frames, size, steps, ...) and the
    checkpoint."""
    payload = json.dumps({"depends_on": inversion_dependencies(settings), "model": model}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def prune(folder: str, keep: int):
    """Delete all but the `keep` most recently modified entries of `folder`."""
    entries = sorted((os.path.join(folder, name) for name in os.listdir(folder)), key=os.path.getmtime, reverse=True)
    for path in entries[keep:]:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


# ---------------------------------------------------------------------------------------------------------------------
# What the page says: the note under Length, the status line and what a run adjusted


def problem_html(message: str) -> str:
    """A refusal under a field, in the error colour (as the upload size's)."""
    return (f'<span class="length-problem" style="color: var(--error-text-color, #dc2626); font-weight: 600">'
            f"{escape(message)}</span>")


def length_note(settings: EditSettings, config: dict, max_duration: float, uploads=()) -> str:
    """Under the length control, as it is set: what a run would edit (frames, windows; `length_text`), or why it
    cannot (the duration limit, the run's checks in the page's words), from the clip's header alone. HTML."""
    if settings.video is None:  # what the choice means, until a clip is there
        text = length_choice_text(settings.num_frames, config["transformer"]["sample_frames"], max_duration)
        return f"<span>{escape(text)}</span>"
    try:
        check_duration(settings.video, max_duration)
        text = length_text(settings, config, stride_control())
    except (ValueError, OSError) as error:
        return problem_html(error_text(error, uploads))
    return f"<span>{escape(text)}</span>"


def adjustment_notes(pipe, settings: EditSettings, config: dict) -> list[str]:
    """What the run changes of what was asked without an error: frames trimmed, prompts cut to the model's tokens,
    a clip cropped (or padded) to another shape. Said in the status line, as the command line logs them."""
    from ..cogvideox_ddim_checkpoint import any_size
    from ..cogvideox_ddim_video_io import probe_video
    from ..workflow.sources import check_source

    notes = []
    shape = check_source(settings, config)
    asked = settings.num_frames or config["transformer"]["sample_frames"]
    if asked != "all" and shape.num_frames < asked:  # the whole clip: the note on windows says its frames
        whose = "asked" if settings.num_frames else "the model's"
        notes.append(f"Used {shape.num_frames} frames, not the {asked} {whose}: the clip has fewer with this frame "
                     "selection, trimmed to a count the model takes.")
    height, width = probe_video(settings.video).display_size
    if abs(height / width - shape.height / shape.width) > 0.01 and settings.resize_mode != "stretch":
        orientation = "portrait " if height > width else ""
        done = {"crop": "cropped", "pad": "padded"}[settings.resize_mode]
        whose = "the size asked" if settings.height or settings.width else "the model's shape"
        if any_size(config["transformer"]) and not (settings.height or settings.width):
            whose = "a size this model runs"
        notes.append(f"The {width}x{height} {orientation}clip was {done} to {whose}, {shape.width}x{shape.height} "
                     f"({label('resize_mode')}: {settings.resize_mode}).")
    max_tokens = pipe.transformer.config.max_text_seq_length
    prompts = [(label("source_prompt"), settings.source_prompt), (label("negative_prompt"), settings.negative_prompt)]
    prompts += [(label("prompts") + (f" {i}" if len(settings.prompts) > 1 else ""), prompt)
                for i, prompt in enumerate(settings.prompts, start=1)]
    for name, prompt in prompts:
        tokens = len(pipe.tokenizer(prompt).input_ids) if prompt else 0
        if tokens > max_tokens:
            notes.append(f"{name} is {tokens} tokens; this model reads the first {max_tokens} and ignores the rest.")
    return notes


def status_text(record: dict, settings: EditSettings, reused: bool, notes=(), compression: int = 4) -> str:
    """The status line after a run: what was inverted (frames, windows) or reused, edited, masked and reconstructed,
    and what was adjusted."""
    outputs, timings = record["outputs"], record["timings_s"]
    plan = WindowPlan.from_inversion(record["inversion"], compression)
    if reused:
        status = [(f"Reused the inversion of this clip and settings ({plan.frames} frames{plan.in_windows()}; no "
                   "inversion run).")]
    else:
        status = [(f"Inverted {plan.frames} frames{plan.in_windows()} with {settings.steps} steps in "
                   f"{timings['invert_s']:.1f} s; kept the inversion for the next prompt on this clip and settings.")]
    windows = f" ({plan.windows_x_steps(steps_run(settings))} each)" if plan.windows > 1 else ""
    if "edit_s" in timings:
        status.append(f"Edited under {len(settings.prompts)} prompt(s){windows} in {timings['edit_s']:.1f} s.")
    if "mask" in outputs:
        source = (f"the model's attention to {', '.join(settings.mask_words)}" if settings.mask_words
                  else "the uploaded mask video")
        pasted = "; the source pasted back outside it" if settings.paste_back else ""
        status.append(f"Changed only inside the mask ({source}){pasted}.")
    if "reconstruction_s" in timings:
        status.append(f"Reconstructed{windows} in {timings['reconstruction_s']:.1f} s.")
    return "\n".join(status + list(notes))


# ---------------------------------------------------------------------------------------------------------------------
# Files: run.json as served, a run's results, the example clips


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def _portable(value, run_dir: str, work_dir: str, uploads: dict, model: str | None = None):
    """`value` (run.json's content) with each server path made portable: files of the run relative to it, uploads by
    their own file names, saved inversions by theirs, the local checkpoint `model` (and anything in it, or in this
    package's own folder) by its folder's name."""
    if isinstance(value, dict):
        return {key: _portable(item, run_dir, work_dir, uploads, model) for key, item in value.items()}
    if isinstance(value, list):
        return [_portable(item, run_dir, work_dir, uploads, model) for item in value]
    if isinstance(value, str) and os.path.isabs(value):
        if _within(value, work_dir):
            if _within(value, run_dir):
                return os.path.relpath(value, run_dir)
            return uploads.get(os.path.abspath(value), os.path.basename(value))
        for folder in (model, PACKAGE_DIR):
            if folder and os.path.isabs(folder) and _within(value, os.path.abspath(folder)):
                name = os.path.basename(os.path.normpath(folder))
                inside = os.path.relpath(value, os.path.abspath(folder))
                return name if inside == "." else f"{name}/{inside}"
    return value


def server_path_free(text: str, model: str | None = None, work_dir: str | None = None) -> str:
    """`text` (a message for the page) with the local checkpoint `model`, this package's folder and the app's
    temporary folder `work_dir` named without where they are on the server."""
    folders = [os.path.abspath(folder) for folder in (model, PACKAGE_DIR) if folder and os.path.isabs(folder)]
    for folder in sorted(folders, key=len, reverse=True):
        text = text.replace(folder, os.path.basename(folder))
    if work_dir:
        text = text.replace(os.path.abspath(work_dir) + os.sep, "")
    return text


def write_portable_run_json(run_dir: str, work_dir: str, uploads: dict, model: str | None = None):
    """Rewrite `run_dir`/run.json, which the page serves for download, without server paths: in the app's temporary
    folder `work_dir`, the local checkpoint `model`, this package's folder. `uploads`: absolute path -> the name to
    show (the upload's own file name)."""
    path = os.path.join(run_dir, "run.json")
    with open(path) as file:
        record = json.load(file)
    write_json(_portable(record, os.path.abspath(run_dir), os.path.abspath(work_dir), uploads, model), path)


@dataclass
class RunResult:
    """What the page shows of a finished run: its files by name (run.json as "run") and its status line."""

    outputs: dict
    status: str


def last_run(work_dir: str, name: str | None) -> RunResult | None:
    """The finished run `name` (its folder under runs/) while its files are kept, as a reload shows it."""
    run_dir = os.path.join(work_dir, "runs", os.path.basename(name or "") or ".missing")
    if not os.path.isfile(os.path.join(run_dir, "status.txt")):
        return None
    with open(os.path.join(run_dir, "run.json")) as file:
        outputs = {key: os.path.join(run_dir, path) for key, path in json.load(file)["outputs"].items()}
    outputs["run"] = os.path.join(run_dir, "run.json")
    with open(os.path.join(run_dir, "status.txt")) as file:
        return RunResult(outputs, "Your last run on this page:\n" + file.read())


def example_clips(folder: str) -> list[list[str]]:
    """Example rows (video, source prompt, edit prompt): a held-out toy-world clip and the generated sample clip."""
    from ..cogvideox_ddim_video_io import write_video
    from ..testing.sample_clip import write_sample_clip
    from ..toy import world as toy_world

    clip = toy_world.make_clips(1, seed=0, split="held_out")[0]
    colours = list(toy_world.COLOURS)
    edit_colour = colours[(colours.index(clip.colour) + 1) % len(colours)]
    toy_path = write_video(clip.frames, os.path.join(folder, "toy_clip.mp4"), fps=8.0)
    sample_path = write_sample_clip(os.path.join(folder, "sample_clip.mp4"))
    return [
        [toy_path, clip.caption, toy_world.caption(clip.shape, edit_colour, clip.direction, clip.background)],
        [sample_path, "a red circle moving right", "a yellow circle moving right"],
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Runs


class Runs:
    """The run in progress (one at a time: `lock`), a stop flag per browser session with a run, and each session's
    last finished run."""

    def __init__(self):
        self.lock = threading.Lock()  # held for a whole run, so a stopped run ends its step before the next starts
        self.stops: dict[str, threading.Event] = {}
        self.last: dict[str, str] = {}  # session -> its last finished run's folder name

    def stop(self, session: str | None = None):
        """Stop `session`'s run (every run when None) at its next step."""
        for key, event in list(self.stops.items()):
            if session is None or key == session:
                event.set()

    @contextmanager
    def running(self, session: str):
        """Hold the lock for one run of `session`; yields its `stop` callable (true once the run must end)."""
        flag = self.stops.setdefault(session, threading.Event())
        flag.clear()
        with self.lock:
            try:
                yield flag.is_set
            finally:
                self.stops.pop(session, None)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the run in progress to end; whether none runs now."""
        if self.lock.acquire(timeout=timeout):
            self.lock.release()
            return True
        return False


class Editor:
    """Runs the page's edits with one loaded pipeline; every file it writes goes under `work_dir` (runs/,
    inversions/, examples/)."""

    def __init__(self, pipe, load_info: dict, model: str, config: dict, work_dir: str, max_duration: float,
                 no_video: str, limits: Limits | None = None):
        self.pipe, self.load_info, self.model, self.config = pipe, load_info, model, config
        self.work_dir, self.max_duration, self.no_video = work_dir, max_duration, no_video
        self.limits = limits or Limits.for_checkpoint(config, max_duration=max_duration)
        self.in_use: tuple[str, ...] = ()  # the uploads the run in progress reads (kept by the upload cache)
        self.runs = Runs()
        for name in ("runs", "inversions", "examples"):
            os.makedirs(os.path.join(work_dir, name), exist_ok=True)

    @property
    def runs_dir(self) -> str:
        return os.path.join(self.work_dir, "runs")

    @property
    def inversions_dir(self) -> str:
        return os.path.join(self.work_dir, "inversions")

    def read(self, values: dict) -> tuple[EditSettings, list[str]]:
        """The settings of the page's `values` (by field name) and the uploads among them; PageError for a value
        that does not read, or nothing to do."""
        if not values.get("video"):
            raise PageError(self.no_video)
        uploads = [path for path in (values["video"], values.get("mask"), values.get("image")) if path]
        try:
            settings = settings_from_page(values)
            if not settings.prompts and not settings.reconstruction:
                raise SettingsError("prompts", "Type an {prompts} (one per line for several edits), or tick "
                                    "{reconstruction}.")
            self.check_limits(settings)
        except SettingsError as error:
            raise PageError(error_text(error, uploads), error_fields(error)) from None
        return dataclasses.replace(settings, trajectory_device=self.limits.trajectory_device), uploads

    def check_limits(self, settings: EditSettings):
        """Refuse, before any model work, a number over what this server takes (`Limits`)."""
        limits = self.limits
        if len(settings.prompts) > limits.max_prompts:
            raise SettingsError("prompts", f"{{prompts}}: this server edits at most {limits.max_prompts} prompts "
                                f"per run (one per line); got {len(settings.prompts)}.")
        for name, bound in limits.bounds().items():
            value = getattr(settings, name)
            if value is not None and value > bound:
                unit = " pixels" if name in ("height", "width", "mask_dilation", "mask_feather") else ""
                raise SettingsError(name, f"{{{name}}} {value} is more than this server takes: at most "
                                    f"{bound}{unit}.")

    def prepare(self, settings: EditSettings) -> dict:
        """The command line's checks (`prepare_edit`), with the app's duration limit before the video is read."""
        return prepare_edit(settings, config=self.config,
                            check_video=lambda path: check_duration(path, self.max_duration))

    def run(self, values: dict, session: str | None = None) -> RunResult:
        """One edit of the page's `values` for the browser session `session`; raises PageError (stopped, refused or
        failed: nothing of the run is kept)."""
        settings, uploads = self.read(values)
        session = session or uuid.uuid4().hex
        run_dir = os.path.join(self.runs_dir, time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8])
        with self.runs.running(session) as stop:
            self.in_use = tuple(uploads)
            try:
                result = self._run(settings, uploads, run_dir, stop)
                self.runs.last[session] = os.path.basename(run_dir)
                return result
            except RunStopped:
                shutil.rmtree(run_dir, ignore_errors=True)
                print_log("Run stopped.")
                raise PageError(STOPPED) from None
            except (ValueError, FileNotFoundError, TypeError, OSError) as error:
                shutil.rmtree(run_dir, ignore_errors=True)
                raise PageError(server_path_free(error_text(error, uploads), self.model, self.work_dir),
                                error_fields(error)) from None
            # a failure of the run itself: said in the page, logged in full here
            except Exception as error:  # noqa: BLE001
                shutil.rmtree(run_dir, ignore_errors=True)
                import traceback

                traceback.print_exc()
                raise PageError(f"The run failed on the server ({type(error).__name__}); nothing of it was kept. "
                                "Change a setting or press Edit to try again.") from None
            finally:
                self.in_use = ()
                prune(self.runs_dir, KEEP_RUNS)
                prune(self.inversions_dir, KEEP_INVERSIONS)

    def _run(self, settings: EditSettings, uploads: list[str], run_dir: str, stop) -> RunResult:
        self.prepare(settings)
        notes = adjustment_notes(self.pipe, settings, self.config)
        plan, steps = window_plan(settings, self.config), steps_run(settings)  # for the status line
        inversion = os.path.join(self.inversions_dir, inversion_key(settings, self.model) + ".safetensors")
        reused = os.path.isfile(inversion)
        if reused:
            settings.inversion = inversion
            os.utime(inversion)  # most recently used: pruned last
        else:
            settings.save_inversion = inversion

        def log(message: str):
            print_log(message)
            # names the stage of the next progress bar, and a long clip's windows x steps
            self.pipe.set_progress_bar_config(
                desc=progress_description(message, plan, steps, settings.window_batch_size))

        if stop():
            raise RunStopped()
        record = edit_video(self.pipe, settings, run_dir, self.load_info, log=log, stop=stop)
        write_portable_run_json(run_dir, self.work_dir, {os.path.abspath(path): os.path.basename(path)
                                                         for path in uploads}, self.model)
        status = status_text(record, settings, reused, notes, temporal_compression(self.config))
        with open(os.path.join(run_dir, "status.txt"), "w") as file:  # what a reload of the page shows
            file.write(status)
        return RunResult(record["outputs"], status)

    def describe_length(self, values: dict) -> str:
        """The note under Length for the page's values (HTML): what a run would edit, or why it cannot."""
        uploads = [path for path in (values.get("video"), values.get("mask")) if path]
        try:
            settings = settings_from_page(values)
        except SettingsError as error:
            return problem_html(error_text(error, uploads))
        return length_note(settings, self.config, self.max_duration, uploads)
