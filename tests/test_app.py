"""The web app, served on 127.0.0.1 in this process with the committed toy checkpoint, driven as users drive it:
with gradio_client (the API the page itself calls) and with a real headless Chromium; and what the page does between
them (`app.session`: runs, refusals, notes) and what it shows (`app.fields`: controls from the option table) by
function calls."""

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import imageio_ffmpeg
import numpy as np
import pytest
import torch


gradio_client = pytest.importorskip("gradio_client", reason="the app's tests need gradio: pip install -e '.[test]'")

from cogvideox_ddim_inversion.app import launch_app
from cogvideox_ddim_inversion.app.fields import PAGE_FIELDS, page_value
from cogvideox_ddim_inversion.app.server import build_parser
from cogvideox_ddim_inversion.app.session import PageError
from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import grow_mask
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.video_io import read_mask_video, read_video, write_mask_video
from cogvideox_ddim_inversion.workflow.settings import EditSettings


STEPS = 2
BROWSER_STEPS = 10  # the browser's edit is the README's screenshot: enough steps for a recognisable toy edit
SOURCE_PROMPT = "a red circle moving right on a white background"
MAX_DURATION_S = 4.0
MAX_UPLOAD_MB = 1.0


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """`cogvideox-ddim-inversion app` with no --model (the toy checkpoint), tight limits, on 127.0.0.1."""
    args = build_parser().parse_args([
        "--device", "cpu", "--host", "127.0.0.1", "--max-duration", str(MAX_DURATION_S),
        "--max-upload-mb", str(MAX_UPLOAD_MB), "--temp-dir", str(tmp_path_factory.mktemp("app")),
    ])
    server = launch_app(args, prevent_thread_lock=True)
    yield server
    server.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The generated sample clip: 17 frames of 64x96 at 8 fps (2.1 s)."""
    return write_sample_clip(tmp_path_factory.mktemp("clips") / "sample.mp4")


@pytest.fixture
def client(app, tmp_path):
    return gradio_client.Client(app.url, verbose=False, download_files=str(tmp_path))


def submit(client, video, edit_prompt, **fields):
    """Run one edit as the page's Edit button does; returns the job (its result and every status update)."""
    fields = {"source_prompt": SOURCE_PROMPT, "steps": STEPS, **fields}
    job = client.submit(video=gradio_client.handle_file(str(video)), edit_prompts=edit_prompt, api_name="/edit",
                        **fields)
    job.result(timeout=600)
    return job


def page_values(video, edit_prompt, **fields) -> dict:
    """The page's values (by field name) for an edit, as the Edit button sends them: its defaults, and `fields`."""
    return {**{name: page_value(name) for name in PAGE_FIELDS}, "video": None if video is None else str(video),
            "prompts": edit_prompt, "source_prompt": SOURCE_PROMPT, "steps": STEPS, **fields}


def run(app, video, edit_prompt, **fields):
    """One edit of the page's values through the app's editor (what /edit runs), without the API."""
    return app.editor.run(page_values(video, edit_prompt, **fields))


def uploaded(app, path) -> str:
    """`path` copied where Gradio keeps the page's uploads: in the app's temporary folder, under a hashed folder."""
    folder = Path(app.work_dir, "gradio", "upload-" + os.urandom(8).hex())
    folder.mkdir(parents=True)
    return shutil.copy(path, folder)


def refusal(app, video, edit_prompt="a blue circle", **fields) -> str:
    """The page's message for an edit the app refuses before any model work."""
    with pytest.raises(PageError) as raised:
        run(app, video, edit_prompt, **fields)
    return str(raised.value)


def progress_bars(job) -> list[tuple[str, int]]:
    """(description, length) of each progress bar the client was sent, in order, without repeats."""
    updates, queue = [], job.communicator.updates
    while not queue.empty():
        updates.append(queue.get_nowait())
    bars = []
    for update in updates:
        for unit in getattr(update, "progress_data", None) or []:
            if not bars or bars[-1] != (unit.desc, unit.length):
                bars.append((unit.desc, unit.length))
    return bars


