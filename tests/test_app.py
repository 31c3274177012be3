"""The web app, served on 127.0.0.1 in this process with the committed toy checkpoint, driven as users drive it:
with gradio_client (the API the page itself calls) and with a real headless Chromium."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import imageio_ffmpeg
import numpy as np
import pytest
import torch


gradio_client = pytest.importorskip("gradio_client", reason="the app's tests need gradio: pip install -e '.[test]'")

from cogvideox_ddim_inversion.app import launch_app
from cogvideox_ddim_inversion.cli import build_parser
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import grow_mask
from cogvideox_ddim_inversion.video_io import read_mask_video, read_video, write_mask_video


STEPS = 2
BROWSER_STEPS = 10  # the browser's edit is the README's screenshot: enough steps for a recognisable toy edit
SOURCE_PROMPT = "a red circle moving right on a white background"
MAX_DURATION_S = 4.0
MAX_UPLOAD_MB = 1.0


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """`cogvideox-ddim-inversion app` with no --model (the toy checkpoint), tight limits, on 127.0.0.1."""
    args = build_parser().parse_args([
        "app", "--device", "cpu", "--host", "127.0.0.1", "--max-duration", str(MAX_DURATION_S),
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
    run = json.loads(Path(next(path for path in downloads if path.endswith("run.json"))).read_text())
    assert run["settings"]["steps"] == STEPS and run["settings"]["inversion"] is None
    assert status.startswith(f"Inverted 9 frames with {STEPS} steps")
    bars = progress_bars(job)
    assert [desc.split()[0] for desc, _ in bars] == ["Inverting", "Editing"] and {n for _, n in bars} == {STEPS}

    # 2. A bad upload: the page's error message, and the app goes on serving.
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    with pytest.raises(gradio_client.exceptions.AppError, match="Could not decode 'notes.mp4' as a video"):
        submit(client, not_a_video, "a blue circle")
    too_short = write_sample_clip(tmp_path / "short.mp4", num_frames=3)
    with pytest.raises(gradio_client.exceptions.AppError, match="Only 3 frame.*at least 9"):
        submit(client, too_short, "a blue circle")
    too_long = write_sample_clip(tmp_path / "long.mp4", num_frames=48, fps=8.0)  # 6 s
    with pytest.raises(gradio_client.exceptions.AppError, match=f"lasts 6.0 s; .* up to {MAX_DURATION_S:g} s"):
        submit(client, too_long, "a blue circle")
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
    run = json.loads(Path(next(path for path in downloads if path.endswith("run.json"))).read_text())
    assert run["settings"]["inversion"] is not None and run["settings"]["save_inversion"] is None
    shutil.rmtree(os.path.join(app.work_dir, "inversions"))
    os.makedirs(os.path.join(app.work_dir, "inversions"))
    job = submit(client, clip, "a green circle moving right on a white background")
    _, fresh_edit, _, _, _, status = job.result()
    assert status.startswith("Inverted")
    np.testing.assert_array_equal(np.stack(read_video(reused_edit)[0]), np.stack(read_video(fresh_edit)[0]))


def test_reconstruction_and_every_file_in_the_apps_temporary_folder(app, client, clip):
    job = submit(client, clip, "a yellow circle moving right on a black background", reconstruction=True,
                 source_prompt="a red circle moving right on a black background")
    _, _, reconstruction, _, downloads, status = job.result()
    assert status.startswith("Inverted")  # another source prompt: another inversion
    assert "Reconstructed" in status and reconstruction["visible"]
    assert frame_count(reconstruction["value"]) == 9 and "reconstruction.mp4" in map(os.path.basename, downloads)
    written = [os.path.join(folder, name) for folder, _, names in os.walk(app.work_dir) for name in names]
    assert any(path.endswith("reconstruction.mp4") for path in written)
    assert any(path.endswith(".safetensors") for path in written)
    assert all(os.path.commonpath([path, app.work_dir]) == app.work_dir for path in written)
    # run.json as downloaded: the upload by its own name, the run's files relative to it, no server paths.
    text = Path(next(path for path in downloads if path.endswith("run.json"))).read_text()
    run = json.loads(text)
    assert run["settings"]["video"] == "sample.mp4" and run["inversion"]["source"]["video"] == "sample.mp4"
    assert run["outputs"]["reconstruction"] == "reconstruction.mp4" and run["outputs"]["inversion"].endswith(
        ".safetensors") and os.sep not in run["outputs"]["inversion"]
    assert app.work_dir not in text and str(Path(app.work_dir).parent) not in text


def test_local_edits_with_mask_words_or_a_mask_video(client, clip, tmp_path):
    # Words of the source prompt: the inversion records the mask, the page shows it, paste-back keeps the outside.
    job = submit(client, clip, "a blue circle moving right on a white background", mask_words="red, circle",
                 paste_back=True)
    side_by_side, edit, _, mask, downloads, status = job.result()
    assert mask["visible"] and "mask.mp4" in map(os.path.basename, downloads)
    assert "Changed only inside the mask (the model's attention to red, circle); the source pasted back" in status
    written = read_mask_video(mask["value"]).astype(bool)
    assert written.shape == (9, 64, 64) and 0 < written.mean() < 0.5
    run = json.loads(Path(next(path for path in downloads if path.endswith("run.json"))).read_text())
    assert run["settings"]["mask_words"] == ["red", "circle"] and run["inversion"]["mask_words"] == ["red", "circle"]
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
    with pytest.raises(gradio_client.exceptions.AppError,
                       match='"Paste back" puts the source back outside a mask: give "Mask video" or "Mask words"'):
        submit(client, clip, "a blue circle", paste_back=True)
    with pytest.raises(gradio_client.exceptions.AppError, match="'zebra' is not a word of \"Source prompt\""):
        submit(client, clip, "a blue circle", mask_words="zebra")
    short = write_mask_video(box[:5], tmp_path / "short-mask.mp4", fps=8)
    with pytest.raises(gradio_client.exceptions.AppError, match="The mask video 'short-mask.mp4' gives 5 frames"):
        submit(client, clip, "a blue circle", mask=gradio_client.handle_file(str(short)))


def test_messages_name_the_pages_fields(client, clip):
    """A bad value in a free-text field, and every check of the shared settings, say the page's field labels and what
    to type: never a command-line flag, a parameter name or Python's own message."""
    for field, value, expected in (
        ("reference_steps", "abc", "Reference steps: type a fraction such as 0.5 or a range 0,0.6 (got 'abc')."),
        ("mask_steps", "0.5,x", "Mask steps: type a fraction such as 0.5 or a range 0,0.6"),
        ("reference_blocks", "one", "Reference blocks: type block numbers separated by commas, such as 0,1,2"),
        ("num_frames", 2, '"Frames" must be at least 9, got 2.'),
        ("reference_steps", "2", '"Reference steps" must be a fraction in (0, 1]'),
        ("height", 20, '"Height"/"Width" must be positive multiples of 16'),
        ("mask_dilation", 3, '"Grow the mask" shapes a mask: give "Mask video" or "Mask words" too.'),
    ):
        with pytest.raises(gradio_client.exceptions.AppError) as raised:
            submit(client, clip, "a blue circle", **{field: value})
        message = str(raised.value)
        assert expected in message and "--" not in message and field not in message, message
        assert "could not convert" not in message and "invalid literal" not in message


