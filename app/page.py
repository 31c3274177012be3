"""The page: its layout and the wiring of its events (Gradio Blocks). What a control is comes from `app.fields`, what a
run does from `app.session`.

The first screen holds what a first run needs: the clip and its length (with example clips under it), the two
prompts, Edit and Stop with the status line (where the progress bar shows), and the results; every other field is
folded under "Advanced" or, for the mask options, "Local edit (mask)", one row per group of the option table
(`fields.fields_in`), so a new option appears there by itself.
"""

import inspect
import os

import gradio as gr

from ..cogvideox_ddim_checkpoint import default_video_size, is_image_to_video, latent_frame_count
from ..cogvideox_ddim_choices import DEFAULT_WINDOW_WEIGHTING
from ..workflow.settings import EditSettings
from .fields import (
    LENGTH_LABEL,
    PAGE_FIELDS,
    api_parameters,
    control,
    default_size_note,
    fields_in,
    length_choices,
    num_frames_for_length,
    page_option,
    page_value,
)
from .session import STOPPED, Editor, PageError, RunResult, example_clips, last_run, length_note


MiB = 1024**2
VIDEO_HEIGHT = 256  # pixels each video takes on the page
FIRST_SCREEN = ("video", "source_prompt", "prompts", "num_frames")  # placed by hand, beside the clip
PRIVATE = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
PIPELINE = "pipeline"  # the concurrency group of every event that runs the pipeline: one run at a time
# Element ids of the fields whose control is not named after the field (the rest: the name with dashes); a refusal
# highlights the controls of the fields it names. "Frames" is set from "Length", which the visitor sees.
ELEM_IDS = {"video": "source-video", "prompts": "edit-prompt", "image": "first-frame", "mask": "mask-file",
            "num_frames": "length"}
FIELD_ERROR_STYLE = "outline: 3px solid #b91c1c; outline-offset: 2px; border-radius: 6px"


def elem_id(name: str) -> str:
    return ELEM_IDS.get(name, name.replace("_", "-"))


def field_error_html(fields=()) -> str:
    """A style block outlining the controls of `fields` (a refusal's), or nothing: the page's highlight."""
    if not fields:
        return ""
    selectors = ", ".join(f"#{elem_id(name)}" for name in fields)
    return f'<style data-field-error="{" ".join(fields)}">{selectors} {{ {FIELD_ERROR_STYLE} }}</style>'

# Keeps the reason for a refused upload where the clip was (Gradio's toast goes away; the upload box keeps only a red
# "Error"): the browser checks the file's size as it is picked, before uploading.
UPLOAD_CHECK_JS = """
<script>
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!input.closest || !input.closest("#source-video") || !input.files || !input.files.length) return;
  const note = document.querySelector("#source-note");
  const limit = Number(note.dataset.maxBytes || note.querySelector("[data-max-bytes]").dataset.maxBytes);
  const file = input.files[0];
  const text = note.querySelector(".upload-problem");
  text.textContent = file.size > limit
    ? `"${file.name}" is ${(file.size / 1048576).toFixed(1)} MB; this app takes videos up to ` +
      `${(limit / 1048576).toFixed(1).replace(/\\.0$/, "")} MB. Trim or compress it, then upload it again.`
    : "";
}, true);
</script>
"""


# Hint text (Gradio's "info" under each control, placeholders, notes) at WCAG AA contrast: at least 4.5:1 on the
# page's backgrounds (#4b5563 on white: 7.6:1; #d1d5db on Gradio's dark grey: about 10:1).
PAGE_CSS = """
.gradio-container { --block-info-text-color: #4b5563; --body-text-color-subdued: #4b5563;
                    --input-placeholder-color: #6b7280; }
.dark .gradio-container, .gradio-container.dark {
  --block-info-text-color: #d1d5db; --body-text-color-subdued: #d1d5db; --input-placeholder-color: #9ca3af; }
"""