def frame_count(path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def test_edit_reuses_the_inversion_and_refuses_bad_uploads(app, client, clip, tmp_path):
    # 1. An edit: playable MP4s of the model's 9 frames, progress through the inversion then the edit steps.
    job = submit(client, clip, "a blue circle moving right on a white background")
    side_by_side, edit, reconstruction, mask, downloads, status = job.result()
    frames, fps = read_video(edit)
    assert (len(frames), frames[0].size, fps) == (9, (64, 64), 8.0) and frame_count(edit) == 9
    frames, _ = read_video(side_by_side)
    assert (len(frames), frames[0].size) == (9, (128, 64)) and frame_count(side_by_side) == 9  # source | edit
    assert reconstruction == {"__type__": "update", "visible": False, "value": None}  # shown only on request
    assert mask == {"__type__": "update", "visible": False, "value": None}  # shown only for local edits
    assert sorted(os.path.basename(path) for path in downloads) == ["edit-1.mp4", "run.json", "side_by_side.mp4"]
    run_json = json.loads(Path(next(path for path in downloads if path.endswith("run.json"))).read_text())
    assert run_json["settings"]["steps"] == STEPS and run_json["settings"]["inversion"] is None
    assert status.startswith(f"Inverted 9 frames with {STEPS} steps")
    from cogvideox_ddim_inversion.app.session import PACKAGE_DIR

    assert app.work_dir not in status and os.path.dirname(PACKAGE_DIR) not in status  # no server path answered
    bars = progress_bars(job)
    assert [desc.split()[0] for desc, _ in bars] == ["Inverting", "Editing"] and {n for _, n in bars} == {STEPS}

    # 2. A bad upload: the page's error message (the upload by its own name), and the app goes on serving.
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    with pytest.raises(gradio_client.exceptions.AppError, match="Could not decode 'notes.mp4' as a video"):
        submit(client, not_a_video, "a blue circle")  # through the API: the upload's temporary path is not shown
    too_short = write_sample_clip(tmp_path / "short.mp4", num_frames=3)
    assert "Only 3 frame(s) remain" in refusal(app, too_short) and "at least 9" in refusal(app, too_short)
    too_long = write_sample_clip(tmp_path / "long.mp4", num_frames=48, fps=8.0)  # 6 s
    assert f"lasts 6.0 s; this app takes videos up to {MAX_DURATION_S:g} s" in refusal(app, too_long)
    assert refusal(app, None).startswith("Upload a video (videos up to 1 MB and 4 s), or pick an example clip")
    assert refusal(app, clip, "") == ('Type an "Edit prompt" (one per line for several edits), or tick '
                                      '"Reconstruction".')
    too_big = tmp_path / "big.mp4"
    too_big.write_bytes(os.urandom(int(1.5 * MAX_UPLOAD_MB * 1024**2)))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client checks before uploading
        submit(client, too_big, "a blue circle")
    with open(too_big, "rb") as file:  # the server refuses it too (as the browser's upload)
        response = httpx.post(app.url + "gradio_api/upload", files={"files": file})
    assert response.status_code == 413 and "exceeded maximum allowed size" in response.text

    # 3. A second prompt on the same clip and settings: no inversion, same result as inverting again.
    job = submit(client, clip, "a green circle moving right on a white background")
    _, reused_edit, _, _, downloads, status = job.result()
    assert status.startswith("Reused the inversion")
    assert [desc.split()[0] for desc, _ in progress_bars(job)] == ["Editing"]
    run_json = json.loads(Path(next(path for path in downloads if path.endswith("run.json"))).read_text())
    assert run_json["settings"]["inversion"] is not None and run_json["settings"]["save_inversion"] is None
    shutil.rmtree(os.path.join(app.work_dir, "inversions"))
    os.makedirs(os.path.join(app.work_dir, "inversions"))
    fresh = run(app, clip, "a green circle moving right on a white background")
    assert fresh.status.startswith("Inverted")
    np.testing.assert_array_equal(np.stack(read_video(reused_edit)[0]),
                                  np.stack(read_video(fresh.outputs["edit-1"])[0]))


def test_reconstruction_and_every_file_in_the_apps_temporary_folder(app, clip):
    from cogvideox_ddim_inversion.app.page import result_updates

    result = run(app, uploaded(app, clip), "a yellow circle moving right on a black background", reconstruction=True,
                 source_prompt="a red circle moving right on a black background")
    _, _, reconstruction, _, downloads, status = result_updates(result)
    assert status.startswith("Inverted")  # another source prompt: another inversion
    assert "Reconstructed" in status and reconstruction.visible
    assert frame_count(result.outputs["reconstruction"]) == 9
    assert "reconstruction.mp4" in map(os.path.basename, downloads)
    assert "inversion" in result.outputs and result.outputs["inversion"] not in downloads  # kept, never served
    written = [os.path.join(folder, name) for folder, _, names in os.walk(app.work_dir) for name in names]
    assert any(path.endswith("reconstruction.mp4") for path in written)
    assert any(path.endswith(".safetensors") for path in written)
    assert all(os.path.commonpath([path, app.work_dir]) == app.work_dir for path in written)
    # run.json as served for download: the upload by its own name, the run's files relative to it, no server paths.
    text = Path(next(path for path in downloads if path.endswith("run.json"))).read_text()
    run_json = json.loads(text)
    assert run_json["settings"]["video"] == "sample.mp4" and run_json["inversion"]["source"]["video"] == "sample.mp4"
    assert run_json["outputs"]["reconstruction"] == "reconstruction.mp4" and run_json["outputs"]["inversion"].endswith(
        ".safetensors") and os.sep not in run_json["outputs"]["inversion"]
    assert app.work_dir not in text and str(Path(app.work_dir).parent) not in text
    from cogvideox_ddim_inversion.app.session import PACKAGE_DIR  # the server's checkout: the toy checkpoint's home

    assert os.path.dirname(PACKAGE_DIR) not in text, text
    assert run_json["inversion"]["model"]["name_or_path"] == "checkpoint", run_json["inversion"]["model"]


def test_local_edits_with_mask_words_or_a_mask_video(app, client, clip, tmp_path):
    # Words of the source prompt: the inversion records the mask, the page shows it, paste-back keeps the outside.
    job = submit(client, clip, "a blue circle moving right on a white background", mask_words="red, circle",
                 paste_back=True)
    side_by_side, edit, _, mask, downloads, status = job.result()
    assert mask["visible"] and "mask.mp4" in map(os.path.basename, downloads)
    assert "Changed only inside the mask (the model's attention to red, circle); the source pasted back" in status
    written = read_mask_video(mask["value"]).astype(bool)
    assert written.shape == (9, 64, 64) and 0 < written.mean() < 0.5
    run_json = json.loads(Path(next(path for path in downloads if path.endswith("run.json"))).read_text())
    assert run_json["settings"]["mask_words"] == ["red", "circle"]
    assert run_json["inversion"]["mask_words"] == ["red", "circle"]
    # Outside the mask (less a ring where video compression rings) the edit is the source as the model saw it.
    source = np.stack(read_video(side_by_side)[0])[:, :, :64].astype(int)
    edited = np.stack(read_video(edit)[0]).astype(int)
    outside = ~grow_mask(torch.from_numpy(written).float(), 4).bool().numpy()
    assert np.abs(edited - source)[outside].mean() < 3

    # A mask video upload (a box in every frame), read with the source's frame selection.
    box = np.zeros((17, 64, 96), dtype=bool)
    box[:, 16:48, 24:72] = True
    mask_file = write_mask_video(box, tmp_path / "box.mp4", fps=8)
    _, _, _, mask, _, status = submit(client, clip, "a blue circle", mask=gradio_client.handle_file(str(mask_file))
                                      ).result()
    assert "Changed only inside the mask (the uploaded mask video)." in status
    assert read_mask_video(mask["value"]).astype(bool)[0, 32].tolist() == [False] * 8 + [True] * 48 + [False] * 8

    # Bad combinations: the page's error, naming the fix.
    assert ('"Paste back" puts the source back outside a mask: give "Mask video" or "Mask words"'
            in refusal(app, clip, paste_back=True))
    assert "'zebra' is not a word of \"Source prompt\"" in refusal(app, clip, mask_words="zebra")
    short = write_mask_video(box[:5], tmp_path / "short-mask.mp4", fps=8)
    message = refusal(app, clip, mask=str(short))
    assert "The mask video 'short-mask.mp4' gives 5 frames" in message and str(tmp_path) not in message


def test_server_settings_and_bounds_refused_before_any_model_work(app, client, clip, monkeypatch):
    """Server settings are launch flags, not API parameters; every number that costs work has a bound from the launch
    flags and the checkpoint (the toy's 64x64), refused through the API before any model work, naming the field."""
    from cogvideox_ddim_inversion.app import session

    def no_model_work(*args, **kwargs):
        raise AssertionError("model work started for a refused request")

    monkeypatch.setattr(session, "edit_video", no_model_work)
    monkeypatch.setattr(session, "prepare_edit", no_model_work)
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/edit"]["parameters"]
    assert "trajectory_device" not in [p["parameter_name"] for p in parameters]
    with pytest.raises(TypeError):  # not a parameter: the client refuses it itself
        client.submit(video=gradio_client.handle_file(str(clip)), edit_prompts="x", trajectory_device="meta",
                      api_name="/edit")
    for fields, expected in (
            ({"height": 100000}, '"Height" 100000 is more than this server takes: at most 64 pixels.'),
            ({"width": 128}, '"Width" 128 is more than this server takes: at most 64 pixels.'),
            ({"edit_prompts": "\n".join(["a blue circle"] * 10000)},
             '"Edit prompt": this server edits at most 4 prompts per run (one per line); got 10000.'),
            ({"window_batch_size": 1000}, '"Windows per call" 1000 is more than this server takes: at most 4.'),
            ({"steps": 10**6}, '"Steps" 1000000 is more than this server takes: at most 100.'),
            ({"fixed_point_iterations": 500}, '"Fixed-point iterations" 500 is more than this server takes')):
        with pytest.raises(gradio_client.exceptions.AppError) as raised:
            job = client.submit(video=gradio_client.handle_file(str(clip)), **{"edit_prompts": "a blue circle",
                                "source_prompt": SOURCE_PROMPT, "steps": STEPS, **fields}, api_name="/edit")
            job.result(timeout=120)
        assert expected in str(raised.value) and "--" not in str(raised.value), str(raised.value)
    assert app.editor.limits.trajectory_device is None  # the server's choice (--trajectory-device), passed by the app


def test_anonymous_uploads_beyond_the_cap_evict_the_oldest_and_disk_use_stays_under_it(app, tmp_path):
    """50 uploads posted to Gradio's upload route (as anyone on the network can): at most --max-uploads (20) are
    kept, their total stays under the cache's size (5 times --max-upload-mb), the oldest go first."""
    cache = app.uploads
    assert (cache.max_count, cache.max_bytes) == (20, int(5 * MAX_UPLOAD_MB * 1024**2))
    assert app.blocks.delete_cache == (600, 3600)  # --keep-files-minutes 60: older uploads and results go
    kept = []
    for index in range(50):
        upload = tmp_path / f"upload-{index}.bin"
        upload.write_bytes(os.urandom(300 * 1024))
        with open(upload, "rb") as file:
            response = httpx.post(app.url + "gradio_api/upload", files={"files": file})
        assert response.status_code == 200, response.text
        kept.append(response.json()[0])
        deadline = time.monotonic() + 10  # Gradio moves the file into place after answering
        while not os.path.exists(kept[-1]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(cache.folders) <= cache.max_count
        assert sum(cache.size(folder) for folder in cache.folders) <= cache.max_bytes
    assert not any(os.path.exists(path) for path in kept[:30]) and all(os.path.exists(path) for path in kept[-5:])
    gradio_dir = os.path.join(app.work_dir, "gradio")
    on_disk = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(gradio_dir)
                  for name in names if name.startswith("upload-"))
    assert on_disk <= cache.max_bytes


def layout_path(layout: dict, component_id: int) -> list[int] | None:
    """The ids from the page's root to the component (the page config's layout tree)."""
    if layout.get("id") == component_id:
        return [component_id]
    for child in layout.get("children", []):
        found = layout_path(child, component_id)
        if found:
            return [layout["id"], *found] if "id" in layout else found
    return None


def page_config(url: str) -> tuple[dict, dict]:
    """The page's config (what the browser gets) and its components by element id."""
    config = httpx.get(url + "config").json()
    return config, {c["props"].get("elem_id"): c for c in config["components"] if c["props"].get("elem_id")}


def test_the_first_screen_follows_the_checkpoints_family_and_shows_no_server_path(app, tiny_checkpoint, tmp_path,
                                                                                  monkeypatch):
    """An image-to-video checkpoint shows "First frame" on the first screen (not under Advanced), with one line on
    what it does, and offers only the model's window; a text-to-video one (the toy) hides it and offers the whole
    clip. Neither page names a server path: the local checkpoint by its folder's name only."""
    model = tiny_checkpoint("cogvideox-5b-i2v")
    monkeypatch.setenv("GRADIO_TEMP_DIR", os.environ["GRADIO_TEMP_DIR"])  # the toy app's, back after this test
    args = build_parser().parse_args(["--device", "cpu", "--host", "127.0.0.1", "--model", str(model),
                                      "--temp-dir", str(tmp_path)])
    server = launch_app(args, prevent_thread_lock=True)
    try:
        i2v_config, i2v = page_config(server.url)
        page = httpx.get(server.url).text + json.dumps(i2v_config)
        assert str(model) not in page and os.path.dirname(str(model)) not in page
        header = next(c for c in i2v_config["components"] if str(c["props"].get("value", "")).startswith("## "))
        assert f"`{os.path.basename(str(model))}` (a local checkpoint)" in header["props"]["value"]
    finally:
        server.close()
    t2v_config, t2v = page_config(app.url)
    # No temporary folder either, beyond Gradio's own file paths and URLs (the example clips it serves).
    served = re.sub(r'("path": ?"|file=)' + re.escape(app.work_dir), "", httpx.get(app.url).text + json.dumps(
        t2v_config))
    assert app.work_dir not in served
    assert i2v["first-frame"]["props"]["visible"] is True and t2v["first-frame"]["props"]["visible"] is False
    assert "first-frame-note" in i2v and "first-frame-note" not in t2v
    advanced = i2v["advanced"]["id"]
    assert advanced not in layout_path(i2v_config["layout"], i2v["first-frame"]["id"])  # the first screen
    assert [value for _, value in i2v["length"]["props"]["choices"]] == ["window"]
    assert [value for _, value in t2v["length"]["props"]["choices"]] == ["window", "frames", "all"]
    # Help in the page's words: no command-line flag and no "see docs/..." in anything the page shows.
    for config in (i2v_config, t2v_config):
        for component in config["components"]:
            for key in ("value", "info", "label", "placeholder"):
                text = component["props"].get(key)
                if isinstance(text, str):
                    text = re.sub(r"var\(--[\w-]+", "", text)  # CSS variables in the notes' HTML
                    assert not re.search(r"--[a-z]", text) and "docs/" not in text, (key, text)


# A bad value in a field, and every check of the shared settings, say the page's field labels and what to type: never
# a command-line flag, a parameter name or Python's own message.
PAGE_MESSAGES = [
    ("reference_steps", "abc",
     "\"Reference steps\": type a fraction such as 0.5 or a range such as 0,0.6 (got 'abc')."),
    ("mask_steps", "0.5,x", '"Mask steps": type a fraction such as 0.5 or a range such as 0,0.6'),
    ("reference_blocks", "one", '"Reference blocks": type block numbers separated by commas, such as 0,1,2'),
    ("num_frames", "everything", '"Frames": type a frame count, or all for the whole clip (got \'everything\').'),
    pytest.param("num_frames", 2, '"Frames" must be at least 9, got 2.', marks=pytest.mark.xfail(
        strict=True, reason="the shipped module raises a plain ValueError naming `max_num_frames`")),
    ("reference_steps", "2", '"Reference steps" must be a fraction in (0, 1]'),
    ("height", 20, '"Height"/"Width" must be positive multiples of 16'),
    ("mask_dilation", 3, '"Grow the mask" shapes a mask: give "Mask video" or "Mask words" too.'),
]


@pytest.mark.parametrize(("field", "value", "expected"), PAGE_MESSAGES)
def test_messages_name_the_pages_fields(app, clip, field, value, expected):
    message = refusal(app, clip, **{field: value})
    assert expected in message and "--" not in message and field not in message, message
    assert "could not convert" not in message and "invalid literal" not in message


def test_an_api_refusal_names_the_pages_fields(client, clip):
    """The same words reach an API caller (and the page's error box) as `gr.Error`."""
    with pytest.raises(gradio_client.exceptions.AppError) as raised:
        submit(client, clip, "a blue circle", reference_steps="abc")
    expected = "\"Reference steps\": type a fraction such as 0.5 or a range such as 0,0.6 (got 'abc')."
    assert expected in str(raised.value)


def test_the_shared_checks_refusals_rendered_for_the_page_name_labels_not_flags_or_parameters():
    """`render_error(error, "page")` on the shared checks' real refusals: each option the message names is named by
    its page label in quotes; no flag, no field or parameter name."""
    bad = ({"mask_words": ["x"], "mask": __file__}, {"mask_threshold": 0.4}, {"mask_blocks": [0]},
           {"mask_refine": True}, {"mask_feather": 2}, {"mask_steps": 0.5}, {"steps": 0}, {"strength": 2.0},
           {"guidance_ramp": 9.0, "guidance": 1.0}, {"guidance_ramp": 9.0, "guidance_ramp_at": 1.5},
           {"fixed_point_iterations": -1}, {"reference_weight": -1.0}, {"prompt_batch_size": 0}, {"fps": -1.0},
           {"height": 20}, {"sampling": "x"}, {"resize_mode": "x"}, {"reference_mode": "x"}, {"start": "x"},
           {"mask_words": ["zebra"]}, {"mask_blocks": [-1], "mask_words": ["red"]}, {"prompts": [" "]},
           {"trajectory_device": "nowhere"})
    for change in bad:
        assert_page_refusal(change)


def assert_page_refusal(change: dict):
    """The shared checks refuse `change` with a message that, rendered for the page, names options by label."""
    from cogvideox_ddim_inversion.cogvideox_ddim_errors import parameters_of
    from cogvideox_ddim_inversion.workflow.checks import check_edit_settings
    from cogvideox_ddim_inversion.workflow.settings import SettingsError, find_option, render_error

    settings = EditSettings(**{"video": __file__, "prompts": ["x"], "source_prompt": "a red circle", **change})
    with pytest.raises(SettingsError) as raised:
        check_edit_settings(settings)
    message = render_error(raised.value, "page")
    assert "--" not in message and not any("_" in name and name in message for name in change), (change, message)
    for name in parameters_of(raised.value.template):
        assert f'"{find_option(name).page_label}"' in message, (change, message)


def test_a_step_window_refusal_rendered_for_the_page_names_labels_only():
    assert_page_refusal({"reference_steps": (0.5, 0.2)})


def test_values_that_do_not_read_name_the_field_and_what_to_type():
    """Numbers typed as text (an API caller's, or an emptied field): the field's label and what to type."""
    from cogvideox_ddim_inversion.app.fields import error_text, settings_from_page
    from cogvideox_ddim_inversion.workflow.settings import SettingsError

    values = {name: page_value(name) for name in PAGE_FIELDS}
    for field, value, expected in (("steps", "x", "\"Steps\": type a whole number (got 'x')."),
                                   ("seed", 1.5, '"Seed": type a whole number (got 1.5).'),
                                   ("guidance", None, '"Guidance": type a number (got null).'),
                                   ("fps", "fast", "\"Output fps\": type a number, or leave it empty (got 'fast')."),
                                   ("mask_refine", "maybe", "\"Refine the mask\": give true or false (got 'maybe').")):
        with pytest.raises(SettingsError) as raised:
            settings_from_page({**values, field: value})
        assert raised.value.field == field and error_text(raised.value) == expected


def test_the_status_line_says_what_was_adjusted(app, clip):
    """Frames trimmed to what the clip has, a clip cropped to the model's shape, a prompt cut to the model's tokens:
    each said in the status line (`adjustment_notes`, before the run)."""
    from cogvideox_ddim_inversion.app.fields import settings_from_page
    from cogvideox_ddim_inversion.app.session import adjustment_notes

    editor = app.editor
    long_prompt = "a blue circle moving right on a white background " * 3
    settings = settings_from_page(page_values(clip, long_prompt, num_frames=25))
    status = "\n".join(adjustment_notes(editor.pipe, settings, editor.config))
    assert "Used 17 frames, not the 25 asked" in status, status
    assert "The 96x64 clip was cropped to the model's shape, 64x64 (Resize mode: crop)." in status
    assert "Edit prompt is 28 tokens; this model reads the first 16 and ignores the rest." in status
    settings = settings_from_page(page_values(clip, "a blue circle", num_frames=9, resize_mode="stretch"))
    status = "\n".join(adjustment_notes(editor.pipe, settings, editor.config))
    assert "Used" not in status and "cropped" not in status and "tokens" not in status, status
    # ... and a run says them after what it did.
    result = run(app, clip, long_prompt, num_frames=25)
    assert result.status.startswith("Inverted") and "Used 17 frames, not the 25 asked" in result.status


# The sample clip's 17 frames on the toy model's 9-frame window, with the default overlap and weighting.
WINDOWS = "2 windows of 9 frames overlapping by 4 (pyramid weighting)"
WINDOW_BAR_LENGTH = 2 * STEPS  # a 2-window stage's progress bar counts window calls: 2 per step


def test_the_whole_clip_in_windows_says_its_windows_before_during_and_after_the_run(app, client, clip):
    """A clip longer than the model's window (the toy's 9 frames; the sample clip has 17) edited whole: every frame
    comes back, and the status line names the windows while the run goes (the progress bar) and after it."""
    job = submit(client, clip, "a blue circle moving right on a white background", num_frames="all")
    side_by_side, edit, _, _, downloads, status = job.result()
    assert frame_count(edit) == 17 and frame_count(side_by_side) == 17
    assert status.startswith(f"Inverted 17 frames in {WINDOWS} with {STEPS} steps"), status
    assert f"Edited under 1 prompt(s) (2 windows x {STEPS} steps each)" in status, status
    assert "Used" not in status  # the whole clip: nothing trimmed to say
    assert progress_bars(job) == [(f"Inverting 17 frames: 2 windows x {STEPS} steps", WINDOW_BAR_LENGTH),
                                  (f"Editing under 1 prompt(s): 2 windows x {STEPS} steps", WINDOW_BAR_LENGTH)]
    run_json = json.loads(Path(next(path for path in downloads if path.endswith("run.json"))).read_text())
    assert run_json["settings"]["num_frames"] == "all" and run_json["inversion"]["windows"]["starts"] == [0, 2]

    # Another prompt reuses the windowed inversion; the status says what it holds.
    status = submit(client, clip, "a green circle moving right on a white background", num_frames="all").result()[5]
    assert status.startswith(f"Reused the inversion of this clip and settings (17 frames in {WINDOWS}; no "), status


@pytest.mark.parametrize(("overlap", "expected"), [
    (12, '"Window overlap" 12 video frames leaves windows of 9 frames nothing new: pass at most 8'),
    (6, ('"Window overlap" 6 video frames is not a non-negative multiple of the VAE\'s temporal compression 4 (one '
         "latent frame): pass 4 or 8")),
])
def test_window_settings_the_windows_cannot_run_are_refused_in_the_pages_words(app, clip, overlap, expected):
    """Refused before any model work."""
    message = refusal(app, clip, num_frames="all", window_overlap=overlap)
    assert expected in message, message


def test_the_length_note_says_what_a_run_would_edit_or_why_it_cannot(tmp_path):
    """Under "Length", before any run: the frames and windows of the choice, or the refusal a run would give."""
    from cogvideox_ddim_inversion.app.session import length_note
    from cogvideox_ddim_inversion.cogvideox_ddim_checkpoint import checkpoint_config
    from cogvideox_ddim_inversion.toy.demo import TOY_CHECKPOINT

    config = checkpoint_config(TOY_CHECKPOINT)
    clip = write_sample_clip(tmp_path / "clip.mp4")  # 17 frames, 2.1 s
    no_clip = EditSettings(video=None, prompts=[])
    assert length_note(no_clip, config, 60) == "<span>Edits up to 9 frames: the model&#x27;s window.</span>"
    assert "the whole clip (up to 60 s) in overlapping windows of 9 frames" in length_note(
        dataclasses.replace(no_clip, num_frames="all"), config, 60)
    settings = EditSettings(video=str(clip), prompts=[], num_frames="all")
    assert length_note(settings, config, 60) == f"<span>Edits 17 frames (the whole clip) in {WINDOWS}.</span>"
    assert length_note(dataclasses.replace(settings, window_overlap=0), config, 60) == (
        # 0 shared: the last window still ends at the clip's last frame
        "<span>Edits 17 frames (the whole clip) in 2 windows of 9 frames overlapping by 0 (pyramid weighting).</span>")
    assert "overlapping by 4 (hann weighting)." in length_note(dataclasses.replace(settings, window_weighting="hann"),
                                                              config, 60)
    assert length_note(dataclasses.replace(settings, num_frames=None), config, 60) == (
        "<span>Edits 9 frames (the model&#x27;s window).</span>")
    # A clip filmed faster than the model's 8 fps: the note offers the frame stride that brings it near that.
    fast = EditSettings(video=write_sample_clip(tmp_path / "24fps.mp4", num_frames=72, fps=24.0), prompts=[],
                        num_frames="all")
    assert length_note(fast, config, 60) == (
        "<span>Edits 65 frames (the whole clip) in 8 windows of 9 frames overlapping by 4 (pyramid weighting). The "
        "clip has 24 fps: &quot;Frame stride&quot; 3 (Advanced) edits it at 8 fps, 17 frames in 2 windows.</span>")
    assert "Frame stride" not in length_note(dataclasses.replace(fast, frame_stride=3), config, 60)
    for change, limit, expected in (({}, 2.0, "The video lasts 2.1 s; this app takes videos up to 2 s."),
                                    ({"mask_words": ["red"]}, 60, '"Mask words" records the attention of one window')):
        note = length_note(dataclasses.replace(settings, **change), config, limit, [str(clip)])
        assert 'class="length-problem"' in note and expected.replace('"', "&quot;") in note, note
        assert str(tmp_path) not in note


def test_the_length_note_names_a_window_overlap_that_does_not_fit_by_its_label(tmp_path):
    from cogvideox_ddim_inversion.app.session import length_note
    from cogvideox_ddim_inversion.cogvideox_ddim_checkpoint import checkpoint_config
    from cogvideox_ddim_inversion.toy.demo import TOY_CHECKPOINT

    clip = write_sample_clip(tmp_path / "clip.mp4")
    settings = EditSettings(video=str(clip), prompts=[], num_frames="all", window_overlap=12)
    note = length_note(settings, checkpoint_config(TOY_CHECKPOINT), 60, [str(clip)])
    assert 'class="length-problem"' in note and "&quot;Window overlap&quot; 12 video frames leaves windows" in note


def test_height_and_width_say_what_0_means_for_each_family():
    from cogvideox_ddim_inversion.app.fields import default_size_note

    cogvideox_1_5 = {"sample_height": 96, "sample_width": 170, "patch_size": 2, "patch_size_t": 2,
                     "use_rotary_positional_embeddings": True, "use_learned_positional_embeddings": False}
    assert default_size_note(cogvideox_1_5) == "0: the source's aspect, as many pixels as 1360x768"
    cogvideox_5b = {"sample_height": 60, "sample_width": 90, "patch_size": 2, "patch_size_t": None,
                    "use_rotary_positional_embeddings": True, "use_learned_positional_embeddings": False}
    assert default_size_note(cogvideox_5b) == "0: the model's 720x480"


# A real browser


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,900")


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium through selenium and Debian's chromium-driver (no browser download)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is missing: pip install -e '.[test]'")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("No Chromium or chromedriver on PATH: apt-get install chromium chromium-driver (as .ci/run does).")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    yield driver
    driver.quit()


def set_viewport(browser, width, height, mobile=False):
    """The page's viewport in CSS pixels, as a laptop (1280x800) or a phone (390x844) shows it."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def in_viewport(browser, element) -> bool:
    """The element's box lies wholly inside the viewport as it is now (no scrolling)."""
    return browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return r.width > 0 && r.height > 0 && r.top >= 0 && "
        "r.left >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth", element)


