"""`cogvideox-ddim-inversion batch`: many videos from a JSONL or CSV file, on several processes under
`accelerate launch`, resumable after a kill, with failing jobs recorded and the others finished."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cogvideox_ddim_inversion.workflow.jobs import job_settings, read_jobs
from cogvideox_ddim_inversion.cli import main
from cogvideox_ddim_inversion.workflow.settings import EditSettings, SettingsError, render_error
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.video_io import read_video


def write_jsonl(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


def read_manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def leftovers(out: Path) -> list[str]:
    """Temporary files and folders anywhere under `out` (what a kill or a failure could leave behind)."""
    return sorted(str(path.relative_to(out)) for path in out.rglob(".*"))


def file_stats(folder: Path) -> dict:
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in sorted(folder.iterdir())}


def free_port() -> int:
    with socket.socket() as sock:  # other test sessions on this machine may hold accelerate's default port 29500
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(num_processes: int, *batch_args) -> subprocess.CompletedProcess:
    """`accelerate launch -m cogvideox_ddim_inversion.cli batch ...` with `num_processes` processes. Without GPUs,
    `--multi_gpu` is what starts several processes (torchrun; batch sets PartialState up for the CPU, gloo):
    `--cpu` alone starts one (accelerate's multi-CPU launcher needs MPI)."""
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--num_processes", str(num_processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    if num_processes > 1:
        command.append("--multi_gpu")
    command += ["-m", "cogvideox_ddim_inversion.cli", "batch", *map(str, batch_args)]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)


# ----------------------------------------------------------------------------------------------------------------------
# The jobs file


