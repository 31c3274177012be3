"""Hostile and mistaken input refused before any weights load, with a message naming the fix (issue 33): devices this
machine does not have, a mistyped local checkpoint path, a frame count of 0, a demo option that does nothing."""

import pytest
import torch

from cogvideox_ddim_inversion.cli import main


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip

    return str(write_sample_clip(tmp_path_factory.mktemp("clips") / "clip.mp4"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("flags, expected", [
    (["--device", "cuda"], "--device cuda asks for a GPU, but this machine has none"),
    (["--trajectory-device", "cuda:7"], "--trajectory-device cuda:7 asks for a GPU, but this machine has none"),
    (["--device", "bogus"], "--device 'bogus' is not a device: pass cpu, cuda or cuda:N."),
])
def test_devices_the_machine_lacks_are_refused_before_loading(tiny_checkpoint, clip, tmp_path, capsys, no_weights,
                                                              flags, expected):
    for command in (["edit", clip, "--prompt", "x", "--output-dir", str(tmp_path / "out")],
                    ["invert", clip, "--output", str(tmp_path / "inv.safetensors")]):
        assert main([*command, "--model", tiny_checkpoint(), *flags]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
    assert no_weights == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("model, what", [("/abs/path/cogvideox-5", "does not exist"),
                                         ("./ckpt/cogvideox-5b", "does not exist")])
def test_a_mistyped_local_checkpoint_is_not_looked_up_on_the_hub(clip, tmp_path, capsys, no_weights, model, what):
    assert main(["edit", clip, "--prompt", "x", "--model", model, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"--model {model!r} {what}: a local checkpoint is a folder" in err and "Hub (" not in err


def test_a_file_given_as_the_checkpoint_is_called_a_file(clip, tmp_path, capsys, no_weights):
    assert main(["edit", clip, "--prompt", "x", "--model", clip, "--output-dir", str(tmp_path / "out")]) == 2
    assert f"--model {clip!r} is a file" in capsys.readouterr().err


def test_zero_frames_is_refused_not_taken_as_the_default(tiny_checkpoint, clip, tmp_path, capsys, no_weights):
    assert main(["edit", clip, "--prompt", "x", "--model", tiny_checkpoint(), "--num-frames", "0",
                 "--output-dir", str(tmp_path / "out")]) == 2
    assert "--num-frames must be a frame count (at least 1) or 'all', got 0" in capsys.readouterr().err


def test_the_toy_demo_refuses_a_variant_it_would_ignore(tmp_path, capsys):
    assert main(["demo", "--variant", "cogvideox-2b", "--output-dir", str(tmp_path / "demo")]) == 2
    assert "--variant picks the tiny random checkpoint of --random-tiny" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_ctrl_c_is_reported_without_a_traceback(monkeypatch, capsys):
    from cogvideox_ddim_inversion import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_tiny_checkpoint", interrupted)
    assert main(["tiny-checkpoint", "somewhere"]) == 130
    assert capsys.readouterr().err == "Interrupted.\n"


# ---------------------------------------------------------------------------------------------------------------------
# 6. A run replaces the previous run in one atomic step: a kill at any point leaves the old run or the new one


def _snapshot(folder) -> dict:
    """Every file under `folder` by its path relative to it, with its bytes (None if there is no folder)."""
    import os

    if not os.path.isdir(folder):
        return None
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                files[os.path.relpath(path, folder)] = file.read()
    return files


def _write_run(folder, outputs: dict, extra: dict | None = None):
    """A fake complete run in `folder`: the files of `outputs` (name -> bytes), run.json listing them, `extra` files."""
    import json
    import os

    os.makedirs(folder, exist_ok=True)
    for name, data in {**outputs, **(extra or {})}.items():
        with open(os.path.join(folder, name), "wb") as file:
            file.write(data)
    listed = {name.removesuffix(".mp4"): os.path.join(folder, name) for name in outputs}
    with open(os.path.join(folder, "run.json"), "w") as file:
        json.dump({"outputs": listed}, file)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
def test_replace_run_swaps_the_folders_and_keeps_what_is_not_a_runs(tmp_path, monkeypatch, exchange):
    import os

    from cogvideox_ddim_inversion.workflow import run

    if not exchange:
        monkeypatch.setattr(run, "exchange_paths", lambda first, second: False)
    out = tmp_path / "out"
    _write_run(out, {"edit-1.mp4": b"old 1", "edit-2.mp4": b"old 2", "side_by_side.mp4": b"old sbs"},
               {"notes.txt": b"mine", "inversion.safetensors": b"kept", ".partial-abc.mp4": b"junk"})
    (out / "sub").mkdir()
    (out / "sub" / "deep.txt").write_bytes(b"deep")
    new = tmp_path / ".partial-run-out-abcdefgh"
    _write_run(new, {"edit-1.mp4": b"new 1", "side_by_side.mp4": b"new sbs"})
    old_notes = os.stat(out / "notes.txt").st_ino
    run.replace_run(str(new), str(out))
    after = _snapshot(out)
    assert {name: data for name, data in after.items() if name != "run.json"} == {
        "edit-1.mp4": b"new 1", "side_by_side.mp4": b"new sbs", "notes.txt": b"mine",
        "inversion.safetensors": b"kept", os.path.join("sub", "deep.txt"): b"deep"}
    assert os.stat(out / "notes.txt").st_ino == old_notes  # the same file, hard-linked: not a copy
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the previous run deleted, nothing left beside


def test_a_run_killed_between_the_fallbacks_renames_is_put_back_by_the_next(tmp_path):
    from cogvideox_ddim_inversion.workflow import run

    out = tmp_path / "out"
    _write_run(tmp_path / ".replaced-run-out-abcdefgh", {"edit-1.mp4": b"old"})
    _write_run(tmp_path / ".partial-run-out-12345678", {"edit-1.mp4": b"new"})
    _write_run(tmp_path / ".partial-run-outer-12345678", {"edit-1.mp4": b"another folder's"})
    removed = run.remove_killed_run(str(out))
    assert removed == [str(tmp_path / ".partial-run-out-12345678")]
    assert _snapshot(out)["edit-1.mp4"] == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".partial-run-outer-12345678", "out"]


KILLER = r"""
import os, signal, sys

point, name = sys.argv[1], sys.argv[2]
signum = getattr(signal, "SIG" + name)
# as in a terminal: a process started in the background (CI, `cmd &`) inherits SIGINT ignored, and Python keeps it so
signal.signal(signal.SIGINT, signal.default_int_handler)


def die():
    os.kill(os.getpid(), signum)
    if signum == signal.SIGKILL:
        os._exit(99)  # never reached


from cogvideox_ddim_inversion import cogvideox_ddim_video_io
from cogvideox_ddim_inversion.workflow import run

kind, _, count = point.partition(":")
calls = [0]


def counted(function):
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        calls[0] += 1
        if calls[0] == int(count or 1):
            die()
        return result
    return wrapper


if kind == "step":  # the Nth denoising step of any pipeline call (the inversion's come first)
    interrupting = run.interrupting
    run.interrupting = lambda stop, callback=None: interrupting(
        stop, counted(callback or (lambda pipe, step, timestep, kwargs: kwargs)))
elif kind == "video":  # once the Nth video is written
    cogvideox_ddim_video_io.write_video = counted(cogvideox_ddim_video_io.write_video)
elif kind == "record":  # once run.json is written (every output complete, not yet swapped in)
    run.write_json = counted(run.write_json)
elif kind == "swap":  # the kept files linked into the new folder, before the swap
    run.exchange_paths = lambda first, second: die()
elif kind == "swapped":  # after the swap, before the previous run is deleted
    run.exchange_paths = counted(run.exchange_paths)
elif kind == "renamed":  # the fallback (no renameat2): between its two renames
    run.exchange_paths = lambda first, second: False
    os.rename = counted(os.rename)

from cogvideox_ddim_inversion.cli import main

sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def earlier_run(tiny_checkpoint, clip, tmp_path_factory):
    """A complete two-prompt run (and a file of the user's) to copy into each test's output folder."""
    folder = tmp_path_factory.mktemp("earlier") / "out"
    assert main(["edit", clip, "--prompt", "a blue circle", "--prompt", "a green circle", "--steps", "2",
                 "--device", "cpu", "--model", tiny_checkpoint(), "--output-dir", str(folder)]) == 0
    (folder / "notes.txt").write_text("mine")
    return folder


def _rerun(tiny_checkpoint, clip, out, point, signal_name):
    import os
    import subprocess
    import sys

    command = [sys.executable, "-c", KILLER, point, signal_name, "edit", clip, "--prompt", "a red square", "--prompt",
               "a yellow square", "--steps", "2", "--device", "cpu", "--model", tiny_checkpoint(),
               "--output-dir", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ}, check=False)


def _is_complete_new_run(files: dict, before: dict) -> bool:
    import json
    import os

    record = json.loads(files.get("run.json", b"{}"))
    listed = {os.path.basename(path) for path in record.get("outputs", {}).values()} | {"run.json"}
    return (record.get("settings", {}).get("prompts") == ["a red square", "a yellow square"]
            and listed == {"edit-1.mp4", "edit-2.mp4", "side_by_side.mp4", "run.json"}
            and set(files) == listed | {"notes.txt"} and files["notes.txt"] == before["notes.txt"]
            and all(files[name] for name in listed))


@pytest.mark.slow
@pytest.mark.parametrize("point, expected", [
    ("step:1", "old"), ("step:3", "old"), ("video:2", "old"), ("record", "old"), ("swap", "old"),
    ("swapped", "new"), ("renamed", "missing until the next run")])
def test_a_run_killed_at_any_point_leaves_the_previous_run_or_the_new_one(tiny_checkpoint, clip, earlier_run,
                                                                         tmp_path, point, expected):
    """Issue 33.6: SIGKILL in the inversion, in the edit, between videos, before and after the swap: the folder holds
    the earlier run byte for byte or the complete new run; the next run clears (or puts back) what was left beside."""
    import shutil

    from cogvideox_ddim_inversion.workflow.run import remove_killed_run

    out = tmp_path / "out"
    shutil.copytree(earlier_run, out)
    before = _snapshot(out)
    result = _rerun(tiny_checkpoint, clip, out, point, "KILL")
    assert result.returncode == -9, result.stderr
    after = _snapshot(out)
    if expected == "missing until the next run":
        assert after is None
        remove_killed_run(str(out))
        after = _snapshot(out)
    else:
        remove_killed_run(str(out))
    assert after == before if expected != "new" else _is_complete_new_run(after, before)
    assert after == _snapshot(out) and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.slow
@pytest.mark.parametrize("signal_name, status, stopped", [("TERM", 143, "Terminated"), ("INT", 130, "Interrupted")])
@pytest.mark.parametrize("point", ["step:1", "video:1"])
def test_sigterm_and_sigint_keep_the_previous_run_and_say_so(tiny_checkpoint, clip, earlier_run, tmp_path,
                                                              signal_name, status, stopped, point):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(earlier_run, out)
    before = _snapshot(out)
    result = _rerun(tiny_checkpoint, clip, out, point, signal_name)
    assert result.returncode == status
    assert result.stderr.splitlines()[-1] == f"{stopped}: the previous run in {out} is kept as it was."
    assert "Traceback" not in result.stderr
    assert _snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---------------------------------------------------------------------------------------------------------------------
# 7. A full disk: "No space left on device", naming the path; nothing half-written


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs at tmp_path/disk (skipped where it cannot be mounted: not root, no tmpfs) and `fill()`, which
    leaves it with no free space."""
    import os
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")

    def fill():
        with open(disk / ".filler", "wb", buffering=0) as file:
            try:
                while True:
                    file.write(b"\0" * 4096)
            except OSError:
                pass
        assert os.statvfs(disk).f_bavail == 0

    yield disk, fill
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(full_disk):
    import os

    from cogvideox_ddim_inversion.cogvideox_ddim_files import NoSpaceError, atomic_write

    disk, fill = full_disk
    target = disk / "scores.json"
    target.write_text("old")
    fill()
    with pytest.raises(NoSpaceError) as raised, atomic_write(target, suffix=".json") as partial, \
            open(partial, "w") as file:
        file.write("x" * 100_000)
    assert str(raised.value).startswith(f"No space left on device: could not write {str(target)!r}.")
    assert target.read_text() == "old" and sorted(os.listdir(disk)) == [".filler", "scores.json"]


def test_a_video_ffmpeg_could_not_finish_is_not_taken_for_a_video(full_disk, tmp_path):
    """ffmpeg out of space leaves a truncated MP4 and imageio-ffmpeg does not check its exit status (or it reports a
    "Broken pipe"): the writer checks the file whole and names the full disk."""
    import numpy as np

    from cogvideox_ddim_inversion.cogvideox_ddim_files import NoSpaceError
    from cogvideox_ddim_inversion.cogvideox_ddim_video_io import write_video
    from cogvideox_ddim_inversion.workflow.run import mp4_is_whole, write_video_whole

    frames = np.random.default_rng(0).integers(0, 255, (24, 128, 128, 3), dtype=np.uint8)
    write_video_whole(write_video, frames, str(tmp_path / "fine.mp4"), 8.0)
    assert mp4_is_whole(str(tmp_path / "fine.mp4"))
    disk, fill = full_disk
    fill()
    with pytest.raises(NoSpaceError, match="No space left on device: could not write '/shown/edit-1.mp4'"):
        write_video_whole(write_video, frames, str(disk / "edit-1.mp4"), 8.0, final="/shown/edit-1.mp4")
    assert sorted(p.name for p in disk.iterdir()) == [".filler"]


@pytest.mark.parametrize("command", ["edit", "invert", "edit --save-inversion", "evaluate --output"])
def test_every_writer_reports_a_full_disk_naming_the_path(tiny_checkpoint, clip, full_disk, tmp_path, capsys,
                                                           command):
    """Issue 33.7: SafetensorError, "Broken pipe" and a 0-byte scores.json become one message naming the path."""
    import os

    disk, fill = full_disk
    model = ["--model", tiny_checkpoint(), "--steps", "2", "--device", "cpu"]
    if command == "edit":
        argv, named = ["edit", clip, "--prompt", "x", *model, "--output-dir", str(disk / "out")], str(disk / "out")
    elif command == "invert":
        named = str(disk / "inv.safetensors")
        argv = ["invert", clip, *model, "--output", named]
    elif command == "edit --save-inversion":
        named = str(disk / "inv.safetensors")
        argv = ["edit", clip, "--prompt", "x", *model, "--output-dir", str(tmp_path / "out"), "--save-inversion",
                named]
    else:
        named = str(disk / "scores.json")
        argv = ["evaluate", clip, clip, "--no-flow", "--output", named]
    fill()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Broken pipe" not in err
    if command in ("invert", "edit --save-inversion"):
        assert f"Could not save the inversion to {named!r}: No space left on device." in err
    else:
        assert f"No space left on device: could not write '{named}" in err, err  # edit: a file in the folder
    assert sorted(os.listdir(disk)) == [".filler"]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# 8. Batch jobs files: ids that cannot shadow batch's own files; parser errors with the file and line


@pytest.mark.parametrize("video, expected", [("manifest.jsonl.mp4", "manifest.jsonl-job"),
                                             ("MANIFEST.JSONL.mp4", "MANIFEST.JSONL-job"),
                                             ("clips/manifest.jsonl.mp4", "clips-manifest.jsonl")])
def test_a_default_job_id_never_names_the_manifest(video, expected):
    from cogvideox_ddim_inversion.workflow.jobs import default_job_id

    assert default_job_id(video) == expected


def test_an_id_naming_the_manifest_is_refused_whatever_its_case(tmp_path):
    from cogvideox_ddim_inversion.workflow.jobs import read_jobs

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"video": "a.mp4"}\n{"id": "Manifest.jsonl", "video": "b.mp4"}\n')
    with pytest.raises(ValueError, match=f"{jobs}:2: id 'Manifest.jsonl' is the name of batch's manifest.jsonl"):
        read_jobs(str(jobs))


@pytest.mark.parametrize("name, content, expected", [
    ("jobs.jsonl", b'{"video": "a.mp4"}\n{"video": "b.mp4", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
     ":2: JSON nested more than 100 levels deep"),
    ("jobs.jsonl", b'{"video": "a.mp4"}\n{"video": "b.mp4", "steps": 2, "steps": 3}\n',
     ":2: the key 'steps' is given twice: keep one."),
    ("jobs.jsonl", b'{"video": "a.mp4"}\n{"video": "b\xff.mp4"}\n',
     ":2: not UTF-8 text (byte 0xff at column 13): save the jobs file as UTF-8."),
    ("jobs.csv", b"video,prompts\na.mp4,x\nb.mp4," + b"y" * 200_000 + b"\n",
     ":3: not readable as CSV: field larger than field limit (131072)."),
    ("jobs.csv", b"video,prompts\na.mp4,x\n\xe9.mp4,y\n", ":3: not UTF-8 text (byte 0xe9 at column 1)"),
])
def test_jobs_file_parser_errors_name_the_file_and_line(tmp_path, name, content, expected):
    from cogvideox_ddim_inversion.workflow.jobs import read_jobs

    jobs = tmp_path / name
    jobs.write_bytes(content)
    with pytest.raises(ValueError) as raised:
        read_jobs(str(jobs))
    assert str(raised.value).startswith(f"{jobs}{expected}"), str(raised.value)


@pytest.mark.parametrize("name, content, line", [("jobs.jsonl", '{"video": "a.mp4", "prompts": ["x"]}\n', 1),
                                                 ("jobs.csv", "video,prompts\na.mp4,x\n", 2)])
def test_a_byte_order_mark_is_read_alike_in_jsonl_and_csv(tmp_path, name, content, line):
    from cogvideox_ddim_inversion.workflow.jobs import read_jobs

    jobs = tmp_path / name
    jobs.write_bytes(b"\xef\xbb\xbf" + content.encode())
    [job] = read_jobs(str(jobs))
    assert job.id == "a" and job.values["video"] == "a.mp4" and job.values["prompts"] == ["x"] and job.line == line


def test_resuming_skips_a_finished_job_without_reading_its_video(tiny_checkpoint, clip, tmp_path, capsys,
                                                                 monkeypatch, no_weights):
    """Issue 33.8: a finished job is recognised from its hash and job.json alone (no probe of its video), in well
    under 10 ms; `benchmarks/batch_resume.py` times 10,000 of them."""
    import importlib.util
    import json
    from pathlib import Path

    from cogvideox_ddim_inversion.workflow import checks

    path = Path(__file__).parents[1] / "benchmarks" / "batch_resume.py"
    spec = importlib.util.spec_from_file_location("batch_resume", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    jobs, flags = benchmark.make_finished_batch(str(tmp_path), 20, tiny_checkpoint(), clip)

    def probe(*args, **kwargs):
        raise AssertionError("a finished job's video was read")

    monkeypatch.setattr(checks, "prepare_edit", probe)
    assert main(["batch", jobs, *flags]) == 0
    assert "20 jobs: 0 done, 20 skipped" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [row["status"] for row in rows] == ["skipped"] * 20
    assert sum(row["seconds"] for row in rows) / 20 < 0.01


def test_an_output_folder_that_cannot_be_swapped_is_replaced_file_by_file(tmp_path):
    """A mount point (a container's volume) or a folder in an unwritable parent cannot be swapped: the run is moved in
    file by file, run.json last, keeping what is not the previous run's."""
    import os

    from cogvideox_ddim_inversion.workflow import run

    out = tmp_path / "out"
    _write_run(out, {"edit-1.mp4": b"old 1", "edit-2.mp4": b"old 2"}, {"notes.txt": b"mine"})
    assert run.can_swap(str(out)) and not run.can_swap("/proc")
    (out / ".partial-run-out-killed123").mkdir()  # left by a run killed in this mode
    assert run.remove_killed_run(str(out)) == [str(out / ".partial-run-out-killed123")]
    new = out / ".partial-run-out-abcdefgh"
    _write_run(new, {"edit-1.mp4": b"new 1"})
    run.replace_in_place(str(new), str(out))
    assert sorted(os.listdir(out)) == ["edit-1.mp4", "notes.txt", "run.json"]
    assert (out / "edit-1.mp4").read_bytes() == b"new 1" and (out / "notes.txt").read_bytes() == b"mine"


def test_an_edit_into_a_folder_that_cannot_be_swapped_replaces_the_run(tiny_checkpoint, clip, earlier_run, tmp_path,
                                                                        monkeypatch):
    import shutil

    from cogvideox_ddim_inversion.workflow import run

    monkeypatch.setattr(run, "can_swap", lambda folder: False)
    out = tmp_path / "out"
    shutil.copytree(earlier_run, out)
    before = _snapshot(out)
    assert main(["edit", clip, "--prompt", "a red square", "--prompt", "a yellow square", "--steps", "2", "--device",
                 "cpu", "--model", tiny_checkpoint(), "--output-dir", str(out)]) == 0
    assert _is_complete_new_run(_snapshot(out), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_short_selection_says_which_frames_it_took():
    from cogvideox_ddim_inversion.cogvideox_ddim_video_io import ordinal, select_frame_indices

    with pytest.raises(ValueError, match="taking every frame; CogVideoX needs at least"):
        select_frame_indices(4, 0, 0, 1, None, 4, "first")
    with pytest.raises(ValueError, match="taking every 3rd frame;"):
        select_frame_indices(12, 0, 0, 3, None, 4, "first")
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]


@pytest.mark.parametrize("environment, threads", [
    ({}, None),  # one process: torch's default
    ({"LOCAL_WORLD_SIZE": "2"}, 1),  # several processes on the node: one thread each
    ({"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "3"}, None),  # told otherwise: left to OMP_NUM_THREADS
])
def test_launched_processes_take_one_thread_each_unless_told_otherwise(monkeypatch, environment, threads):
    from cogvideox_ddim_inversion.workflow import launcher

    for name in ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert launcher.threads_per_process() == threads