def toast_texts(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [toast.text for toast in browser.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']")]


@pytest.mark.slow
def test_page_in_a_headless_browser(app, browser, clip, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    def find(selector):
        return browser.find_element(By.CSS_SELECTOR, selector)

    def shown(selector):  # Gradio leaves a hidden control out of the page
        return any(element.is_displayed() for element in browser.find_elements(By.CSS_SELECTOR, selector))

    def toggle(accordion):
        find(f"#{accordion} .label-wrap").click()

    def open_page_and_fill(video, source_prompt, edit_prompt, steps=STEPS, advanced=None, mask_words=None):
        browser.get(app.url)
        wait = WebDriverWait(browser, 180)
        upload = wait.until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, "#source-video input[type=file]")))
        upload.send_keys(str(video))
        wait.until(lambda driver: os.path.basename(video) in (driver.find_element(
            By.CSS_SELECTOR, "#source-video video").get_attribute("src") or ""))  # uploaded
        find("#source-prompt textarea").send_keys(source_prompt)
        find("#edit-prompt textarea").send_keys(edit_prompt)
        toggle("advanced")  # steps and the rest are folded away until opened
        steps_field = wait.until(expected_conditions.visibility_of_element_located(
            (By.CSS_SELECTOR, "#steps input[type=number]")))
        steps_field.send_keys(Keys.CONTROL, "a")
        steps_field.send_keys(str(steps), Keys.TAB)
        for selector, text in (advanced or {}).items():
            field = find(selector)
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(text)
        toggle("advanced")
        if mask_words:  # the local-edit controls, folded away until opened
            toggle("local-edit")
            words = wait.until(expected_conditions.visibility_of_element_located(
                (By.CSS_SELECTOR, "#mask-words textarea")))
            words.send_keys(mask_words)
            find("#paste-back input[type=checkbox]").click()
        browser.execute_script("window.scrollTo(0, 0)")  # where a person starts: the top of the page

    def status_or_error(driver):
        toasts = toast_texts(driver)
        status = driver.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value")
        return (status if status and not status.startswith("Your last run") else None) or (
            toasts and "error: " + toasts[0])

    def page_error(*expected):
        """The page's refusal with these parts, in Status, with Edit usable again."""
        def said(driver):
            text = driver.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value")
            usable = find("#run").is_enabled() and find("#run").text == "Edit"
            return usable and all(part in text for part in expected) and text

        return WebDriverWait(browser, 180).until(said, f"no refusal with {expected} in Status")

    set_viewport(browser, 1280, 800)
    # 1. An edit of the toy clip the page offers as an example, uploaded from disk as a user would. At 1280x800 the
    # Edit button is on the first screen, and once pressed it is relabelled, the progress bar shows beside it, and
    # nothing has scrolled.
    toy_clip = os.path.join(app.work_dir, "examples", "toy_clip.mp4")
    open_page_and_fill(toy_clip, "a green circle moving up on a white background",
                       "a blue circle moving up on a white background", steps=BROWSER_STEPS)
    assert shown("#results-hint") and not shown("#results")  # a hint, no empty boxes
    run = find("#run")
    assert in_viewport(browser, run) and run.text == "Edit"
    run.click()
    progress = WebDriverWait(browser, 180).until(lambda driver: next(iter(driver.find_elements(
        By.CSS_SELECTOR, "#status .progress-text, #status .meta-text-center, #status .progress-level")), None),
        "no progress shown in the status box")
    assert in_viewport(browser, progress) and in_viewport(browser, find("#status"))
    assert run.text == "Editing..." and not run.is_enabled() and find("#stop").is_enabled()
    assert in_viewport(browser, find("#stop"))
    assert browser.execute_script("return window.scrollY") == 0
    status = WebDriverWait(browser, 600).until(status_or_error)
    assert status.startswith(f"Inverted 9 frames with {BROWSER_STEPS} steps"), status
    assert "The 64x64" not in status and "cropped" not in status  # the toy clip has the toy model's shape
    WebDriverWait(browser, 120).until(lambda driver: find("#run").is_enabled() and find("#run").text == "Edit")
    result = find("#side-by-side video")
    assert "side_by_side.mp4" in result.get_attribute("src") and in_viewport(browser, result)
    # Decoded and playing in the browser (it autoplays in a loop), at the width of source | edit.
    WebDriverWait(browser, 120).until(lambda driver: driver.execute_script(
        "return arguments[0].readyState >= 2 && arguments[0].currentTime > 0", result), "the result does not play")
    assert browser.execute_script("return arguments[0].videoWidth", result) == 128
    assert not shown("#results-hint")
    edit = find("#edit-video video")
    assert "edit-1.mp4" in edit.get_attribute("src")
    WebDriverWait(browser, 120).until(lambda driver: driver.execute_script(
        "return arguments[0].readyState >= 2", edit), "the edit does not load")
    links = browser.find_elements(By.CSS_SELECTOR, "#downloads a[href]")
    assert sorted(link.get_attribute("href").rsplit("/", 1)[-1] for link in links) == [
        "edit-1.mp4", "run.json", "side_by_side.mp4"]
    run_json = httpx.get(next(link.get_attribute("href") for link in links if link.get_attribute("href").endswith(
        "run.json"))).text
    assert app.work_dir not in run_json and '"video": "toy_clip.mp4"' in run_json  # no server paths downloaded
    browser.execute_script("window.scrollTo(0, 0)")
    screenshots = {"app.png": tmp_path / "app.png", "app_phone.png": tmp_path / "app_phone.png"}
    save_screenshot(browser, screenshots["app.png"])

    # 2. A reload shows this browser's last finished run.
    browser.refresh()
    WebDriverWait(browser, 180).until(lambda driver: driver.find_element(
        By.CSS_SELECTOR, "#status textarea").get_attribute("value").startswith("Your last run on this page:"))
    assert "side_by_side.mp4" in WebDriverWait(browser, 120).until(lambda driver: driver.find_element(
        By.CSS_SELECTOR, "#side-by-side video")).get_attribute("src")

    # 3. What a first-time visitor on a phone sees (no last run in this browser).
    browser.execute_script("window.localStorage.clear()")
    set_viewport(browser, 390, 844, mobile=True)
    browser.get(app.url)
    WebDriverWait(browser, 180).until(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, "#run")))
    assert shown("#results-hint") and in_viewport(browser, find("#source-video"))
    save_screenshot(browser, screenshots["app_phone.png"])
    set_viewport(browser, 1280, 800)
    # How docs/app.png and docs/app_phone.png are made: APP_SCREENSHOT=docs/app.png pytest ... -k browser (the phone's
    # beside it, as app_phone.png; or a folder for both).
    target = os.environ.get("APP_SCREENSHOT")
    if target:
        laptop = os.path.join(target, "app.png") if os.path.isdir(target) else target
        shutil.copyfile(screenshots["app.png"], laptop)
        shutil.copyfile(screenshots["app_phone.png"], laptop.removesuffix(".png") + "_phone.png")

    # 4. Messages in the page's words: a bad number and a word that is not in the source prompt name the page's
    # fields, never a command-line flag or Python's own message.
    open_page_and_fill(clip, SOURCE_PROMPT, "a blue circle", advanced={"#reference-steps textarea": "abc"})
    find("#run").click()
    text = page_error('"Reference steps": type a fraction such as 0.5 or a range such as 0,0.6')
    assert "could not convert" not in text and "--" not in text
    open_page_and_fill(clip, SOURCE_PROMPT, "a blue circle", mask_words="zebra")
    find("#run").click()
    text = page_error('"Mask words"', "'zebra' is not a word of \"Source prompt\"")
    assert "--" not in text and "mask_words" not in text

    # 5. A file that is not a video: the error shows in the page. A file over the size limit: the reason stays
    # where the clip was (Gradio's own toast goes away).
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    open_page_and_fill(not_a_video, "", "a blue circle")
    find("#run").click()
    text = page_error("Could not decode 'notes.mp4' as a video")
    assert app.work_dir not in text
    too_big = tmp_path / "big.mp4"
    too_big.write_bytes(os.urandom(int(1.5 * MAX_UPLOAD_MB * 1024**2)))
    browser.get(app.url)
    WebDriverWait(browser, 180).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "#source-video input[type=file]"))).send_keys(str(too_big))
    WebDriverWait(browser, 120).until(lambda driver: "this app takes videos up to 1 MB" in find("#source-note").text)
    assert find("#source-note").text.startswith('"big.mp4" is 1.5 MB') and find("#source-note").is_displayed()

    # 6. A local edit from words of the source prompt: the page shows the mask beside the edit.
    open_page_and_fill(toy_clip, "a green circle moving up on a white background",
                       "a blue circle moving up on a white background", mask_words="circle")
    find("#run").click()
    status = WebDriverWait(browser, 600).until(status_or_error)
    assert "Changed only inside the mask (the model's attention to circle); the source pasted back" in status, status
    mask = WebDriverWait(browser, 120).until(expected_conditions.visibility_of_element_located(
        (By.CSS_SELECTOR, "#mask-video video")))
    assert "mask.mp4" in mask.get_attribute("src")
    WebDriverWait(browser, 120).until(lambda driver: driver.execute_script(
        "return arguments[0].readyState >= 2", mask), "the mask does not load")

    # 7. Stop during a run: the run ends at its next step, the page says so and Edit is back.
    open_page_and_fill(clip, SOURCE_PROMPT, "a blue circle moving right on a white background", steps=100)
    find("#run").click()
    WebDriverWait(browser, 180).until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#status .progress-text"))
    find("#stop").click()
    WebDriverWait(browser, 120).until(lambda driver: find("#run").is_enabled() and find("#run").text == "Edit")
    assert not find("#stop").is_enabled()
    WebDriverWait(browser, 60).until(lambda driver: find("#status textarea").get_attribute("value").startswith(
        "Stopped. Nothing was kept of this run"), "Status does not say what Stop did")
    WebDriverWait(browser, 120).until(lambda driver: not app.runs.lock.locked(), "the run goes on after Stop")
    runs = Path(app.work_dir, "runs").glob("*/run.json")
    assert [json.loads(path.read_text())["settings"]["steps"] for path in runs].count(100) == 0  # stopped, removed

    # 8. Reloading during a long run stops it at its next step: another client's run starts (and ends) after it,
    # and the abandoned run left nothing (had it run on, its 100 steps would be in the runs kept).
    open_page_and_fill(clip, SOURCE_PROMPT, "a blue circle moving right on a white background", steps=100)
    find("#run").click()
    WebDriverWait(browser, 180).until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#status .progress-text"))
    client = gradio_client.Client(app.url, verbose=False, download_files=str(tmp_path))
    browser.refresh()
    reloaded = time.monotonic()
    job = client.submit(video=gradio_client.handle_file(str(clip)), edit_prompts="a green circle",
                        source_prompt="a red circle", steps=STEPS, api_name="/edit")
    result = job.result(timeout=600)
    assert result[5].startswith("Inverted")
    print(f"second run finished {time.monotonic() - reloaded:.1f} s after the reload")
    runs = Path(app.work_dir, "runs").glob("*/run.json")
    assert [json.loads(path.read_text())["settings"]["steps"] for path in runs].count(100) == 0  # stopped, removed