@pytest.mark.parametrize(
    "problem",
    ["duplicate derived ids", "duplicate ids", "unknown option", "model option", "no video", "not json", "bad id",
     "no video column", "extra cell", "not jsonl or csv", "no jobs", "missing file"],
)
def test_jobs_file_problems_are_refused_before_any_model_work(tmp_path, capsys, problem):
    jobs = tmp_path / "jobs.jsonl"
    content = {
        "duplicate derived ids": [{"video": "clips/a.mp4", "prompts": "x"}, {"video": "clips/a.mp4", "prompts": "y"}],
        "duplicate ids": [{"id": "a", "video": "a.mp4"}, {"id": "a", "video": "b.mp4"}],
        "unknown option": [{"video": "a.mp4", "stpes": 3}],
        "model option": [{"video": "a.mp4", "model": "THUDM/CogVideoX-2b"}],
        "no video": [{"video": "a.mp4"}, {"prompts": ["x"]}],
        "bad id": [{"id": "../escape", "video": "a.mp4"}],
    }.get(problem)
    if content is not None:
        write_jsonl(jobs, content)
    elif problem == "not json":
        jobs.write_text('{"video": "a.mp4"}\n{"video": "b.mp4",\n')
    elif problem in ("no video column", "extra cell"):
        jobs = tmp_path / "jobs.csv"
        jobs.write_text("clip,prompts\na.mp4,x\n" if problem == "no video column" else "video,prompts\na.mp4,x,3\n")
    elif problem == "not jsonl or csv":
        jobs = tmp_path / "jobs.txt"
        jobs.write_text("a.mp4\n")
    elif problem == "no jobs":
        jobs.write_text("\n\n")
    expected = {
        "duplicate derived ids": "lines 1 and 2 both have the id 'clips-a' (an id defaults to the video's path): "
                                 "give each of these jobs its own 'id'",
        "duplicate ids": "lines 1 and 2 both have the id 'a'",
        "unknown option": "jobs.jsonl:1: unknown option 'stpes'. A job may set: id, video, prompts, source_prompt",
        "model option": "unknown option 'model'",
        "no video": "jobs.jsonl:2: no video",
        "not json": "jobs.jsonl:2: not a JSON object",
        "bad id": "id '../escape' cannot name a folder",
        "no video column": "no 'video' column",
        "extra cell": "jobs.csv:2: more cells than the header has columns",
        "not jsonl or csv": "name it .jsonl (one JSON object per line) or .csv",
        "no jobs": "holds no jobs",
        "missing file": "Jobs file not found",
    }[problem]
    out = tmp_path / "out"
    # the checkpoint does not exist: the jobs file is refused before it is opened
    assert main(["batch", str(jobs), "--output-dir", str(out), "--model", str(tmp_path / "no-checkpoint")]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_csv_jobs_take_the_flags_and_replace_them_with_their_own_options(tmp_path):
    (tmp_path / "data").mkdir()
    jobs = tmp_path / "data" / "jobs.csv"
    jobs.write_text(
        "id,video,source_prompt,prompts,steps,reference-steps,reconstruction,negative_prompt\n"
        "first,clips/a.mp4,a red circle,a blue circle | a green circle,3,\"0.2,0.8\",yes,\n"
        ",clips/b.mp4,,a cat,,,,blurry\n"
    )
    first, second = read_jobs(str(jobs))
    assert (first.id, first.line, second.id, second.line) == ("first", 2, "clips-b", 3)
    flags = EditSettings(video=None, prompts=["flag prompt"], source_prompt="from the flag", steps=2, guidance=5.0)
    settings = job_settings(first, flags, str(tmp_path / "data"))
    assert settings.video == str(tmp_path / "data" / "clips" / "a.mp4")  # relative to the jobs file
    assert settings.prompts == ["a blue circle", "a green circle"] and settings.source_prompt == "a red circle"
    assert settings.steps == 3 and settings.reference_steps == (0.2, 0.8) and settings.reconstruction is True
    assert settings.guidance == 5.0 and settings.negative_prompt == ""  # not in the job: the flags' values
    assert settings.extra == {"job_id": "first"}
    settings = job_settings(second, flags, str(tmp_path / "data"))
    assert settings.prompts == ["a cat"] and settings.source_prompt == "from the flag" and settings.steps == 2
    assert settings.negative_prompt == "blurry" and settings.reconstruction is False


def test_jsonl_jobs_take_the_local_edit_options(tmp_path):
    job = read_jobs_from_values({"video": "a.mp4", "mask": "masks/a.mp4", "paste_back": True})
    settings = job_settings(job, EditSettings(video=None, prompts=["x"]), "/data")
    assert settings.mask == "/data/masks/a.mp4" and settings.paste_back is True and settings.mask_words is None
    job = read_jobs_from_values({"video": "a.mp4", "mask_words": ["brown horse", "rider"]})
    settings = job_settings(job, EditSettings(video=None, prompts=["x"], paste_back=True), "/data")
    assert settings.mask_words == ["brown horse", "rider"] and settings.mask is None and settings.paste_back is True
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("video,mask_words,mask_feather\na.mp4,\"brown horse,rider\",4\n")
    settings = job_settings(read_jobs(str(jobs))[0], EditSettings(video=None, prompts=["x"]), str(tmp_path))
    assert settings.mask_words == ["brown horse", "rider"] and settings.mask_feather == 4


def test_jobs_take_the_mask_and_trajectory_options(tmp_path):
    job = read_jobs_from_values({"video": "a.mp4", "mask_words": "horse", "mask_blocks": [0, 2],
                                 "mask_steps": [0.2, 0.8], "mask_refine": False, "trajectory_device": "cpu"})
    settings = job_settings(job, EditSettings(video=None, prompts=["x"]), "/data")
    assert (settings.mask_blocks, settings.mask_steps, settings.mask_refine, settings.trajectory_device) == (
        [0, 2], (0.2, 0.8), False, "cpu")
    job = read_jobs_from_values({"video": "a.mp4", "mask_refine": None})
    assert job_settings(job, EditSettings(video=None, prompts=["x"], mask_refine=True), "/data").mask_refine is None


def test_the_settings_hash_follows_what_the_outputs_depend_on(tmp_path):
    """The video by content (a copy keeps finished jobs), every setting of the inversion and the edit, the checkpoint
    and dtype; not the options that only change memory (issue 24.2)."""
    import dataclasses
    import shutil

    from cogvideox_ddim_inversion.workflow.jobs import settings_hash

    clip = write_sample_clip(tmp_path / "a.mp4", num_frames=9)
    copy = shutil.copyfile(clip, tmp_path / "copy.mp4")
    other = write_sample_clip(tmp_path / "b.mp4", num_frames=10)
    base = EditSettings(video=clip, prompts=["x"])
    digest = settings_hash(base, "model", "float32")
    for same in ({"prompt_batch_size": 1}, {"trajectory_device": "cpu"}, {"video": str(copy)}):
        assert settings_hash(dataclasses.replace(base, **same), "model", "float32") == digest, same
    for change in ({"video": other}, {"seed": 1}, {"source_prompt": "y"}, {"num_frames": 9}, {"guidance": 5.0},
                   {"mask_words": ["x"], "source_prompt": "x"}, {"prompts": ["y"]}):
        assert settings_hash(dataclasses.replace(base, **change), "model", "float32") != digest, change
    assert settings_hash(base, "other model", "float32") != digest != settings_hash(base, "model", "bfloat16")


@pytest.mark.parametrize(
    "values, message",
    [({"steps": "two"}, "steps: type a whole number (got 'two')."),
     ({"steps": 2.5}, "steps: type a whole number (got 2.5)."),
     ({"steps": True}, "steps: type a whole number (got true)."),
     ({"sampling": "middle"}, "sampling: choose one of first, spread (got 'middle')."),
     ({"reconstruction": "maybe"}, "reconstruction: give true or false (got 'maybe')."),
     ({"prompts": [1, 2]}, "prompts must be a text or a list of texts"),
     ({"seed": None}, "seed: type a whole number (got null).")],
)
def test_bad_option_values_fail_their_job_only(values, message):
    job = read_jobs_from_values({"video": "a.mp4", **values})
    with pytest.raises(SettingsError) as error:
        job_settings(job, EditSettings(video=None, prompts=["x"]), "/data")
    assert message in render_error(error.value, "batch")  # the manifest names a job's keys


def read_jobs_from_values(values: dict):
    from cogvideox_ddim_inversion.workflow.jobs import Job

    return Job("job", 1, values)


# ----------------------------------------------------------------------------------------------------------------------
# Runs


def test_two_workers_each_do_their_share_and_record_the_bad_jobs(tiny_checkpoint, tmp_path):
    """In process, the workers of the slow two-process run below without its launch: process i of 2 gets the jobs
    i, i + 2, ... (the split `run_batch` makes), does each good one once into its own folder, records which process
    wrote it, and records the bad ones (an unreadable video, a bad option) without a folder."""
    from cogvideox_ddim_inversion.batch import BatchWorker
    from cogvideox_ddim_inversion.cli import build_parser
    from cogvideox_ddim_inversion.cogvideox_ddim_checkpoint import checkpoint_config
    from cogvideox_ddim_inversion.workflow.flags import model_and_edit_settings

    clips = tmp_path / "clips"
    write_sample_clip(clips / "a.mp4", num_frames=9)
    (clips / "broken.mp4").write_text("not a video")
    jobs_path = write_jsonl(tmp_path / "jobs.jsonl", [
        {"id": "a-1", "video": "clips/a.mp4", "prompts": ["a blue circle"]},
        {"id": "a-2", "video": "clips/a.mp4", "prompts": ["a dog"], "seed": 3},
        {"id": "broken", "video": "clips/broken.mp4", "prompts": ["a dog"]},
        {"id": "bad-strength", "video": "clips/a.mp4", "prompts": ["a dog"], "strength": 1.5},
    ])
    out = tmp_path / "out"
    out.mkdir()
    model = tiny_checkpoint("cogvideox-5b")
    args = build_parser().parse_args(["batch", str(jobs_path), "--output-dir", str(out), "--model", model,
                                      "--steps", "2", "--device", "cpu"])
    model_settings, defaults = model_and_edit_settings(args)
    jobs = read_jobs(str(jobs_path))
    config = checkpoint_config(model)
    results = []
    for index in (0, 1):
        worker = BatchWorker(model_settings, defaults, str(tmp_path), str(out), config, "float32", index, 2)
        results += worker.run(jobs[index::2])
    rows = {row["id"]: row for row in sorted(results, key=lambda row: row["line"])}
    assert list(rows) == ["a-1", "a-2", "broken", "bad-strength"]  # every job once
    assert {name: (row["status"], row["process_index"]) for name, row in rows.items()} == {
        "a-1": ("done", 0), "a-2": ("done", 1), "broken": ("failed", 0), "bad-strength": ("failed", 1)}
    assert rows["broken"]["error_type"] == "SettingsError" and "Could not decode" in rows["broken"]["error"]
    assert "Traceback" not in rows["broken"]["error"]
    assert rows["bad-strength"]["error"] == "strength must be in (0, 1], got 1.5."  # the job's own key
    assert sorted(path.name for path in out.iterdir()) == ["a-1", "a-2"]  # no failed-job folders
    assert leftovers(out) == []
    for name in ("a-1", "a-2"):
        record = json.loads((out / name / "job.json").read_text())
        assert record["status"] == "done" and record["settings_hash"] == rows[name]["settings_hash"]
        assert record["process"]["index"] == rows[name]["process_index"]  # the folder's writer is the one reported
        assert record["process"]["num_processes"] == 2 and record["process"]["pid"] == os.getpid()
        for output, path in rows[name]["outputs"].items():
            assert (out / path).is_file() and path == f"{name}/{record['outputs'][output]}"
    assert json.loads((out / "a-2" / "job.json").read_text())["settings"]["edit"]["seed"] == 3


@pytest.mark.slow
def test_two_processes_do_every_good_job_once_and_record_the_bad_ones(tiny_checkpoint, tmp_path, capsys):
    """A real two-process run (accelerate launch, gloo on the CPU): 6 jobs, one with an unreadable video, one with a
    bad option. Every good job is done once, by one of the two processes; both processes work; the failures are in
    the manifest with their errors; --fail-on-error makes the exit status non-zero. A rerun without it (one process)
    exits with 0 and skips every finished job without touching it."""
    clips = tmp_path / "clips"
    write_sample_clip(clips / "a.mp4", num_frames=9)
    write_sample_clip(clips / "b.mp4", num_frames=13)
    (clips / "broken.mp4").write_text("not a video")
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [
        {"video": "clips/a.mp4", "source_prompt": "a red circle", "prompts": ["a blue circle", "a green circle"]},
        {"video": "clips/b.mp4", "prompts": "a cat"},
        {"id": "broken", "video": "clips/broken.mp4", "prompts": ["a dog"]},
        {"id": "a-seed-3", "video": "clips/a.mp4", "prompts": ["a dog"], "seed": 3, "reconstruction": True},
        {"id": "bad-strength", "video": "clips/b.mp4", "prompts": ["a dog"], "strength": 1.5},
        {"id": "b-late", "video": "clips/b.mp4", "prompts": ["a dog"], "skip_frames_start": 4, "save_inversion": True},
    ])
    out = tmp_path / "out"
    model = tiny_checkpoint("cogvideox-5b")
    run = accelerate_launch(2, jobs, "--output-dir", out, "--model", model, "--steps", 2, "--fail-on-error")
    summary = "6 jobs: 4 done, 0 skipped (already done with the same settings), 2 failed"
    assert summary in run.stdout, run.stderr[-3000:]
    assert run.returncode != 0

    manifest = read_manifest(out)
    good = ["clips-a", "clips-b", "a-seed-3", "b-late"]
    assert [row["id"] for row in manifest] == ["clips-a", "clips-b", "broken", "a-seed-3", "bad-strength", "b-late"]
    rows = {row["id"]: row for row in manifest}
    assert {name: rows[name]["status"] for name in rows} == {**dict.fromkeys(good, "done"), "broken": "failed",
                                                             "bad-strength": "failed"}
    assert rows["broken"]["error_type"] == "SettingsError" and "Could not decode" in rows["broken"]["error"]
    assert "Traceback" not in rows["broken"]["error"]
    assert rows["bad-strength"]["error"] == "strength must be in (0, 1], got 1.5."  # the job's own key
    assert sorted(path.name for path in out.iterdir()) == sorted([*good, "manifest.jsonl"])  # no failed-job folders
    assert leftovers(out) == []

    processes = set()
    for name in good:
        record = json.loads((out / name / "job.json").read_text())
        assert record["status"] == "done" and record["settings_hash"] == rows[name]["settings_hash"]
        assert record["process"]["index"] == rows[name]["process_index"]  # the folder's writer is the one reported
        assert record["process"]["num_processes"] == 2
        processes.add((record["process"]["index"], record["process"]["pid"]))
        for output, path in rows[name]["outputs"].items():
            assert (out / path).is_file() and path == f"{name}/{record['outputs'][output]}"
        run_record = json.loads((out / name / "run.json").read_text())
        assert str(out / name) in json.dumps(run_record["outputs"]) and ".partial" not in json.dumps(run_record)
    assert len(processes) == 2 and {index for index, _ in processes} == {0, 1}  # both processes worked
    assert set(rows["clips-a"]["outputs"]) == {"edit-1", "edit-2", "side_by_side", "run"}
    assert set(rows["a-seed-3"]["outputs"]) == {"edit-1", "side_by_side", "reconstruction", "run"}
    assert (out / "b-late" / "inversion.safetensors").is_file()
    late = json.loads((out / "b-late" / "run.json").read_text())
    assert late["inversion"]["source"]["skip_frames_start"] == 4  # the job's frame selection replaced the default
    assert late["outputs"]["inversion"] == str(out / "b-late" / "inversion.safetensors")
    assert len(read_video(out / "b-late" / "edit-1.mp4")[0]) == 9 == len(read_video(out / "clips-a" / "edit-2.mp4")[0])

    before = {name: file_stats(out / name) for name in good}
    assert main(["batch", str(jobs), "--output-dir", str(out), "--model", model, "--steps", "2"]) == 0
    assert "6 jobs: 0 done, 4 skipped (already done with the same settings), 2 failed" in capsys.readouterr().out
    assert {name: file_stats(out / name) for name in good} == before
    assert [row["status"] for row in read_manifest(out)] == ["skipped", "skipped", "failed", "skipped", "failed",
                                                             "skipped"]


