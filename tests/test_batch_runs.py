"""How batch runs start and stop: one run per output folder (a lock the OS drops when a process dies), a complete
manifest line for every job, long clips in windows (bad long-clip jobs refused before any weights load), one message
for a bad jobs file under `accelerate launch`, and the test session's own temporary Hugging Face home removed when it
ends."""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_batch import accelerate_launch, free_port, leftovers, read_manifest, write_jsonl

from cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput
from cogvideox_ddim_inversion.batch import LOCK_FILE
from cogvideox_ddim_inversion.cli import main
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.video_io import read_video


# docs/batch.md, "Outputs": the fields of a manifest line
MANIFEST_FIELDS = {"id", "line", "status", "error", "error_type", "outputs", "seconds", "process_index",
                   "settings_hash"}
# tiny-checkpoint jobs still running when the test looks (at least a minute each on an idle machine; the test kills
# them): 1000 inversion steps of 11 transformer calls each
SLOW = ["--steps", "1000", "--fixed-point-iterations", "10"]
# how a 36-frame clip read whole (33 frames, 9 latent) is edited by the tiny model, whose windows are 9 frames
LONG_CLIP_WINDOWS = "in 4 windows of 9 frames overlapping by 4 (pyramid weighting): 4 windows x 2 steps"


def wait_for(condition, what: str, process: subprocess.Popen | None, log: Path, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.poll() is None, f"the run ended before {what}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s: {log.read_text()[-3000:]}"
        time.sleep(0.05)


def lock_is_free(out: Path) -> bool:
    """Whether a new run could take the output folder now (what the OS says, not what the lock file says)."""
    with open(out / LOCK_FILE, "a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def holders(out: Path) -> list[int]:
    return [json.loads(line)["pid"] for line in (out / LOCK_FILE).read_text().splitlines()]


def processes_naming(folder: Path) -> list[int]:
    """Processes whose command line names `folder` (a run's workers, whatever became of their launcher)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(folder).encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue  # ended meanwhile
    return pids


def kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def rerun_after_the_kill(jobs_dir: Path, out: Path, model: str, capsys) -> None:
    """Once the holders are dead the folder is free: a run (of jobs that fail fast, no model load) starts, deletes
    the dead run's unfinished folders and leaves nothing behind."""
    deadline = time.monotonic() + 60
    while not lock_is_free(out):  # the OS drops a killed process's lock as soon as it is gone
        assert time.monotonic() < deadline
        time.sleep(0.05)
    jobs = write_jsonl(jobs_dir / "quick.jsonl", [{"id": "missing", "video": "missing.mp4", "prompts": ["x"]}])
    assert main(["batch", str(jobs), "--output-dir", str(out), "--model", model, "--steps", "2"]) == 0
    assert "unfinished output(s) of an interrupted run: .partial-" in capsys.readouterr().err
    assert [row["status"] for row in read_manifest(out)] == ["failed"]
    assert leftovers(out) == []  # the unfinished folders and the lock file are gone


# ----------------------------------------------------------------------------------------------------------------------
# One run per output folder


def test_a_run_on_a_folder_another_run_holds_is_refused_and_changes_nothing(tiny_checkpoint, tmp_path, capsys):
    """In process, the slow test below without its subprocess: the folder held as a live run holds it (its lock,
    one unfinished job folder) refuses a new run, which names the holder and changes nothing; once the holder is
    gone a run cleans up after it."""
    from cogvideox_ddim_inversion.batch import OutputDirLock

    write_sample_clip(tmp_path / "a.mp4", num_frames=9)
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"id": "slow", "video": "a.mp4", "prompts": ["a dog"]}])
    out = tmp_path / "out"
    (out / ".partial-slow-live").mkdir(parents=True)
    (out / ".partial-slow-live" / "edit-1.mp4").write_bytes(b"being written")
    model = tiny_checkpoint("cogvideox-5b")
    lock, _ = OutputDirLock.claim(str(out))
    try:
        assert not lock_is_free(out) and holders(out) == [os.getpid()]
        before = sorted(path.name for path in out.iterdir())
        assert main(["batch", str(jobs), "--output-dir", str(out), "--model", model, "--steps", "2"]) == 2
        error = capsys.readouterr().err
        assert f"Another batch run is writing {out}: the run started at " in error
        assert f"(processes: pid {os.getpid()} on " in error and "'Stopping a run'" in error
        assert sorted(path.name for path in out.iterdir()) == before  # the live job's folder kept, no manifest
        assert (out / ".partial-slow-live" / "edit-1.mp4").read_bytes() == b"being written"
    finally:
        lock.release()
    rerun_after_the_kill(tmp_path, out, model, capsys)