def test_page_message_leaves_no_flag_or_parameter_name():
    from cogvideox_ddim_inversion.app import PAGE_FIELDS, page_default, page_message, settings_from_page
    from cogvideox_ddim_inversion.editing import EditSettings, check_edit_settings

    bad = ({"mask_words": ["x"], "mask": __file__}, {"mask_threshold": 0.4}, {"mask_blocks": [0]},
           {"mask_refine": True}, {"mask_feather": 2}, {"mask_steps": 0.5}, {"steps": 0}, {"strength": 2.0},
           {"guidance_ramp": 9.0, "guidance": 1.0}, {"guidance_ramp": 9.0, "guidance_ramp_at": 1.5},
           {"fixed_point_iterations": -1}, {"reference_weight": -1.0}, {"prompt_batch_size": 0}, {"fps": -1.0},
           {"height": 20}, {"sampling": "x"}, {"resize_mode": "x"}, {"reference_mode": "x"}, {"start": "x"},
           {"mask_words": ["zebra"]}, {"mask_blocks": [-1], "mask_words": ["red"]}, {"prompts": [" "]},
           {"trajectory_device": "nowhere"}, {"reference_steps": (0.5, 0.2)})
    for change in bad:
        settings = EditSettings(**{"video": __file__, "prompts": ["x"], "source_prompt": "a red circle", **change})
        with pytest.raises(ValueError) as raised:
            check_edit_settings(settings)
        message = page_message(str(raised.value))
        assert "--" not in message and not any("_" in name and name in message for name in change), (change, message)


    # Numbers typed as text (an API caller's, or an emptied field): the field's label and what to type.
    values = {name: page_default(name) for name in PAGE_FIELDS}
    for field, value, expected in (("steps", "x", "Steps: type a whole number such as 50 (got 'x')."),
                                   ("seed", 1.5, "Seed: type a whole number such as 42 (got 1.5)."),
                                   ("guidance", None, "Guidance: type a number such as 6.0 (got None)."),
                                   ("fps", "fast", "Output fps: type a number (0: the default) (got 'fast').")):
        with pytest.raises(ValueError) as raised:
            settings_from_page({**values, field: value})
        assert str(raised.value) == expected