def test_a_rerun_resumes_an_interrupted_run_without_redoing_finished_jobs(tiny_checkpoint, tmp_path, capsys):
    """The resume logic of the slow test below, in process: after a run that finished one job and was interrupted
    while writing the next (its `.partial-` folder left behind), the rerun keeps the first job's files (same inodes
    and mtimes), deletes the unfinished folder and does the rest; changing one job's seed redoes that job only."""
    write_sample_clip(tmp_path / "a.mp4", num_frames=9)
    write_sample_clip(tmp_path / "b.mp4", num_frames=9)
    jobs = tmp_path / "jobs.csv"
    lines = ["id,video,prompts,seed", "first,a.mp4,a blue circle,", "second,b.mp4,a cat,"]
    jobs.write_text("\n".join(lines[:2]) + "\n")
    out = tmp_path / "out"
    args = ["batch", str(jobs), "--output-dir", str(out), "--model", tiny_checkpoint("cogvideox-5b"), "--steps", "2"]
    assert main(args) == 0  # the interrupted run: "first" finished ...
    (out / ".partial-second-interrupted").mkdir()  # ... "second" was being written
    (out / ".partial-second-interrupted" / "edit-1.mp4").write_bytes(b"half a video")
    jobs.write_text("\n".join(lines) + "\n")
    first_files = file_stats(out / "first")
    capsys.readouterr()

    assert main(args) == 0
    assert "unfinished output(s) of an interrupted run: .partial-second-interrupted" in capsys.readouterr().err
    statuses = {row["id"]: row["status"] for row in read_manifest(out)}
    assert statuses == {"first": "skipped", "second": "done"}
    assert file_stats(out / "first") == first_files  # not recomputed: the very same files
    assert leftovers(out) == []
    assert len(read_video(out / "second" / "edit-1.mp4")[0]) == 9

    lines[2] = "second,b.mp4,a cat,5"  # another seed for one job
    jobs.write_text("\n".join(lines) + "\n")
    kept = file_stats(out / "first")
    second_hash = json.loads((out / "second" / "job.json").read_text())["settings_hash"]
    assert main(args) == 0
    statuses = {row["id"]: row["status"] for row in read_manifest(out)}
    assert statuses == {"first": "skipped", "second": "done"}
    assert file_stats(out / "first") == kept
    record = json.loads((out / "second" / "job.json").read_text())
    assert record["settings_hash"] != second_hash and record["settings"]["edit"]["seed"] == 5
    assert leftovers(out) == []


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_finished_jobs(tiny_checkpoint, tmp_path):
    """SIGKILL a run while it writes its second job (SIGTERM unwinds like Ctrl+C since issue 33.6: exit 143); the
    rerun keeps the first job's files (same inodes and mtimes), deletes the interrupted job's temporary folder and
    finishes the rest; changing one job's option redoes that job only."""
    write_sample_clip(tmp_path / "a.mp4", num_frames=9)
    write_sample_clip(tmp_path / "b.mp4", num_frames=9)
    jobs = tmp_path / "jobs.csv"
    lines = ["id,video,prompts,seed", "first,a.mp4,a blue circle,", "second,b.mp4,a cat,",
             "third,a.mp4,a dog,7"]
    jobs.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    args = ["batch", str(jobs), "--output-dir", str(out), "--model", tiny_checkpoint("cogvideox-5b"), "--steps", "2"]

    with open(tmp_path / "log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "cogvideox_ddim_inversion.cli", *args],
                                   stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not ((out / "first").is_dir() and any(out.glob(".partial-second-*"))):
        assert process.poll() is None, (tmp_path / "log").read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith(".")) == ["first"]
    assert any(out.glob(".partial-second-*"))  # the interrupted job's unfinished folder, not mistaken for done
    first_files = file_stats(out / "first")

    assert main(args) == 0
    statuses = {row["id"]: row["status"] for row in read_manifest(out)}
    assert statuses == {"first": "skipped", "second": "done", "third": "done"}
    assert file_stats(out / "first") == first_files  # not recomputed: the very same files
    assert leftovers(out) == []
    assert len(read_video(out / "second" / "edit-1.mp4")[0]) == 9

    lines[2] = "second,b.mp4,a cat,5"  # another seed for one job
    jobs.write_text("\n".join(lines) + "\n")
    kept = {name: file_stats(out / name) for name in ("first", "third")}
    second_hash = json.loads((out / "second" / "job.json").read_text())["settings_hash"]
    assert main(args) == 0
    statuses = {row["id"]: row["status"] for row in read_manifest(out)}
    assert statuses == {"first": "skipped", "second": "done", "third": "skipped"}
    assert {name: file_stats(out / name) for name in ("first", "third")} == kept
    record = json.loads((out / "second" / "job.json").read_text())
    assert record["settings_hash"] != second_hash and record["settings"]["edit"]["seed"] == 5
    assert leftovers(out) == []


def test_a_folder_batch_did_not_write_is_never_replaced(tiny_checkpoint, tmp_path, capsys):
    write_sample_clip(tmp_path / "a.mp4", num_frames=9)
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"id": "mine", "video": "a.mp4", "prompts": ["x"]}])
    (tmp_path / "out" / "mine").mkdir(parents=True)
    (tmp_path / "out" / "mine" / "notes.txt").write_text("the user's")
    code = main(["batch", str(jobs), "--output-dir", str(tmp_path / "out"), "--model", tiny_checkpoint("cogvideox-5b"),
                 "--steps", "2", "--fail-on-error"])
    assert code == 1
    assert "holds no job.json written by batch: move it away" in capsys.readouterr().out
    assert os.listdir(tmp_path / "out" / "mine") == ["notes.txt"]