@pytest.mark.slow
def test_a_second_run_on_a_busy_output_folder_is_refused_and_changes_nothing(tiny_checkpoint, tmp_path, capsys):
    write_sample_clip(tmp_path / "a.mp4", num_frames=9)
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"id": "slow", "video": "a.mp4", "prompts": ["a dog"]}])
    out = tmp_path / "out"
    model = tiny_checkpoint("cogvideox-5b")
    args = ["batch", str(jobs), "--output-dir", str(out), "--model", model, *SLOW]
    log = tmp_path / "log"
    with open(log, "w") as file:
        first = subprocess.Popen([sys.executable, "-m", "cogvideox_ddim_inversion.cli", *args], stdout=file,
                                 stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: any(out.glob(".partial-slow-*")), "unfinished job folder", first, log)
        before = sorted(path.name for path in out.iterdir())

        assert main(args) == 2
        error = capsys.readouterr().err
        assert f"Another batch run is writing {out}: the run started at " in error
        assert f"(processes: pid {first.pid} on " in error and "'Stopping a run'" in error
        assert sorted(path.name for path in out.iterdir()) == before  # the live job's folder kept, no manifest
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()
        kill(processes_naming(out))
    rerun_after_the_kill(tmp_path, out, model, capsys)


@pytest.mark.slow
def test_killing_the_launcher_leaves_its_workers_holding_the_folder(tiny_checkpoint, tmp_path, capsys):
    """kill -9 of `accelerate launch`: its workers go on (torchrun starts them in their own sessions), and so does
    their hold on the output folder; a new run is refused until they are killed too."""
    write_sample_clip(tmp_path / "a.mp4", num_frames=9)
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"id": "slow-1", "video": "a.mp4", "prompts": ["a dog"]},
                                                 {"id": "slow-2", "video": "a.mp4", "prompts": ["a cat"]}])
    out = tmp_path / "out"
    model = tiny_checkpoint("cogvideox-5b")
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(free_port()), "--multi_gpu",
               "-m", "cogvideox_ddim_inversion.cli", "batch", str(jobs), "--output-dir", str(out), "--model", model,
               *SLOW]
    log = tmp_path / "log"
    with open(log, "w") as file:
        launcher = subprocess.Popen(command, stdout=file, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: len(list(out.glob(".partial-slow-*"))) == 2, "two unfinished job folders", launcher, log)
        workers = holders(out)
        assert len(workers) == 2 and launcher.pid not in workers
        launcher.kill()
        launcher.wait()
        # the workers still run after their launcher's death: their progress goes on reaching the log
        size = log.stat().st_size
        wait_for(lambda: log.stat().st_size > size, "worker output after the launcher's death", None, log)
        assert sorted(processes_naming(out)) == sorted(workers)  # the workers still run, and the lock names them
        before = sorted(path.name for path in out.iterdir())

        assert main(["batch", str(jobs), "--output-dir", str(out), "--model", model, "--steps", "2"]) == 2
        error = capsys.readouterr().err
        assert all(f"pid {pid} on " in error for pid in workers), error
        assert sorted(path.name for path in out.iterdir()) == before
    finally:
        launcher.kill()
        kill(processes_naming(out))
    rerun_after_the_kill(tmp_path, out, model, capsys)


# ----------------------------------------------------------------------------------------------------------------------
# The manifest