@pytest.mark.slow
def test_a_long_clip_in_a_headless_browser(app, browser, clip, tmp_path):
    """As a user edits a clip longer than the model's window: upload it, pick "The whole clip" (the note under it says
    the windows), run, and get every frame back; a clip over the duration limit is refused under it at upload."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    def find(selector):
        return browser.find_element(By.CSS_SELECTOR, selector)

    def upload(video):
        browser.get(app.url)
        WebDriverWait(browser, 180).until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, "#source-video input[type=file]"))).send_keys(str(video))

    def note_says(text):
        return WebDriverWait(browser, 120).until(lambda driver: text in find("#length-note").text and find(
            "#length-note").text, f"the note under Length does not say {text!r}: {find('#length-note').text!r}")

    def shown(selector):  # Gradio leaves a hidden control out of the page
        return any(element.is_displayed() for element in browser.find_elements(By.CSS_SELECTOR, selector))

    def pick(length):
        labels = browser.find_elements(By.CSS_SELECTOR, "#length label")
        next(label for label in labels if label.text == length).click()

    set_viewport(browser, 1280, 800)
    runs_before = set(os.listdir(os.path.join(app.work_dir, "runs")))
    # 1. A clip over the duration limit: refused under the clip as it is uploaded, before any run.
    upload(write_sample_clip(tmp_path / "six_seconds.mp4", num_frames=48, fps=8.0))
    note_says(f"The video lasts 6.0 s; this app takes videos up to {MAX_DURATION_S:g} s. Trim it")
    assert find("#length-note .length-problem").is_displayed() and not app.runs.lock.locked()
    assert set(os.listdir(os.path.join(app.work_dir, "runs"))) == runs_before  # no run was made

    # 2. The sample clip (17 frames; the toy model's window is 9): the model's window by default, then a number of
    # frames, then the whole clip, each said under the choice before any run.
    upload(clip)
    assert note_says("Edits 9 frames") == "Edits 9 frames (the model's window)."
    assert not shown("#frame-count")  # until "A number of frames" is picked
    pick("A number of frames")
    WebDriverWait(browser, 120).until(expected_conditions.visibility_of_element_located(
        (By.CSS_SELECTOR, "#frame-count input[type=number]")))

    def typed_17(driver):
        # Gradio may re-render the field as it is shown: type again into the current one until it holds the count
        field = find("#frame-count input[type=number]")
        if field.get_attribute("value") == "17":
            return True
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys("17", Keys.TAB)
        return False

    WebDriverWait(browser, 120, poll_frequency=1).until(typed_17, "the frame count did not take 17")
    note_says(f"Edits 17 frames in {WINDOWS}.")
    pick("The whole clip")
    note_says(f"Edits 17 frames (the whole clip) in {WINDOWS}.")
    assert not shown("#frame-count")
    find("#source-prompt textarea").send_keys(SOURCE_PROMPT)
    find("#edit-prompt textarea").send_keys("a blue circle moving right on a white background")
    find("#advanced .label-wrap").click()
    steps = WebDriverWait(browser, 120).until(expected_conditions.visibility_of_element_located(
        (By.CSS_SELECTOR, "#steps input[type=number]")))
    steps.send_keys(Keys.CONTROL, "a")
    steps.send_keys(str(STEPS), Keys.TAB)
    assert find("#window-overlap input").get_attribute("value") == "4"  # the defaults, shown as they are
    assert find("#window-weighting input[value=pyramid]").is_selected()
    find("#run").click()
    status = WebDriverWait(browser, 600).until(lambda driver: driver.find_element(
        By.CSS_SELECTOR, "#status textarea").get_attribute("value") or toast_texts(driver))
    # Inverted, or reused from the API test's run of the same clip and windows (the API's default overlap is the
    # page's): either way the windows are named.
    assert isinstance(status, str) and f"17 frames in {WINDOWS}" in status.splitlines()[0], status
    assert f"Edited under 1 prompt(s) (2 windows x {STEPS} steps each)" in status, status
    edit = WebDriverWait(browser, 120).until(lambda driver: driver.find_element(By.CSS_SELECTOR, "#edit-video video"))
    downloaded = tmp_path / "edit.mp4"
    downloaded.write_bytes(httpx.get(edit.get_attribute("src")).content)
    assert frame_count(downloaded) == 17  # the whole clip, not the model's 9


def contrast(foreground, background) -> float:
    """WCAG's contrast ratio of two sRGB colours (0-255 channels)."""
    def luminance(rgb):
        linear = [c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def hint_contrasts(browser) -> list[tuple[str, float]]:
    """(text, contrast) of each visible hint on the page: the help under controls and the notes."""
    pairs = browser.execute_script("""
        const colour = (text) => text.match(/[\\d.]+/g).slice(0, 4).map(Number);
        const background = (element) => {
          for (let e = element; e; e = e.parentElement) {
            const c = colour(getComputedStyle(e).backgroundColor);
            if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
          }
          return [255, 255, 255];
        };
        const hints = document.querySelectorAll(
          '[data-testid="block-info"], .info-text, #source-note span, #length-note span');
        return [...hints].filter(e => e.offsetParent && e.textContent.trim())
          .map(e => [e.textContent.trim().slice(0, 40), colour(getComputedStyle(e).color).slice(0, 3), background(e)]);
    """)
    assert pairs, "no hint text found"
    return [(text, contrast(fg, bg)) for text, fg, bg in pairs]


# (selector of the field's input, value typed, the field's label the refusal names, the field named by the highlight)
REFUSED_IN_A_ROW = [
    ("#edit-prompt textarea", "", '"Edit prompt"', "prompts"),
    ("#height input[type=number]", "100", '"Height" 100 is more than this server takes', "height"),
    ("#reference-steps textarea", "abc", '"Reference steps": type a fraction', "reference_steps"),
    ("#reference-blocks textarea", "one", '"Reference blocks": type block numbers', "reference_blocks"),
    ("#steps input[type=number]", "1000", '"Steps" 1000 is more than this server takes: at most 100', "steps"),
    ("#window-batch-size input[type=number]", "50", '"Windows per call" 50 is more than', "window_batch_size"),
    ("#fixed-point-iterations input[type=number]", "500", '"Fixed-point iterations" 500', "fixed_point_iterations"),
    ("#width input[type=number]", "128", '"Width" 128 is more than this server takes', "width"),
    ("#mask-words textarea", "zebra", "'zebra' is not a word of \"Source prompt\"", "mask_words"),
    ("#mask-steps textarea", "0.5,x", '"Mask steps": type a fraction', "mask_steps"),
    ("#mask-dilation input[type=number]", "3", '"Grow the mask" shapes a mask', "mask_dilation"),
]


@pytest.mark.slow
def test_refused_settings_in_a_row_leave_the_page_usable(app, browser, clip):
    """One page load, no reload: each refused setting gives Edit back at once (Stop off), says why in Status with the
    field's label and no flag, outlines the field; then a valid edit runs."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    def find(selector):
        return browser.find_element(By.CSS_SELECTOR, selector)

    def status():
        return find("#status textarea").get_attribute("value")

    def type_into(selector, text):
        field = WebDriverWait(browser, 60).until(expected_conditions.visibility_of_element_located(
            (By.CSS_SELECTOR, selector)))
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.BACKSPACE)
        if text:
            field.send_keys(text)
        field.send_keys(Keys.TAB)

    def press_edit_and_wait(expected):
        find("#run").click()
        return WebDriverWait(browser, 120).until(
            lambda driver: find("#run").is_enabled() and find("#run").text == "Edit" and expected in status()
            and status(), f"the page is not usable again with {expected!r} in Status: {status()!r}")

    set_viewport(browser, 1280, 800)
    browser.get(app.url)
    WebDriverWait(browser, 180).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#run")))
    # No video yet: refused, and Edit is back.
    find("#edit-prompt textarea").send_keys("a blue circle moving right on a white background")
    press_edit_and_wait("Upload a video")
    find("#source-video input[type=file]").send_keys(str(clip))
    WebDriverWait(browser, 120).until(lambda driver: "sample.mp4" in (driver.find_element(
        By.CSS_SELECTOR, "#source-video video").get_attribute("src") or ""))
    find("#source-prompt textarea").send_keys(SOURCE_PROMPT)
    for accordion in ("advanced", "local-edit"):
        find(f"#{accordion} .label-wrap").click()
    type_into("#steps input[type=number]", str(STEPS))
    for selector, bad, expected, field in REFUSED_IN_A_ROW:
        good = find(selector).get_attribute("value")
        type_into(selector, bad)
        text = press_edit_and_wait(expected)
        assert "--" not in text and field not in text and not find("#stop").is_enabled(), text
        assert text != "Error" and not toast_texts(browser) or all("Error" != t for t in toast_texts(browser))
        highlighted = browser.execute_script(
            "const style = document.querySelector('#field-error style'); return style && style.dataset.fieldError")
        assert highlighted and highlighted.split()[0] == field, (field, highlighted)
        outline = browser.execute_script("return getComputedStyle(arguments[0]).outlineStyle",
                                         find(f"#{field.replace('_', '-') if field != 'prompts' else 'edit-prompt'}"))
        assert outline == "solid", (field, outline)
        type_into(selector, good)
    # Hint text (help under each control, notes) reads at WCAG AA contrast, 4.5:1 at least.
    low = [(text, ratio) for text, ratio in hint_contrasts(browser) if ratio < 4.5]
    assert not low, low
    # A valid edit of two prompts then runs, each edit with its player, and the highlight goes.
    type_into("#edit-prompt textarea", "a blue circle moving right on a white background\n"
              "a green circle moving right on a white background")
    text = press_edit_and_wait("frames")
    assert text.startswith(("Inverted", "Reused")), text
    WebDriverWait(browser, 60).until(lambda driver: "edit-2.mp4" in (driver.find_element(
        By.CSS_SELECTOR, "#edit-video-2 video").get_attribute("src") or ""))
    assert not browser.execute_script("return document.querySelector('#field-error style')")
    assert "side_by_side.mp4" in find("#side-by-side video").get_attribute("src")
    assert not find("#previous-run").is_displayed() if browser.find_elements(By.CSS_SELECTOR, "#previous-run") else 1
    # A refusal after it keeps that result, labelled as the previous run.
    type_into("#height input[type=number]", "100")
    press_edit_and_wait('"Height" 100')
    assert "Shown: your previous run" in find("#previous-run").text
    assert "side_by_side.mp4" in find("#side-by-side video").get_attribute("src")
    target = os.environ.get("APP_SCREENSHOT")  # the page after a refused setting, beside docs/app.png
    if target:
        folder = target if os.path.isdir(target) else os.path.dirname(target)
        browser.execute_script("window.scrollTo(0, 0)")
        save_screenshot(browser, os.path.join(folder, "app_refused.png"))


def save_screenshot(browser, path):
    """The window as a small PNG (a 64-colour palette: the page is mostly flat colour)."""
    import io

    import PIL.Image

    image = PIL.Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    image.quantize(colors=64, method=PIL.Image.Quantize.MEDIANCUT).save(path, optimize=True)


# ---------------------------------------------------------------------------------------------------------------------
# The page's fields come from EditSettings



# ---------------------------------------------------------------------------------------------------------------------
# The page's fields come from the option table


def test_the_page_fields_are_the_tables_page_options_and_read_back_to_their_defaults(client):
    """Every option with `page=True` is a page field and an API parameter; the page's default values read back as
    EditSettings' defaults, so a new option needs no list kept by hand."""
    from cogvideox_ddim_inversion.app.fields import API_NAMES, settings_from_page
    from cogvideox_ddim_inversion.workflow.settings import EDIT_OPTIONS

    assert list(PAGE_FIELDS) == [option.name for option in EDIT_OPTIONS if option.page]
    assert {"mask_steps", "mask_blocks", "mask_refine"} <= set(PAGE_FIELDS)
    assert not {"save_inversion", "inversion", "extra"} & set(PAGE_FIELDS)  # set by the app itself
    assert "trajectory_device" not in PAGE_FIELDS  # a server setting: the launch flag only
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/edit"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == [API_NAMES.get(name, name) for name in PAGE_FIELDS]
    assert settings_from_page({name: page_value(name) for name in PAGE_FIELDS}) == EditSettings(video=None,
                                                                                                   prompts=[])


def test_each_fields_control_comes_from_its_option():
    """Control, label and help of every page field from the table: choices as a Radio, switches as a Checkbox,
    bounded numbers as a Slider, other numbers as a Number with the option's bounds, help with the page's labels."""
    from cogvideox_ddim_inversion.app.fields import control, fields_in
    from cogvideox_ddim_inversion.app.page import FIRST_SCREEN
    from cogvideox_ddim_inversion.workflow.settings import EDIT_OPTIONS

    for name in PAGE_FIELDS:
        option, made = EDIT_OPTIONS[name], control(name)
        assert made.arguments["label"] == option.page_label
        info = made.arguments["info"] or ""
        assert "--" not in info and "%(" not in info and "{" not in info, (name, info)
        assert not (option.metavar and re.search(rf"\b{option.metavar}\b", info)), (name, info)  # no SCALE
        assert not re.search(r"\b(invert|batch) (saves|writes)", info), (name, info)  # not other commands' files
    assert control("sampling").component == "Radio" and control("sampling").arguments["choices"] == ["first",
                                                                                                     "spread"]
    assert control("mask_refine").arguments["choices"] == ["auto", "on", "off"]
    assert control("paste_back").component == "Checkbox"
    assert control("mask_threshold").component == "Slider"
    assert control("mask_threshold").arguments | {"minimum": 0, "maximum": 1} == control("mask_threshold").arguments
    assert control("steps").component == "Number" and control("steps").arguments["minimum"] == 2
    assert control("steps").arguments["precision"] == 0 and control("guidance").arguments["precision"] is None
    assert control("prompt_batch_size").arguments["minimum"] == 0  # its 0 ("all at once") is accepted
    assert control("reference_steps").component == "Textbox" and control("mask").component == "File"
    assert control("mask_words").arguments["info"].startswith('words of "Source prompt"')
    # Every field has its place: the first screen, "Advanced", or "Local edit (mask)".
    advanced, mask = fields_in("advanced", FIRST_SCREEN), fields_in("mask", FIRST_SCREEN)
    assert sorted([*FIRST_SCREEN, *advanced, *mask]) == sorted(PAGE_FIELDS)
    assert {"mask_words", "mask", "paste_back", "mask_threshold", "mask_dilation"} <= set(mask)
    assert {"steps", "guidance", "window_overlap", "reference_steps"} <= set(advanced)


def test_page_conventions_read_by_kind():
    """0 in an optional number means "not set" unless 0 is a value (a window overlap of 0 is one); "all" frames;
    empty texts; auto/on/off."""
    from cogvideox_ddim_inversion.app.fields import read_field

    assert read_field("height", 0) is None and read_field("height", 32.0) == 32
    assert read_field("fps", 0) is None and read_field("fps", 12) == 12.0
    assert read_field("prompt_batch_size", 0) is None and read_field("guidance_ramp", 0.0) is None
    assert read_field("window_overlap", 0) == 0 and read_field("window_overlap", None) is None
    assert read_field("window_overlap", "") is None
    assert read_field("num_frames", "all") == "all" and read_field("num_frames", 0) is None
    assert read_field("num_frames", "") is None and read_field("num_frames", 17.0) == 17
    assert read_field("mask_blocks", "") is None
    assert read_field("mask_words", "horse, brown dog") == ["horse", "brown dog"]
    assert read_field("mask_words", "") is None
    assert read_field("prompts", "a\n\nb\n") == ["a", "b"] and read_field("prompts", None) == []
    assert read_field("reference_steps", "0,0.6") == (0.0, 0.6) and read_field("reference_steps", "0.5") == 0.5
    assert [read_field("mask_refine", value) for value in ("auto", "on", "off")] == [None, True, False]
    assert read_field("steps", 3.0) == 3 and read_field("source_prompt", None) == ""


def test_a_new_option_in_the_table_appears_on_the_page_under_advanced(app, monkeypatch, tmp_path):
    """An option added to `EDIT_OPTIONS` (and nothing else) gets a control under "Advanced", labelled, with its help,
    an API parameter with its default, and a reader."""
    import gradio as gr

    from cogvideox_ddim_inversion.app import fields, page
    from cogvideox_ddim_inversion.app.session import Editor
    from cogvideox_ddim_inversion.workflow.settings import EDIT_OPTIONS, FLOAT, Option

    new = Option("smoothness", FLOAT, 0.25, "how smooth the edit is, with {steps} (default: %(default)s)",
                 group="edit", parameter=None, minimum=0, maximum=1, label="Edit smoothness")
    table = EDIT_OPTIONS.with_options(new)
    names = tuple(option.name for option in table if option.page)
    monkeypatch.setattr(fields, "EDIT_OPTIONS", table)
    monkeypatch.setattr(fields, "PAGE_FIELDS", names)
    monkeypatch.setattr(page, "PAGE_FIELDS", names)
    assert "smoothness" in fields.fields_in("advanced", page.FIRST_SCREEN)
    assert fields.api_parameters()[-1] == ("smoothness", 0.25) and fields.read_field("smoothness", "0.5") == 0.5
    editor = app.editor
    blocks = page.build_app(Editor(editor.pipe, editor.load_info, editor.model, editor.config, str(tmp_path),
                                   editor.max_duration, "no video"), editor.load_info, 1024**2)
    sliders = [block for block in blocks.blocks.values() if isinstance(block, gr.Slider)
               and block.label == "Edit smoothness"]
    assert len(sliders) == 1 and sliders[0].elem_id == "smoothness" and sliders[0].value == 0.25
    assert sliders[0].info == 'how smooth the edit is, with "Steps" (default: 0.25)'
    advanced = next(block for block in blocks.blocks.values() if getattr(block, "elem_id", None) == "advanced")
    parents, block = [], sliders[0]
    while block is not None:
        parents.append(block)
        block = block.parent
    assert advanced in parents  # folded under "Advanced"


def test_the_inversion_cache_key_is_what_the_inversion_depends_on(tmp_path):
    from cogvideox_ddim_inversion.app.session import inversion_key

    clip = write_sample_clip(tmp_path / "a.mp4", num_frames=9)
    copy = shutil.copyfile(clip, tmp_path / "copy.mp4")
    base = EditSettings(video=clip, prompts=["x"], source_prompt="a red circle")
    key = inversion_key(base, "model")
    for same in ({"prompts": ["y"]}, {"guidance": 3.0}, {"seed": 1}, {"video": str(copy)}, {"mask_threshold": 0.5},
                 {"prompt_batch_size": 1}):
        assert inversion_key(dataclasses.replace(base, **same), "model") == key, same
    for change in ({"source_prompt": "a circle"}, {"steps": 3}, {"strength": 0.5}, {"fixed_point_iterations": 1},
                   {"num_frames": 9}, {"skip_frames_start": 1}, {"frame_stride": 2}, {"sampling": "spread"},
                   {"height": 32}, {"width": 32}, {"resize_mode": "pad"}, {"mask_words": ["circle"]},
                   {"video": write_sample_clip(tmp_path / "b.mp4", num_frames=10)}):
        assert inversion_key(dataclasses.replace(base, **change), "model") != key, change
    masked = dataclasses.replace(base, mask_words=["circle"])
    for change in ({"mask_threshold": 0.4}, {"mask_blocks": [0]}, {"mask_steps": 0.5}, {"mask_refine": False}):
        assert inversion_key(dataclasses.replace(masked, **change), "model") != inversion_key(masked, "model")
    assert inversion_key(base, "other model") != key


def test_a_stop_ends_the_run_at_its_next_step_through_the_pipelines_own_callback(app, clip, monkeypatch):
    """Stop sets the session's flag; `edit_video(stop=...)` ends the pipeline's call at its next step (diffusers'
    `callback_on_step_end`), nothing of the run is kept, and the next run goes on as usual."""
    from cogvideox_ddim_inversion.app import session

    steps_seen, runs_before = [], set(os.listdir(os.path.join(app.work_dir, "runs")))
    original = session.edit_video

    def edit_video(pipe, settings, output_dir, load_info, log=None, stop=None):
        def stop_after_two_steps():
            steps_seen.append(1)
            if len(steps_seen) == 2:
                app.runs.stop("session-a")
            return stop()

        return original(pipe, settings, output_dir, load_info, log=log, stop=stop_after_two_steps)

    monkeypatch.setattr(session, "edit_video", edit_video)
    with pytest.raises(PageError, match="Stopped. Nothing was kept of this run"):
        app.editor.run(page_values(clip, "a blue circle", steps=100, fixed_point_iterations=1), "session-a")
    assert len(steps_seen) < 10  # ended at the step after the stop, not after 100
    assert set(os.listdir(os.path.join(app.work_dir, "runs"))) == runs_before and not app.runs.lock.locked()
    assert "session-a" not in app.runs.stops and "session-a" not in app.runs.last
    monkeypatch.setattr(session, "edit_video", original)
    assert app.editor.run(page_values(clip, "a blue circle"), "session-a").status.startswith(("Inverted", "Reused"))


# ---------------------------------------------------------------------------------------------------------------------
# The console command, stopped as a service manager stops it


def test_the_apps_flags_import_neither_gradio_nor_torch():
    """`add_app_arguments` (what the command line's `--help` runs): the model and server flags, fast."""
    code = ("import argparse, sys; from cogvideox_ddim_inversion.app import add_app_arguments; "
            "parser = argparse.ArgumentParser(); add_app_arguments(parser); "
            "print('gradio' in sys.modules, 'torch' in sys.modules, parser.format_help())")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.startswith("False False") and "--max-duration" in output and "--offload" in output


def test_the_console_command_serves_the_apps_flags():
    command = shutil.which("cogvideox-ddim-inversion")
    if command is None:
        pytest.skip("The console command is not installed: pip install -e '.[test]'.")
    result = subprocess.run([command, "app", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "--max-duration" in result.stdout and "the committed toy checkpoint" in result.stdout


@pytest.mark.slow
def test_sigterm_during_a_run_stops_it_removes_the_temporary_folder_and_exits_0(clip, tmp_path):
    """The app's own entry (`python -m cogvideox_ddim_inversion.app`: `run_app`, as the console command's `app`)."""
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp, log_path = tmp_path / "temp", tmp_path / "app.log"
    temp.mkdir()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "cogvideox_ddim_inversion.app", "--device", "cpu", "--host",
                                    "127.0.0.1", "--port", str(port), "--temp-dir", str(temp)],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(url).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert process.poll() is None, log_path.read_text()
        client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path))
        # A long run: 100 steps, each with 5 fixed-point iterations.
        client.submit(video=gradio_client.handle_file(str(clip)), edit_prompts="a blue circle", steps=100,
                      fixed_point_iterations=5, source_prompt=SOURCE_PROMPT, api_name="/edit")
        while "Inverting 9 frames with 100 steps" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(temp.iterdir()), "the app has no temporary folder while it runs"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=600) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    output = log_path.read_text()
    assert "Run stopped." in output and "Stopping" in output  # stopped mid-run, not finished first
    assert "terminate called" not in output and "Traceback" not in output, output
    assert list(temp.iterdir()) == []  # the temporary folder, Gradio's uploads in it, is gone