def make(name: str, component: str | None = None, **overrides):
    """The Gradio control of the page field `name` (`fields.control`; `component` another class, e.g. an image for a
    file), its element id the field's name with dashes. A control that shows no help (a file) has it written under."""
    spec = control(name, **{"elem_id": elem_id(name), **overrides})
    made = getattr(gr, component or spec.component)
    accepted = inspect.signature(made).parameters
    made = made(**{key: value for key, value in spec.arguments.items() if key in accepted})
    if "info" not in accepted and spec.arguments.get("info"):
        gr.Markdown(f"*{spec.arguments['label']}*: {spec.arguments['info']}")
    return made


def checkpoint_overrides(config: dict) -> dict:
    """Arguments of controls that depend on the loaded checkpoint (its window, its size) or show a file as the page
    does, by field name; every other argument comes from the option table."""
    transformer = config["transformer"]
    native_frames = transformer["sample_frames"]
    temporal = config["vae"].get("temporal_compression_ratio", 4)
    from ..cogvideox_ddim_windows import default_window_overlap

    overlap = default_window_overlap(latent_frame_count(native_frames, temporal), temporal)
    size_note = default_size_note(transformer)
    return {
        "window_overlap": {"value": overlap, "step": 4, "info": (
            f"long clips: frames neighbouring windows of {native_frames} share, a multiple of 4 (default {overlap}: "
            "a quarter of the window; 0: none, seams may show)")},
        "window_weighting": {"value": DEFAULT_WINDOW_WEIGHTING},
        "height": {"info": size_note},
        "width": {"info": size_note},
        "image": {"component": "Image", "sources": ["upload"], "height": 160, "elem_id": "first-frame",
                  "info": None},
        "mask": {"file_types": ["video"], "elem_id": "mask-file"},
    }


def folded_fields(inputs: dict, where: str, overrides: dict):
    """The fields under "Advanced" or "Local edit (mask)": one row per group of the option table."""
    rows: dict[str, list[str]] = {}
    for name in fields_in(where, placed=inputs):
        rows.setdefault(page_option(name).group, []).append(name)
    for names in rows.values():
        with gr.Row():
            for name in names:
                inputs[name] = make(name, **overrides.get(name, {}))


def folded_inputs(inputs: dict, config: dict):
    overrides = checkpoint_overrides(config)
    with gr.Accordion("Advanced: steps, guidance, reference, frames, windows, size", open=False, elem_id="advanced"):
        folded_fields(inputs, "advanced", overrides)
    with gr.Accordion("Local edit (mask): change only part of the frame", open=False, elem_id="local-edit"):
        folded_fields(inputs, "mask", overrides)
    return inputs


def length_controls(inputs: dict, config: dict, max_duration: float):
    """Under the clip: "Length" (the model's window, a number of frames, or the whole clip), the frame count it may
    take, "Frames" as the Edit button sends it (hidden: `inputs["num_frames"]`, set from Length when Edit is pressed;
    the API takes 0, a count or "all"), and the note saying what a run would edit. Returns Length, the frame count
    and the note."""
    native_frames = config["transformer"]["sample_frames"]
    choices = length_choices(native_frames)
    info = (f"the whole clip: up to {max_duration:g} s, edited in overlapping windows of {native_frames} frames "
            "(Advanced: their overlap)")
    if is_image_to_video(config["transformer"]):  # one window only: offer only what the model can do
        choices = choices[:1]
        info = f"this image-to-video model edits the first {native_frames} frames of the clip"
    length = gr.Radio(choices, value="window", label=LENGTH_LABEL, elem_id="length", info=info)
    frame_count = gr.Number(native_frames, label=page_option("num_frames").page_label, precision=0, minimum=0,
                            visible=False, elem_id="frame-count",
                            info="trimmed to 8k + 1; more than the window: edited in windows")
    inputs["num_frames"] = gr.Textbox(page_value("num_frames"), visible=False, elem_id="num-frames")
    note = gr.HTML(length_note(EditSettings(), config, max_duration), elem_id="length-note")
    return length, frame_count, note