def test_every_manifest_line_has_every_documented_field(tiny_checkpoint, tmp_path, capsys):
    write_sample_clip(tmp_path / "a.mp4", num_frames=9)
    (tmp_path / "broken.mp4").write_text("not a video")
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [
        {"id": "good", "video": "a.mp4", "prompts": ["a dog"]},
        {"id": "missing-video", "video": "missing.mp4", "prompts": ["a dog"]},
        {"id": "bad-value", "video": "a.mp4", "prompts": ["a dog"], "steps": "two"},
        {"id": "bad-strength", "video": "a.mp4", "prompts": ["a dog"], "strength": 1.5},
        {"id": "broken", "video": "broken.mp4", "prompts": ["a dog"]},
        {"id": "not-ours", "video": "a.mp4", "prompts": ["a cat"]},
    ])
    out = tmp_path / "out"
    (out / "not-ours").mkdir(parents=True)
    model = tiny_checkpoint("cogvideox-5b")
    assert main(["batch", str(jobs), "--output-dir", str(out), "--model", model, "--steps", "2"]) == 0
    assert "6 jobs: 1 done, 0 skipped (already done with the same settings), 5 failed" in capsys.readouterr().out
    rows = {row["id"]: row for row in read_manifest(out)}
    assert list(rows) == ["good", "missing-video", "bad-value", "bad-strength", "broken", "not-ours"]
    for row in rows.values():
        assert set(row) == MANIFEST_FIELDS, row["id"]
    assert rows["good"]["status"] == "done" and rows["good"]["error"] is None and rows["good"]["error_type"] is None
    for name, row in rows.items():
        assert row["settings_hash"] is None or re.fullmatch(r"[0-9a-f]{64}", row["settings_hash"]), name
        assert isinstance(row["seconds"], float) and row["process_index"] == 0
        if name != "good":
            assert row["status"] == "failed" and row["outputs"] == {} and row["error"] and row["error_type"], name
    assert rows["good"]["settings_hash"] is not None and rows["missing-video"]["settings_hash"] is None  # unhashable
    assert rows["missing-video"]["error_type"] == "SettingsError"  # naming its field, the job's `video`
    assert rows["bad-value"]["error"] == "steps: type a whole number (got 'two')."


# ----------------------------------------------------------------------------------------------------------------------
# Long clips


