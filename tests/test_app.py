"""The web app, served on 127.0.0.1 in this process with the committed toy checkpoint, driven as users drive it:
with gradio_client (the API the page itself calls) and with a real headless Chromium."""

import json
import os
import shutil
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
    run = json.loads(Path(next(path for path in downloads if path.endswith("run.json"))).read_text())
    written.append(run["settings"]["video"])  # where the server kept the upload
    assert all(os.path.commonpath([path, app.work_dir]) == app.work_dir for path in written)


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
    with pytest.raises(gradio_client.exceptions.AppError, match="--paste-back puts the source back outside a mask"):
        submit(client, clip, "a blue circle", paste_back=True)
    with pytest.raises(gradio_client.exceptions.AppError, match="'zebra' is not a word of --source-prompt"):
        submit(client, clip, "a blue circle", mask_words="zebra")
    short = write_mask_video(box[:5], tmp_path / "short-mask.mp4", fps=8)
    with pytest.raises(gradio_client.exceptions.AppError, match="The mask video 'short-mask.mp4' gives 5 frames"):
        submit(client, clip, "a blue circle", mask=gradio_client.handle_file(str(short)))


# ---------------------------------------------------------------------------------------------------------------------
# A real browser


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1000")


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


def test_page_in_a_headless_browser(app, browser, clip, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    def open_page_and_run(video, source_prompt, edit_prompt, steps=STEPS, mask_words=None):
        browser.get(app.url)
        wait = WebDriverWait(browser, 60)
        upload = wait.until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, "#source-video input[type=file]")))
        upload.send_keys(str(video))
        wait.until(lambda driver: os.path.basename(video) in (driver.find_element(
            By.CSS_SELECTOR, "#source-video video").get_attribute("src") or ""))  # uploaded
        browser.find_element(By.CSS_SELECTOR, "#source-prompt textarea").send_keys(source_prompt)
        browser.find_element(By.CSS_SELECTOR, "#edit-prompt textarea").send_keys(edit_prompt)
        steps_field = browser.find_element(By.CSS_SELECTOR, "#steps input[type=number]")
        steps_field.send_keys(Keys.CONTROL, "a")
        steps_field.send_keys(str(steps), Keys.TAB)
        if mask_words:  # the local-edit controls, folded away until opened
            browser.find_element(By.CSS_SELECTOR, "#local-edit .label-wrap").click()
            words = wait.until(expected_conditions.visibility_of_element_located(
                (By.CSS_SELECTOR, "#mask-words textarea")))
            words.send_keys(mask_words)
            browser.find_element(By.CSS_SELECTOR, "#paste-back input[type=checkbox]").click()
        browser.find_element(By.CSS_SELECTOR, "#run").click()

    # The toy clip the page offers as an example (a held-out toy-world clip), uploaded from disk as a user would.
    toy_clip = os.path.join(app.work_dir, "examples", "toy_clip.mp4")
    open_page_and_run(toy_clip, "a green circle moving up on a white background",
                      "a blue circle moving up on a white background", steps=BROWSER_STEPS)
    def status_or_error(driver):
        toasts = driver.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']")
        return driver.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value") or (
            toasts and "error: " + toasts[0].text)

    status = WebDriverWait(browser, 600).until(status_or_error)
    assert status.startswith(f"Inverted 9 frames with {BROWSER_STEPS} steps"), status
    result = browser.find_element(By.CSS_SELECTOR, "#side-by-side video")
    assert "side_by_side.mp4" in result.get_attribute("src")
    # Decoded and playing in the browser (it autoplays in a loop), at the width of source | edit.
    WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(
        "return arguments[0].readyState >= 2 && arguments[0].currentTime > 0", result), "the result does not play")
    assert browser.execute_script("return arguments[0].videoWidth", result) == 128
    edit = browser.find_element(By.CSS_SELECTOR, "#edit-video video")
    assert "edit-1.mp4" in edit.get_attribute("src")
    WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(
        "return arguments[0].readyState >= 2", edit), "the edit does not load")
    links = browser.find_elements(By.CSS_SELECTOR, "#downloads a[href]")
    assert sorted(link.get_attribute("href").rsplit("/", 1)[-1] for link in links) == [
        "edit-1.mp4", "run.json", "side_by_side.mp4"]
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot = tmp_path / "app.png"
    save_screenshot(browser, screenshot)
    if os.environ.get("APP_SCREENSHOT"):  # how docs/app.png is made: APP_SCREENSHOT=docs/app.png pytest ...
        shutil.copyfile(screenshot, os.environ["APP_SCREENSHOT"])

    # A file that is not a video: the error shows in the page.
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    open_page_and_run(not_a_video, "", "a blue circle")
    # The page's error toast (beside the browser's own "Video not playable" notice).
    WebDriverWait(browser, 60).until(lambda driver: any(
        "Could not decode 'notes.mp4' as a video" in toast.text
        for toast in driver.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']")), "no error in the page")
    assert browser.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value") == ""

    # A local edit from words of the source prompt: the page shows the mask beside the edit.
    open_page_and_run(toy_clip, "a green circle moving up on a white background",
                      "a blue circle moving up on a white background", mask_words="circle")
    status = WebDriverWait(browser, 600).until(status_or_error)
    assert "Changed only inside the mask (the model's attention to circle); the source pasted back" in status, status
    mask = WebDriverWait(browser, 30).until(expected_conditions.visibility_of_element_located(
        (By.CSS_SELECTOR, "#mask-video video")))
    assert "mask.mp4" in mask.get_attribute("src")
    WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(
        "return arguments[0].readyState >= 2", mask), "the mask does not load")


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
    from cogvideox_ddim_inversion.editing import EditSettings

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
    from cogvideox_ddim_inversion.editing import EditSettings

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