def describe_length_on_change(editor: Editor, length, frame_count, note, inputs: dict):
    """Show the frame count only for "A number of frames", and keep the note under Length saying what a run of the
    page's settings would edit (or why it cannot) as the clip, its length or its window settings change."""

    def describe_length(length_choice, frames, *values):
        values = dict(zip(PAGE_FIELDS, values), num_frames=num_frames_for_length(length_choice, frames))
        return editor.describe_length(values)

    length.change(lambda choice: gr.Number(visible=choice == "frames"), inputs=length, outputs=frame_count,
                  **PRIVATE)
    fields = ("video", "window_overlap", "window_weighting", "skip_frames_start", "skip_frames_end", "frame_stride",
              "sampling", "mask_words")
    gr.on([length.change, frame_count.change, *(inputs[name].change for name in fields)], describe_length,
          inputs=[length, frame_count, *(inputs[name] for name in PAGE_FIELDS)], outputs=note,
          trigger_mode="always_last", **PRIVATE)  # a change while the note is made is said after it, not dropped


def results_column(max_prompts: int = 1):
    """The right-hand column: a hint before the first run, then source | edit, the edit, the reconstruction and mask
    (when made) and the downloads. Returns the hint, the results column, its four videos and the downloads."""
    hint = gr.Markdown(
        "**Results show here**: source | edit side by side, the edit, and the files to download.\n\n"
        "New here? Pick an example clip under the source video, then press Edit.", elem_id="results-hint")
    with gr.Column(visible=False, elem_id="results") as results:
        previous = gr.Markdown("**Shown: your previous run.** The last Edit did not make a new one (see Status).",
                               visible=False, elem_id="previous-run")
        videos = [
            gr.Video(label="Source | edit", interactive=False, autoplay=True, loop=True, height=VIDEO_HEIGHT - 16,
                     elem_id="side-by-side"),
            gr.Video(label="Edit", interactive=False, loop=True, height=VIDEO_HEIGHT - 16, elem_id="edit-video"),
            gr.Video(label="Reconstruction", interactive=False, loop=True, visible=False, height=VIDEO_HEIGHT - 16,
                     elem_id="reconstruction-video"),
            gr.Video(label="Mask (white: may change)", interactive=False, loop=True, visible=False,
                     height=VIDEO_HEIGHT - 16, elem_id="mask-video"),
        ]
        # one player per further edit prompt (edit-2, ...), shown when the run made it
        more_edits = [gr.Video(label=f"Edit {index}", interactive=False, loop=True, visible=False,
                               height=VIDEO_HEIGHT - 16, elem_id=f"edit-video-{index}")
                      for index in range(2, max_prompts + 1)]
        downloads = gr.File(label="Downloads (MP4s and run.json)", file_count="multiple", interactive=False,
                            elem_id="downloads")
    return hint, results, videos, downloads, previous, more_edits


def more_edit_updates(result: RunResult | None, count: int):
    """The players of edit-2, ...: each shown with its video when the run made it, hidden otherwise."""
    outputs = result.outputs if result is not None else {}
    return [gr.Video(value=outputs.get(f"edit-{index}"), visible=f"edit-{index}" in outputs)
            for index in range(2, count + 2)]


def result_updates(result: RunResult):
    """The page's result controls for a run: the values the edit function returns."""
    outputs = result.outputs
    downloads = [path for name, path in outputs.items() if name != "inversion"]
    return (
        outputs.get("side_by_side"),
        outputs.get("edit-1"),
        gr.Video(value=outputs.get("reconstruction"), visible="reconstruction" in outputs),
        gr.Video(value=outputs.get("mask"), visible="mask" in outputs),
        downloads,
        result.status,
    )