def test_long_clip_jobs_run_end_to_end_in_windows(tiny_checkpoint, tmp_path, capsys):
    """Clips longer than the tiny model's native 9 frames (3 latent frames): the whole clip (`num_frames: all`, 33
    frames read of 36: 4 windows) and a count beyond native (17: 2 windows) come out with every frame, and the
    windows are recorded with the saved inversion. Each long job says its windows before any model work, with the
    app's words; a job of one window (the default count) runs as it always did, saying no windows."""
    write_sample_clip(tmp_path / "long.mp4", num_frames=36, fps=8)
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [
        {"id": "whole", "video": "long.mp4", "prompts": ["a blue circle"], "num_frames": "all",
         "save_inversion": True},
        {"id": "seventeen", "video": "long.mp4", "prompts": ["a blue circle"], "num_frames": 17,
         "window_batch_size": 2},
        {"id": "window", "video": "long.mp4", "prompts": ["a blue circle"]},
    ])
    out = tmp_path / "out"
    model = tiny_checkpoint("cogvideox-5b")
    args = ["batch", str(jobs), "--output-dir", str(out), "--model", model, "--steps", "2", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "3 jobs: 3 done, 0 skipped" in printed.out
    assert [row["status"] for row in read_manifest(out)] == ["done", "done", "done"]
    for name, frames, starts in [("whole", 33, [0, 2, 4, 6]), ("seventeen", 17, [0, 2])]:
        assert len(read_video(out / name / "edit-1.mp4")[0]) == frames, name
        inversion = json.loads((out / name / "run.json").read_text())["inversion"]
        assert inversion["num_frames"] == frames and inversion["windows"]["starts"] == starts, name
    saved = CogVideoXDDIMInversionOutput.read_settings(out / "whole" / "inversion.safetensors")
    assert saved["windows"]["starts"] == [0, 2, 4, 6] and saved["num_frames"] == 33
    assert leftovers(out) == []

    # what each job said (tests/test_cli_window_plan.py: the same for `edit` and `invert`)
    lines = printed.err.splitlines()

    def index_of(start: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(start))

    assert f"[process 0] whole: Editing 33 frames {LONG_CLIP_WINDOWS}." in lines, lines
    assert index_of("[process 0] whole: Editing 33 frames") < index_of("[process 0] Loading ")  # before the weights
    assert not [line for line in lines if "window:" in line and "windows" in line], lines
    assert index_of("[process 0] window: Inverting 9 frames")  # the one-window job ran, and said no windows
    assert len(read_video(out / "window" / "edit-1.mp4")[0]) == 9


def test_bad_long_clip_jobs_are_refused_before_any_weights_load(tiny_checkpoint, tmp_path, capsys, no_weights):
    write_sample_clip(tmp_path / "long.mp4", num_frames=36, fps=8)
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [
        {"id": "overlap-6", "video": "long.mp4", "prompts": ["x"], "num_frames": "all", "window_overlap": 6},
        {"id": "overlap-12", "video": "long.mp4", "prompts": ["x"], "num_frames": "all", "window_overlap": 12},
        {"id": "batch-0", "video": "long.mp4", "prompts": ["x"], "num_frames": 33, "window_batch_size": 0},
    ])
    out = tmp_path / "out"
    model = tiny_checkpoint("cogvideox-5b")
    args = ["batch", str(jobs), "--output-dir", str(out), "--model", model, "--steps", "2", "--device", "cpu"]
    assert main(args) == 0
    assert "3 jobs: 0 done, 0 skipped (already done with the same settings), 3 failed" in capsys.readouterr().out
    errors = {row["id"]: row["error"] for row in read_manifest(out)}
    assert errors["overlap-6"] == ("window_overlap 6 video frames is not a non-negative multiple of the VAE's "
                                   "temporal compression 4 (one latent frame): pass 4 or 8.")
    assert "window_overlap 12 video frames leaves windows of 9 frames nothing new: pass at most 8" in (
        errors["overlap-12"])
    assert errors["batch-0"] == "window_batch_size must be at least 1, got 0."
    assert no_weights == [] and sorted(path.name for path in out.iterdir()) == ["manifest.jsonl"]


# ----------------------------------------------------------------------------------------------------------------------
# Under accelerate launch


@pytest.mark.slow
def test_a_bad_jobs_file_is_reported_once_under_accelerate_launch(tmp_path):
    """Every launched process reads the jobs file; only the first one reports the mistake, each exits with 2 (the
    plain run's status). What follows is torchrun's summary of the failed processes, which accelerate prints and
    ends with status 1: that part is accelerate's."""
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"video": "a.mp4", "stpes": 3}])
    out = tmp_path / "out"
    run = accelerate_launch(2, jobs, "--output-dir", out, "--model", tmp_path / "no-checkpoint")
    assert run.returncode != 0
    assert run.stderr.count("unknown option 'stpes'") == 1, run.stderr
    assert "error: " + str(jobs) + ":1: unknown option 'stpes'" in run.stderr
    assert re.search(r"rank\s*:\s*0 \(local_rank: 0\)\s*exitcode\s*:\s*2 ", run.stderr), run.stderr
    assert not [line for line in run.stderr.splitlines() if line.strip().startswith("File ")
                and "cogvideox_ddim_inversion" in line]  # no traceback of ours
    assert not out.exists()


# ----------------------------------------------------------------------------------------------------------------------
# The test session


def test_the_test_session_removes_its_hugging_face_home(tmp_path):
    """conftest.py points HF_HOME at a temporary folder for the session (subprocesses inherit it); it must be there
    for every test and gone after the session."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text((Path(__file__).parent / "conftest.py").read_text())
    (tests / "test_home.py").write_text(
        "import os, subprocess, sys\n\n\n"
        "def test_home_exists_for_subprocesses():\n"
        "    code = 'import os; assert os.path.isdir(os.environ[\"HF_HOME\"])'\n"
        "    assert subprocess.run([sys.executable, '-c', code]).returncode == 0\n"
    )
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout + run.stderr
    assert [path.name for path in temp.iterdir() if path.name.startswith("cogvideox-ddim-inversion-hf-home-")] == []