def test_the_status_line_says_what_was_adjusted(client, clip):
    """Frames trimmed to what the clip has, a clip cropped to the model's shape, a prompt cut to the model's tokens:
    each said in the status line."""
    long_prompt = "a blue circle moving right on a white background " * 3
    status = submit(client, clip, long_prompt, num_frames=25).result()[5]
    assert "Used 17 frames, not the 25 asked" in status, status
    assert "The 96x64 clip was cropped to the model's shape, 64x64 (Resize mode: crop)." in status
    assert "Edit prompt is 28 tokens; this model reads the first 16 and ignores the rest." in status
    status = submit(client, clip, "a blue circle", num_frames=9, resize_mode="stretch").result()[5]
    assert "Used" not in status and "cropped" not in status and "tokens" not in status, status


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
    run = json.loads(Path(next(path for path in downloads if path.endswith("run.json"))).read_text())
    assert run["settings"]["num_frames"] == "all" and run["inversion"]["windows"]["starts"] == [0, 2]

    # Another prompt reuses the windowed inversion; the status says what it holds.
    status = submit(client, clip, "a green circle moving right on a white background", num_frames="all").result()[5]
    assert status.startswith(f"Reused the inversion of this clip and settings (17 frames in {WINDOWS}; no "), status

    # Window settings the windows cannot run: refused in the page's words before any model work.
    for overlap, expected in ((12, '"Window overlap" 12 video frames leaves windows of 9 frames nothing new: pass at '
                                   "most 8"),
                              (6, '"Window overlap" 6 video frames is not a non-negative multiple of the VAE\'s '
                                  "temporal compression 4 (one latent frame): pass 4 or 8")):
        with pytest.raises(gradio_client.exceptions.AppError) as raised:
            submit(client, clip, "a blue circle", num_frames="all", window_overlap=overlap)
        assert expected in str(raised.value), str(raised.value)
    with pytest.raises(gradio_client.exceptions.AppError, match="Frames: type a frame count, or all for the whole"):
        submit(client, clip, "a blue circle", num_frames="everything")


def test_the_length_note_says_what_a_run_would_edit_or_why_it_cannot(tmp_path):
    """Under "Length", before any run: the frames and windows of the choice, or the refusal a run would give."""
    import dataclasses

    from cogvideox_ddim_inversion.app import length_note
    from cogvideox_ddim_inversion.cogvideox_ddim_checkpoint import checkpoint_config
    from cogvideox_ddim_inversion.workflow.settings import EditSettings
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
                                    ({"window_overlap": 12}, 60, '"Window overlap" 12 video frames leaves windows'),
                                    ({"mask_words": ["red"]}, 60, '"Mask words" records the attention of one window')):
        note = length_note(dataclasses.replace(settings, **change), config, limit, [str(clip)])
        assert 'class="length-problem"' in note and expected.replace('"', "&quot;") in note, note
        assert str(tmp_path) not in note