def with_signature(function):
    """`function(*values)` with one parameter per page field (API names: `fields.API_NAMES`), each defaulting to the
    page's default so that API callers may leave it out, then Gradio's progress tracker and the browser request."""
    parameter = inspect.Parameter.POSITIONAL_OR_KEYWORD
    names_and_defaults = api_parameters()
    function.__signature__ = inspect.Signature(
        [inspect.Parameter(names_and_defaults[0][0], parameter)]  # the video: required
        + [inspect.Parameter(name, parameter, default=default) for name, default in names_and_defaults[1:]]
        # how Gradio passes its progress tracker and the browser session
        + [inspect.Parameter("progress", parameter, default=gr.Progress(track_tqdm=True)),
           inspect.Parameter("request", parameter, default=None, annotation=gr.Request)]
    )
    function.__annotations__ = {"request": gr.Request}
    return function


def _request(values):
    # Gradio passes the fields, then the progress tracker and the browser session's request (by position).
    return next((value for value in values[len(PAGE_FIELDS):] if isinstance(value, gr.Request)), None)


def edit_function(editor: Editor):
    """The API's /edit: a refusal or failure is an error (`gr.Error`, in the page's words)."""

    def edit(*values):
        request = _request(values)
        try:
            result = editor.run(dict(zip(PAGE_FIELDS, values)), getattr(request, "session_hash", None))
        except PageError as error:
            raise gr.Error(str(error), print_exception=False) from None
        return result_updates(result)

    return with_signature(edit)


def page_edit_function(editor: Editor, more_edits: int = 0):
    """What the Edit button runs: the run's results, or, for a refusal or failure, the page back in a usable state at
    once: the reason in Status, the fields it names outlined (their folded section opened), the previous results
    kept and labelled as such, Edit on and Stop off. Returns the result outputs, then the results column, the hint,
    the previous-run note, the browser's last run, the highlight, Advanced, Local edit, Edit and Stop."""

    def edit(*values):
        request = _request(values)
        session = getattr(request, "session_hash", None)
        try:
            result = editor.run(dict(zip(PAGE_FIELDS, values)), session)
        except PageError as error:
            fields = error.fields
            folded = {where: any(name in fields_in(where, FIRST_SCREEN) for name in fields)
                      for where in ("advanced", "mask")}
            return (*[gr.skip()] * 5, str(error), gr.skip(), gr.skip(), gr.Markdown(visible=True), gr.skip(),
                    field_error_html(fields), gr.Accordion(open=True) if folded["advanced"] else gr.skip(),
                    gr.Accordion(open=True) if folded["mask"] else gr.skip(), *buttons_idle(),
                    *[gr.skip()] * more_edits)
        finished = editor.runs.last.pop(session, None) if session is not None else None
        return (*result_updates(result), gr.Column(visible=True), gr.Markdown(visible=False),
                gr.Markdown(visible=False), finished, "", gr.skip(), gr.skip(), *buttons_idle(),
                *more_edit_updates(result, more_edits))

    return with_signature(edit)


def buttons_running(length_choice, frames):
    """Edit pressed: Edit off and relabelled, Stop on, "Frames" as Length says (what the run reads), no highlight."""
    return gr.Button("Editing...", interactive=False), gr.Button(interactive=True), num_frames_for_length(
        length_choice, frames), ""


def buttons_idle():
    """No run: Edit on, Stop off."""
    return gr.Button("Edit", interactive=True), gr.Button(interactive=False)


def model_note(model: str, config: dict) -> str:
    from ..toy.demo import TOY_CHECKPOINT

    transformer = config["transformer"]
    if os.path.abspath(model) != os.path.abspath(TOY_CHECKPOINT):
        if os.path.exists(model):  # a local folder: its name only, never where it is on the server
            return f"`{os.path.basename(os.path.normpath(model))}` (a local checkpoint)"
        return f"`{model}`"
    height, width = default_video_size(transformer)
    return (f"the committed **toy checkpoint** ({width}x{height}, {transformer['sample_frames']} frames; it knows "
            "prompts like *a red circle moving left on a black background*; real videos need a real model such as "
            "THUDM/CogVideoX-5b, loaded by whoever runs this server)")


FIRST_FRAME_NOTE = ("*First frame*: the edit starts from the source's first frame; to steer it, edit that frame in "
                    "an image editor and upload it here.")


def first_frame(inputs: dict, config: dict):
    """Image-to-video checkpoints: "First frame" on the first screen, under the clip, with what it does in one line.
    Text-to-video checkpoints take no image: the field is there (the API's parameter) but never shown."""
    if is_image_to_video(config["transformer"]):
        inputs["image"] = make("image", **checkpoint_overrides(config)["image"])
        gr.Markdown(FIRST_FRAME_NOTE, elem_id="first-frame-note")
    else:
        inputs["image"] = gr.Image(type="filepath", visible=False, elem_id="first-frame")


def form(editor: Editor, max_upload_bytes: int):
    """The page's three columns. Returns the inputs by field name, Length, the frame count, the note under Length,
    Edit, Stop, the status line, the hint, the results column, its videos and the downloads."""
    config, limits = editor.config, f"videos up to {max_upload_bytes / MiB:g} MB and {editor.max_duration:g} s"
    with gr.Row():
        with gr.Column(scale=1, min_width=300) as clip_column:
            inputs = {"video": gr.Video(label=page_option("video").page_label, sources=["upload"],
                                        height=VIDEO_HEIGHT - 16, elem_id="source-video")}
            gr.HTML(f'<div id="source-note-text" data-max-bytes="{max_upload_bytes}">'
                    f'<span class="upload-problem" style="color: var(--error-text-color, #dc2626); '
                    f'font-weight: 600"></span> <span>{limits[0].upper() + limits[1:]}.</span></div>',
                    elem_id="source-note")
            length, frame_count, note = length_controls(inputs, config, editor.max_duration)
            first_frame(inputs, config)
        with gr.Column(scale=1, min_width=300):
            inputs["source_prompt"] = make("source_prompt", info=None, placeholder="what the video shows")
            inputs["prompts"] = make("prompts", info=None, lines=2, elem_id="edit-prompt",
                                     placeholder="what the edited video shows (one per line for several)")
            with gr.Row():
                run = gr.Button("Edit", variant="primary", elem_id="run", scale=2)
                stop = gr.Button("Stop", variant="stop", elem_id="stop", interactive=False, scale=1)
            status = gr.Textbox(label="Status", interactive=False, lines=3, elem_id="status",
                                placeholder="Progress and what each run did show here.")
            folded_inputs(inputs, config)
        with gr.Column(scale=1, min_width=300):
            hint, results, videos, downloads, previous, more_edits = results_column(editor.limits.max_prompts)
    with clip_column:  # under the clip, on the first screen: a newcomer's quickest start
        gr.Examples(example_clips(os.path.join(editor.work_dir, "examples")),
                    inputs=[inputs["video"], inputs["source_prompt"], inputs["prompts"]],
                    label="Example clips: a click fills in the clip and both prompts", cache_examples=False)
    return inputs, length, frame_count, note, run, stop, status, hint, results, videos, downloads, previous, more_edits