def test_height_and_width_say_what_0_means_for_each_family():
    from cogvideox_ddim_inversion.app import default_size_note

    cogvideox_1_5 = {"sample_height": 96, "sample_width": 170, "patch_size": 2, "patch_size_t": 2,
                     "use_rotary_positional_embeddings": True, "use_learned_positional_embeddings": False}
    assert default_size_note(cogvideox_1_5) == "0: the source's aspect, as many pixels as 1360x768"
    cogvideox_5b = {"sample_height": 60, "sample_width": 90, "patch_size": 2, "patch_size_t": None,
                    "use_rotary_positional_embeddings": True, "use_learned_positional_embeddings": False}
    assert default_size_note(cogvideox_5b) == "0: the model's 720x480"


# ---------------------------------------------------------------------------------------------------------------------
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
        wait = WebDriverWait(browser, 60)
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
        """The page's error toast with these parts (beside the browser's own "Video not playable" notice)."""
        return WebDriverWait(browser, 60).until(lambda driver: next((
            text for text in toast_texts(driver) if all(part in text for part in expected)), None),
            f"no error with {expected} in the page: {toast_texts(browser)}")

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
    progress = WebDriverWait(browser, 60).until(lambda driver: next(iter(driver.find_elements(
        By.CSS_SELECTOR, "#status .progress-text, #status .meta-text-center, #status .progress-level")), None),
        "no progress shown in the status box")
    assert in_viewport(browser, progress) and in_viewport(browser, find("#status"))
    assert run.text == "Editing..." and not run.is_enabled() and find("#stop").is_enabled()
    assert in_viewport(browser, find("#stop"))
    assert browser.execute_script("return window.scrollY") == 0
    status = WebDriverWait(browser, 600).until(status_or_error)
    assert status.startswith(f"Inverted 9 frames with {BROWSER_STEPS} steps"), status
    assert "The 64x64" not in status and "cropped" not in status  # the toy clip has the toy model's shape
    WebDriverWait(browser, 30).until(lambda driver: find("#run").is_enabled() and find("#run").text == "Edit")
    result = find("#side-by-side video")
    assert "side_by_side.mp4" in result.get_attribute("src") and in_viewport(browser, result)
    # Decoded and playing in the browser (it autoplays in a loop), at the width of source | edit.
    WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(
        "return arguments[0].readyState >= 2 && arguments[0].currentTime > 0", result), "the result does not play")
    assert browser.execute_script("return arguments[0].videoWidth", result) == 128
    assert not shown("#results-hint")
    edit = find("#edit-video video")
    assert "edit-1.mp4" in edit.get_attribute("src")
    WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(
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
    WebDriverWait(browser, 60).until(lambda driver: driver.find_element(
        By.CSS_SELECTOR, "#status textarea").get_attribute("value").startswith("Your last run on this page:"))
    assert "side_by_side.mp4" in WebDriverWait(browser, 30).until(lambda driver: driver.find_element(
        By.CSS_SELECTOR, "#side-by-side video")).get_attribute("src")

    # 3. What a first-time visitor on a phone sees (no last run in this browser).
    browser.execute_script("window.localStorage.clear()")
    set_viewport(browser, 390, 844, mobile=True)
    browser.get(app.url)
    WebDriverWait(browser, 60).until(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, "#run")))
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
    text = page_error("Reference steps: type a fraction such as 0.5 or a range 0,0.6")
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
    page_error("Could not decode 'notes.mp4' as a video")
    assert find("#status textarea").get_attribute("value") == ""
    too_big = tmp_path / "big.mp4"
    too_big.write_bytes(os.urandom(int(1.5 * MAX_UPLOAD_MB * 1024**2)))
    browser.get(app.url)
    WebDriverWait(browser, 60).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "#source-video input[type=file]"))).send_keys(str(too_big))
    WebDriverWait(browser, 30).until(lambda driver: "this app takes videos up to 1 MB" in find("#source-note").text)
    assert find("#source-note").text.startswith('"big.mp4" is 1.5 MB') and find("#source-note").is_displayed()

    # 6. A local edit from words of the source prompt: the page shows the mask beside the edit.
    open_page_and_fill(toy_clip, "a green circle moving up on a white background",
                       "a blue circle moving up on a white background", mask_words="circle")
    find("#run").click()
    status = WebDriverWait(browser, 600).until(status_or_error)
    assert "Changed only inside the mask (the model's attention to circle); the source pasted back" in status, status
    mask = WebDriverWait(browser, 30).until(expected_conditions.visibility_of_element_located(
        (By.CSS_SELECTOR, "#mask-video video")))
    assert "mask.mp4" in mask.get_attribute("src")
    WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(
        "return arguments[0].readyState >= 2", mask), "the mask does not load")

    # 7. Stop during a run: the run ends at its next step, the page says so and Edit is back.
    open_page_and_fill(clip, SOURCE_PROMPT, "a blue circle moving right on a white background", steps=100)
    find("#run").click()
    WebDriverWait(browser, 60).until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#status .progress-text"))
    find("#stop").click()
    WebDriverWait(browser, 30).until(lambda driver: find("#run").is_enabled() and find("#run").text == "Edit")
    assert not find("#stop").is_enabled()
    WebDriverWait(browser, 30).until(lambda driver: not app.runs.lock.locked(), "the run goes on after Stop")
    runs = Path(app.work_dir, "runs").glob("*/run.json")
    assert [json.loads(path.read_text())["settings"]["steps"] for path in runs].count(100) == 0  # stopped, removed

    # 8. Reloading during a long run stops it at its next step: another client's run starts (and ends) within
    # seconds, not after the abandoned run.
    open_page_and_fill(clip, SOURCE_PROMPT, "a blue circle moving right on a white background", steps=100)
    find("#run").click()
    WebDriverWait(browser, 60).until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#status .progress-text"))
    client = gradio_client.Client(app.url, verbose=False, download_files=str(tmp_path))
    browser.refresh()
    reloaded = time.monotonic()
    job = client.submit(video=gradio_client.handle_file(str(clip)), edit_prompts="a green circle",
                        source_prompt="a red circle", steps=STEPS, api_name="/edit")
    result = job.result(timeout=300)
    finished = time.monotonic() - reloaded
    # The abandoned run had some 200 steps to go (about 100 s here); the new one has 4.
    assert finished < 30, f"the second run finished {finished:.1f} s after the reload"
    assert result[5].startswith("Inverted")
    print(f"second run finished {finished:.1f} s after the reload")
    runs = Path(app.work_dir, "runs").glob("*/run.json")
    assert [json.loads(path.read_text())["settings"]["steps"] for path in runs].count(100) == 0  # stopped, removed


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
        WebDriverWait(browser, 60).until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, "#source-video input[type=file]"))).send_keys(str(video))

    def note_says(text):
        return WebDriverWait(browser, 30).until(lambda driver: text in find("#length-note").text and find(
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
    frames = WebDriverWait(browser, 30).until(expected_conditions.visibility_of_element_located(
        (By.CSS_SELECTOR, "#frame-count input[type=number]")))
    frames.send_keys(Keys.CONTROL, "a")
    frames.send_keys("17", Keys.TAB)
    note_says(f"Edits 17 frames in {WINDOWS}.")
    pick("The whole clip")
    note_says(f"Edits 17 frames (the whole clip) in {WINDOWS}.")
    assert not shown("#frame-count")
    find("#source-prompt textarea").send_keys(SOURCE_PROMPT)
    find("#edit-prompt textarea").send_keys("a blue circle moving right on a white background")
    find("#advanced .label-wrap").click()
    steps = WebDriverWait(browser, 30).until(expected_conditions.visibility_of_element_located(
        (By.CSS_SELECTOR, "#steps input[type=number]")))
    steps.send_keys(Keys.CONTROL, "a")
    steps.send_keys(str(STEPS), Keys.TAB)
    assert find("#window-overlap input").get_attribute("value") == "4"  # the defaults, shown as they are
    assert find("#window-weighting input[value=pyramid]").is_selected()
    find("#run").click()
    status = WebDriverWait(browser, 300).until(lambda driver: driver.find_element(
        By.CSS_SELECTOR, "#status textarea").get_attribute("value") or toast_texts(driver))
    # Inverted, or reused from the API test's run of the same clip and windows (the API's default overlap is the
    # page's): either way the windows are named.
    assert isinstance(status, str) and f"17 frames in {WINDOWS}" in status.splitlines()[0], status
    assert f"Edited under 1 prompt(s) (2 windows x {STEPS} steps each)" in status, status
    edit = WebDriverWait(browser, 30).until(lambda driver: driver.find_element(By.CSS_SELECTOR, "#edit-video video"))
    downloaded = tmp_path / "edit.mp4"
    downloaded.write_bytes(httpx.get(edit.get_attribute("src")).content)
    assert frame_count(downloaded) == 17  # the whole clip, not the model's 9


def save_screenshot(browser, path):
    """The window as a small PNG (a 64-colour palette: the page is mostly flat colour)."""
    import io

    import PIL.Image

    image = PIL.Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    image.quantize(colors=64, method=PIL.Image.Quantize.MEDIANCUT).save(path, optimize=True)


# ---------------------------------------------------------------------------------------------------------------------
# The page's fields come from EditSettings


def test_the_page_fields_are_the_settings_fields_and_read_back_to_their_defaults(app, client):
    """Every EditSettings field but those the app sets is a page field and an API parameter; the page's default
    values read back as EditSettings' defaults, so a new option needs no list kept by hand."""
    import dataclasses

    from cogvideox_ddim_inversion.app import API_NAMES, APP_SET_FIELDS, PAGE_FIELDS, page_default, settings_from_page
    from cogvideox_ddim_inversion.workflow.settings import EditSettings

    names = [f.name for f in dataclasses.fields(EditSettings)]
    assert list(PAGE_FIELDS) == [name for name in names if name not in APP_SET_FIELDS]
    assert {"mask_steps", "mask_blocks", "mask_refine", "trajectory_device"} <= set(PAGE_FIELDS)
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/edit"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == [API_NAMES.get(name, name) for name in PAGE_FIELDS]
    assert settings_from_page({name: page_default(name) for name in PAGE_FIELDS}) == EditSettings(video=None,
                                                                                                   prompts=[])


def test_the_inversion_cache_key_is_what_the_inversion_depends_on(tmp_path):
    import dataclasses

    from cogvideox_ddim_inversion.app import inversion_key
    from cogvideox_ddim_inversion.workflow.settings import EditSettings

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


# ---------------------------------------------------------------------------------------------------------------------
# The console command, stopped as a service manager stops it


def test_sigterm_during_a_run_stops_it_removes_the_temporary_folder_and_exits_0(clip, tmp_path):
    command = shutil.which("cogvideox-ddim-inversion")
    if command is None:
        pytest.skip("The console command is not installed: pip install -e '.[test]'.")
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp, log_path = tmp_path / "temp", tmp_path / "app.log"
    temp.mkdir()
    with open(log_path, "w") as log:
        process = subprocess.Popen([command, "app", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
                                    "--temp-dir", str(temp)], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(url).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path))
        # A long run: 100 steps, each with 5 fixed-point iterations.
        client.submit(video=gradio_client.handle_file(str(clip)), edit_prompts="a blue circle", steps=100,
                      fixed_point_iterations=5, source_prompt=SOURCE_PROMPT, api_name="/edit")
        while "Inverting 9 frames with 100 steps" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(temp.iterdir()), "the app has no temporary folder while it runs"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    output = log_path.read_text()
    assert "Run stopped." in output and "Stopping" in output  # stopped mid-run, not finished first
    assert "terminate called" not in output and "Traceback" not in output, output
    assert list(temp.iterdir()) == []  # the temporary folder, Gradio's uploads in it, is gone