def build_app(editor: Editor, load_info: dict, max_upload_bytes: int, keep_files_s: int = 3600):
    """The page, running its edits with `editor`; Gradio's cache (uploads, served results) is cleaned every
    `keep_files_s` / 4 seconds (at most every 10 minutes) of files older than `keep_files_s`."""
    # No analytics: the app makes no request of its own to the internet (fonts and scripts are served by Gradio).
    with gr.Blocks(title="CogVideoX DDIM inversion", delete_cache=(min(600, max(60, keep_files_s // 4)), keep_files_s), analytics_enabled=False) as blocks:
        gr.Markdown(
            "## CogVideoX DDIM inversion: edit a video with a prompt\n"
            f"Upload a clip, say what it shows and what should change, and press **Edit**. Model: "
            f"{model_note(editor.model, editor.config)}, on {load_info.get('device')}. One run at a time; others wait "
            "in the queue."
        )
        last = gr.BrowserState(None, storage_key="cogvideox-ddim-inversion-last-run")
        (inputs, length, frame_count, note, run, stop, status, hint, results, videos, downloads, previous,
         more_edits) = form(editor, max_upload_bytes)
        highlight = gr.HTML("", elem_id="field-error", padding=False)
        api_button = gr.Button(visible=False, elem_id="api-edit")  # the API's /edit (errors raised, not shown)
        wire_events(blocks, editor, inputs, (length, frame_count, note), (run, stop, status),
                    (hint, results, videos, downloads, previous, more_edits), last, (highlight, api_button))
    return blocks


def wire_events(blocks, editor: Editor, inputs: dict, length_parts, buttons, result_parts, last, extra):
    """Edit, Stop, the note under Length, the API's /edit, and the page's load (its last run) and unload (its run
    stops)."""
    length, frame_count, note = length_parts
    run, stop, status = buttons
    hint, results, videos, downloads, previous, more_edits = result_parts
    highlight, api_button = extra
    result_outputs = [*videos, downloads, status]
    accordions = {block.elem_id: block for block in blocks.blocks.values()
                  if isinstance(block, gr.Accordion) and block.elem_id in ("advanced", "local-edit")}

    def stop_run(last_run_name, request: gr.Request = None):
        """Stop this browser's run; says what was stopped and what is kept."""
        running = request is not None and request.session_hash in editor.runs.stops
        if request is not None:  # Gradio passes the browser session's request
            editor.runs.stop(request.session_hash)
        said = STOPPED if running else "Stopped before it started (it was waiting in the queue). Nothing was kept."
        kept = " The results shown are your previous run's." if last_run_name else ""
        return (*buttons_idle(), said + kept, gr.Markdown(visible=bool(last_run_name)))

    def restore(name):
        """A reload shows the browser's last finished run while its files are kept."""
        result = last_run(editor.work_dir, name)
        if result is None:
            return [gr.skip()] * (len(result_outputs) + 2 + len(more_edits))
        return (*result_updates(result), gr.Column(visible=True), gr.Markdown(visible=False),
                *more_edit_updates(result, len(more_edits)))

    describe_length_on_change(editor, length, frame_count, note, inputs)
    started = run.click(buttons_running, inputs=[length, frame_count],
                        outputs=[run, stop, inputs["num_frames"], highlight], **PRIVATE)
    field_inputs = [inputs[name] for name in PAGE_FIELDS]
    edited = started.then(
        page_edit_function(editor, len(more_edits)),
        inputs=field_inputs,
        outputs=[*result_outputs, results, hint, previous, last, highlight, accordions["advanced"],
                 accordions["local-edit"], run, stop, *more_edits],
        show_progress_on=[status],  # the progress bar shows beside the Edit button, not over hidden results
        concurrency_limit=1,  # one pipeline, one GPU: runs wait in the queue
        concurrency_id=PIPELINE,
        api_name="page_edit",  # the API's name "edit" is the API's own event's (below)
        api_visibility="private",
    )
    edited.then(buttons_idle, outputs=[run, stop], **PRIVATE)  # also after an unexpected end
    # The API: the same run, its refusals raised as errors; it queues with the page's runs.
    api_button.click(edit_function(editor), inputs=field_inputs, outputs=result_outputs, api_name="edit",
                     concurrency_limit=1, concurrency_id=PIPELINE)
    # Stop: a queued run leaves the queue (cancels); a running one ends at its next step (its flag). Edit is back at
    # once (not only after the run's end) and Status says what was stopped and kept.
    stop.click(stop_run, inputs=[last], outputs=[run, stop, status, previous], cancels=[edited], **PRIVATE)
    def stop_on_unload(request: gr.Request = None):
        if request is not None:
            editor.runs.stop(request.session_hash)

    blocks.unload(stop_on_unload)  # a closed or reloaded page stops its run: nobody waits for a result nobody sees
    blocks.load(restore, inputs=[last], outputs=[*result_outputs, results, hint, *more_edits], **PRIVATE)
