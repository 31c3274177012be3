"""Batch editing: many videos, one pipeline per process, on one process or under `accelerate launch`.

`cogvideox-ddim-inversion batch JOBS --output-dir OUT [edit flags]` reads one job per line of JOBS (JSONL or CSV: a
video, its source prompt, edit prompts and any per-job option), checks the whole file before any model work, and
splits the jobs across the processes that `accelerate launch` started (`accelerate.PartialState`: one device per
process). Each process loads the pipeline once and edits its jobs with `editing.edit_video`, the same function as the
`edit` command; a job's flags are the command's flags with the job's options replacing them.

Outputs are atomic: a job is written into a temporary sibling folder `OUT/.partial-<id>-*` and renamed to `OUT/<id>`
when complete, with `job.json` (settings, settings hash, timings, versions, process) inside. A rerun skips a job whose
folder holds the same settings hash, redoes one whose settings changed, and deletes temporary folders left by a killed
run. A failing job is recorded with its error and the others go on; the main process merges every process's results
into `OUT/manifest.jsonl`. See docs/batch.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid

from .cogvideox_ddim_files import PARTIAL_PREFIX, atomic_write, user_umask
from .workflow.jobs import MANIFEST, Job, job_settings, read_jobs, settings_hash
from .workflow.launcher import launched_command
from .workflow.settings import EditSettings, render_error


JOB_RECORD = "job.json"
LOCK_FILE = ".batch-lock"  # while a run writes the output folder: its processes hold it locked and are listed in it
REPLACED_PREFIX = ".replaced-"  # a finished job's old folder, between its replacement and its deletion
# A process that finishes its share waits at the final gather for the slowest one; torch's default process-group
# timeout (30 minutes with gloo; NCCL has its own) can be shorter than an uneven share of 5B jobs. If even this runs
# out, every finished job is saved: rerunning skips them and writes the manifest.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=24)


# ----------------------------------------------------------------------------------------------------------------------
# Output folders


def remove_partial_outputs(output_dir: str) -> list[str]:
    """Delete what an interrupted run left: temporary job folders and files, replaced folders not yet deleted."""
    removed = []
    for name in sorted(os.listdir(output_dir)):
        if name.startswith((PARTIAL_PREFIX, REPLACED_PREFIX)):
            path = os.path.join(output_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)  # ignore: another node may be deleting the same folder
            else:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
            removed.append(name)
    return removed


def read_job_record(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, JOB_RECORD)) as file:
            record = json.load(file)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "settings_hash" in record else None


def finished_record(folder: str, digest: str) -> dict | None:
    """The job.json of a finished job with these settings, if `folder` holds one whose outputs all exist."""
    record = read_job_record(folder)
    if record is None or record.get("status") != "done" or record.get("settings_hash") != digest:
        return None
    if not all(os.path.isfile(os.path.join(folder, name)) for name in record.get("outputs", {}).values()):
        return None
    return record


def move_into_place(partial: str, final: str):
    """Move a complete job folder into place. A directory cannot be renamed over a non-empty one, so an old folder is
    first renamed aside (to a name the next run deletes), then the new one in, then the old one deleted: at every
    moment `final` is absent, old and whole, or new and whole."""
    replaced = None
    if os.path.lexists(final):
        name = f"{REPLACED_PREFIX}{os.path.basename(final)}-{uuid.uuid4().hex}"
        replaced = os.path.join(os.path.dirname(final), name)
        os.rename(final, replaced)
    os.rename(partial, final)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


def _relocate(value, old: str, new: str):
    """`value` (a JSON-like record) with the paths under `old` moved under `new`."""
    if isinstance(value, dict):
        return {key: _relocate(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_relocate(item, old, new) for item in value]
    if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
        return new + value[len(old):]
    return value


def _write_jsonl(rows: list[dict], path: str):
    with atomic_write(path, suffix=".jsonl") as partial, open(partial, "w") as file:
        for row in rows:
            file.write(json.dumps(row, default=str) + "\n")


def _first_line(error) -> str:
    """An error's first line, for the log and summary (ffmpeg's errors carry its whole banner; the manifest keeps
    every line)."""
    return str(error).strip().split("\n", 1)[0]


# ----------------------------------------------------------------------------------------------------------------------
# One run per output folder


class OutputDirBusy(OSError):
    """Another run is writing the output folder."""


class OutputDirLock:
    """This process's share of its run's hold on the output folder: a shared `flock` on `OUT/.batch-lock`.

    Every process of a run holds it until it ends, so a run whose launcher was killed (its workers go on) still holds
    the folder; the OS drops the lock of a process that dies, however it dies. A new run needs the lock exclusively,
    so it is refused while any process of another run lives. The file lists the run's processes for that message."""

    held: list["OutputDirLock"] = []  # what this process holds, released when the batch command ends however it ends

    def __init__(self, path: str, file):
        self.path = path
        self.file = file
        OutputDirLock.held.append(self)

    @classmethod
    def claim(cls, output_dir: str) -> tuple["OutputDirLock", str]:
        """The main process: take the folder for a new run, or raise OutputDirBusy naming the run that holds it.
        Returns the lock and the run's token, which the run's other processes check when they join."""
        path = os.path.join(output_dir, LOCK_FILE)
        try:
            file = _open_locked(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputDirBusy(_busy_message(output_dir, _read_lock_record(path))) from None
        token = uuid.uuid4().hex
        file.seek(0)
        file.truncate()
        file.write(json.dumps({"token": token, "started_at": _now(), "command": sys.argv, **_process()}) + "\n")
        file.flush()
        # Shared from now on, for this run's other processes. flock converts a lock by dropping it first: a run
        # started at that very moment can take it in between, write its own record and go on. Then this one stops.
        fcntl.flock(file, fcntl.LOCK_SH)
        record = _read_lock_record(path)
        if not record or record[0].get("token") != token:
            file.close()
            raise OutputDirBusy(_busy_message(output_dir, record))
        return cls(path, file), token

    @classmethod
    def join(cls, output_dir: str, token: str, process_index: int) -> "OutputDirLock":
        """Another process of the run: hold the lock its main process took, and add this process to the list."""
        path = os.path.join(output_dir, LOCK_FILE)
        file = _open_locked(path, fcntl.LOCK_SH | fcntl.LOCK_NB)
        record = _read_lock_record(path)
        if not record or record[0].get("token") != token:  # e.g. another node does not see the same folder
            file.close()
            raise OutputDirBusy(
                f"{path} is not the lock this run's main process took: every process of a run must see the same "
                "output folder (on several nodes, a shared file system)."
            )
        file.write(json.dumps({"process_index": process_index, **_process()}) + "\n")
        file.flush()
        return cls(path, file)

    def release(self, remove: bool = False):
        """Unlock; `remove` (the main process, once every process is done) deletes the file too."""
        if self.file.closed:
            return
        if remove:
            try:
                if os.stat(self.path).st_ino == os.fstat(self.file.fileno()).st_ino:
                    os.remove(self.path)
            except FileNotFoundError:
                pass
        self.file.close()
        OutputDirLock.held.remove(self)

    @classmethod
    def release_all(cls):
        for lock in list(cls.held):
            lock.release()


def _open_locked(path: str, operation: int):
    """Open the lock file (created if missing) and flock it. A run that ends deletes the file, so one opened just
    before that is locked in vain: then open the new one."""
    while True:
        file = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(file, operation)
            if os.stat(path).st_ino == os.fstat(file.fileno()).st_ino:
                return file
        except FileNotFoundError:
            pass
        except BaseException:
            file.close()
            raise
        file.close()


def _read_lock_record(path: str) -> list[dict]:
    """The lock file's lines: the run (its main process) first, then its other processes; [] if unreadable."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return [record for record in records if isinstance(record, dict)]


def _process() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _busy_message(output_dir: str, record: list[dict]) -> str:
    if record:
        run = record[0]
        processes = ", ".join(f"pid {row.get('pid')} on {row.get('host')}" for row in record)
        holder = (f"the run started at {run.get('started_at')} by `{' '.join(map(str, run.get('command') or []))}` "
                  f"(processes: {processes})")
    else:
        holder = "a run that is starting"
    return (
        f"Another batch run is writing {output_dir}: {holder}. Two runs must never write one output folder: wait for "
        f"it to end, or stop it (kill those processes: docs/batch.md, 'Stopping a run') and rerun. This run changed "
        "nothing."
    )


def lock_output_dir(output_dir: str, state) -> OutputDirLock:
    """Hold the output folder for this run on every process, or raise OutputDirBusy on every process (the main
    process decides; the others follow, so that all stop alike)."""
    from accelerate.utils import broadcast_object_list

    lock, verdict = None, [None, None]  # [token, error]
    if state.is_main_process:
        try:
            lock, token = OutputDirLock.claim(output_dir)
            verdict = [token, None]
        except OutputDirBusy as error:
            verdict = [None, str(error)]
    if state.num_processes > 1:
        broadcast_object_list(verdict, from_process=0)
    token, error = verdict
    if error is not None:
        raise OutputDirBusy(error)
    return lock or OutputDirLock.join(output_dir, token, state.process_index)


# ----------------------------------------------------------------------------------------------------------------------
# Running


class JobFailed(Exception):
    """A job's settings or source are unusable; its message goes into the manifest."""


class BatchWorker:
    """One process's share of the jobs: checks each one, loads the pipeline once (when some job needs it) and writes
    each job's folder atomically."""

    def __init__(self, model_settings, defaults: EditSettings, jobs_dir: str, output_dir: str, config: dict,
                 dtype: str, process_index: int = 0, num_processes: int = 1):
        self.model_settings = model_settings
        self.defaults = defaults
        self.jobs_dir = jobs_dir
        self.output_dir = output_dir
        self.config = config
        self.dtype = dtype
        self.process_index = process_index
        self.num_processes = num_processes
        self.pipe = None
        self.load_info = None
        self.load_error = None

    def log(self, message: str):
        from tqdm.auto import tqdm

        tqdm.write(f"[process {self.process_index}] {message}", file=sys.stderr)

    def run(self, jobs: list[Job]) -> list[dict]:
        from tqdm.auto import tqdm

        results = []
        counts = {"done": 0, "skipped": 0, "failed": 0}
        with tqdm(total=len(jobs), desc=f"process {self.process_index}", unit="job", position=self.process_index,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            for job in jobs:
                result = self.run_job(job)
                results.append(result)
                counts[result["status"]] += 1
                bar.set_postfix(counts, refresh=False)
                bar.update()
        return results

    def run_job(self, job: Job) -> dict:
        started = time.perf_counter()
        # every documented manifest field on every line (docs/batch.md), null until known
        result = {"id": job.id, "line": job.line, "status": "failed", "error": None, "error_type": None,
                  "outputs": {}, "seconds": None, "process_index": self.process_index, "settings_hash": None}
        final = os.path.join(self.output_dir, job.id)
        try:
            from .workflow.checks import prepare_edit

            settings = job_settings(job, self.defaults, self.jobs_dir)
            # A finished job is recognised first, from its hash and its job.json alone: resuming skips it without
            # reading its video (`prepare_edit` probes it), so that 10,000 finished jobs resume in seconds.
            digest = record = None
            try:
                digest = settings_hash(settings, self.model_settings.model, self.dtype,
                                       self.model_settings.output_options())
            except OSError:  # a missing or unreadable file: `prepare_edit` names it
                pass
            if digest is not None:
                record = finished_record(final, digest)
            if record is not None:
                result.update(settings_hash=digest, status="skipped", outputs=self._outputs(job, record))
            else:
                # a bad video fails here, before the pipeline loads
                prepared = prepare_edit(settings, config=self.config, memory=self.model_settings.memory_options())
                digest = digest or settings_hash(settings, self.model_settings.model, self.dtype,
                                                 self.model_settings.output_options())
                result["settings_hash"] = digest
                if os.path.lexists(final) and read_job_record(final) is None:
                    raise JobFailed(
                        f"{final} exists but holds no job.json written by batch: move it away or choose another "
                        "--output-dir (batch replaces only its own folders)."
                    )
                record = self.edit(job, settings, digest, final, prepared.plan)
                result.update(status="done", outputs=self._outputs(job, record))
                self.log(f"{job.id}: done in {time.perf_counter() - started:.1f} s")
        except Exception as error:  # failures are data: record this job's and go on with the next
            result.update(error=render_error(error, "batch"), error_type=type(error).__name__)
            self.log(f"{job.id}: failed: {type(error).__name__}: {_first_line(error)}")
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result

    def _outputs(self, job: Job, record: dict) -> dict:
        return {name: f"{job.id}/{path}" for name, path in record["outputs"].items()}

    def edit(self, job: Job, settings: EditSettings, digest: str, final: str, plan=None) -> dict:
        from .workflow.run import edit_video, write_json
        from .workflow.window_plan import log_plan

        started = time.perf_counter()
        log_plan(settings, self.config, lambda message: self.log(f"{job.id}: {message}"), plan=plan)  # as `edit`
        pipe, load_info = self.pipeline()
        partial = tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{job.id}-", dir=self.output_dir)
        try:
            os.chmod(partial, 0o777 & ~user_umask())  # mkdtemp makes it private; the finished folder is the user's
            inversion = os.path.join(partial, "inversion.safetensors") if settings.save_inversion else None
            run = edit_video(pipe, dataclasses.replace(settings, save_inversion=inversion), partial, load_info,
                             log=lambda message: self.log(f"{job.id}: {message}"))
            # run.json names the files where they end up, not in the temporary folder
            run = _relocate({key: value for key, value in run.items()}, partial, final)
            run["outputs"].pop("run", None)
            write_json(run, os.path.join(partial, "run.json"))
            outputs = {name: os.path.relpath(path, final) for name, path in run["outputs"].items()}
            outputs["run"] = "run.json"
            record = {
                "id": job.id,
                "status": "done",
                "settings_hash": digest,
                "job": {"line": job.line, **job.values},
                "settings": {"edit": _relocate(run["settings"], partial, final),
                             "model": dataclasses.asdict(self.model_settings)},
                "load": load_info,
                "outputs": outputs,
                "timings_s": {**run["timings_s"], "total_s": round(time.perf_counter() - started, 3)},
                "versions": run["versions"],
                "process": {"index": self.process_index, "num_processes": self.num_processes, "pid": os.getpid(),
                            "host": socket.gethostname(), "device": self.model_settings.device},
                "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            write_json(record, os.path.join(partial, JOB_RECORD))  # last: a folder with job.json is complete
            move_into_place(partial, final)
        finally:
            if os.path.exists(partial):
                shutil.rmtree(partial, ignore_errors=True)
        return record

    def pipeline(self):
        """Load the pipeline at the first job that needs it; a failed load fails every job of this process."""
        if self.load_error is not None:
            raise JobFailed(f"the pipeline failed to load on this process ({self.load_error})")
        if self.pipe is None:
            from .workflow.loading import load_pipeline

            try:
                self.pipe, self.load_info = load_pipeline(self.model_settings, log=self.log)
            except Exception as error:
                self.load_error = f"{type(error).__name__}: {error}"
                raise
            steps_position = self.num_processes + self.process_index  # below every process's job bar
            self.pipe.set_progress_bar_config(position=steps_position, leave=False, file=sys.stderr,
                                              desc=f"process {self.process_index} steps", dynamic_ncols=True)
        return self.pipe, self.load_info


def _partial_state(device: str):
    """accelerate's view of this process (index, count, device). On the CPU PartialState must be told: without
    `cpu=True` processes launched on a machine without GPUs each believe they are alone and would all do every job."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import get_int_from_env, parse_flag_from_env

    cpu = device == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=PROCESS_GROUP_TIMEOUT)
    launched = get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1)
    if state.num_processes < launched:
        raise ValueError(
            f"{launched} processes were launched but accelerate connected {state.num_processes}: each would do every "
            "job. Check the launch command and the devices (docs/batch.md); on a machine without GPUs pass --device "
            "cpu."
        )
    return state


@launched_command(cleanup=OutputDirLock.release_all)
def run_batch(args) -> int:
    """`batch JOBS --output-dir OUT`: run every job of JOBS on this process's share; the main process writes the
    manifest and prints a summary. Returns the exit status: 1 if a job failed and `--fail-on-error`, else 0."""
    from accelerate.utils import gather_object

    started = time.perf_counter()
    from .workflow.checks import check_devices, check_output_path, read_checkpoint_config
    from .workflow.flags import model_and_edit_settings
    from .workflow.loading import resolve_device_and_dtype

    model_settings, defaults = model_and_edit_settings(args)
    jobs_path = os.path.abspath(args.jobs)
    jobs = read_jobs(jobs_path)
    output_dir = os.path.abspath(args.output_dir)
    check_output_path(output_dir, "output_dir", folder=True)
    check_devices(model_settings, defaults)
    config = read_checkpoint_config(model_settings.model)
    os.makedirs(output_dir, exist_ok=True)

    state = _partial_state(model_settings.device)
    if model_settings.device == "auto":
        device = str(state.device)
    elif state.num_processes > 1 and model_settings.device != "cpu":
        raise ValueError(
            f"--device {model_settings.device} would put every process on one device: under accelerate launch each "
            "process gets its own, so leave --device out."
        )
    else:
        device = model_settings.device
    model_settings = dataclasses.replace(model_settings, device=device)
    dtype = str(resolve_device_and_dtype(device, model_settings.dtype)[1]).removeprefix("torch.")

    lock = lock_output_dir(output_dir, state)  # before anything is deleted: another run's unfinished jobs are live
    if state.is_local_main_process:  # on a shared disk several nodes may clean at once: deletions ignore that
        removed = remove_partial_outputs(output_dir)
        if removed:
            print(f"Removed {len(removed)} unfinished output(s) of an interrupted run: {', '.join(removed)}",
                  file=sys.stderr)
    state.wait_for_everyone()  # nobody writes before the leftovers are gone

    # Jobs alternate between processes (job i goes to process i mod n): a deterministic split that stays balanced
    # when jobs are appended or a run is resumed.
    mine = jobs[state.process_index :: state.num_processes]
    worker = BatchWorker(model_settings, defaults, os.path.dirname(jobs_path), output_dir, config, dtype,
                         state.process_index, state.num_processes)
    results = gather_object(worker.run(mine))
    results.sort(key=lambda result: result["line"])

    counts = {status: sum(row["status"] == status for row in results) for status in ("done", "skipped", "failed")}
    if state.is_main_process:
        _write_jsonl(results, os.path.join(output_dir, MANIFEST))
        print(
            f"{len(results)} jobs: {counts['done']} done, {counts['skipped']} skipped (already done with the same "
            f"settings), {counts['failed']} failed; {time.perf_counter() - started:.1f} s on {state.num_processes} "
            f"process(es). Manifest: {os.path.join(output_dir, MANIFEST)}"
        )
        for result in results:
            if result["status"] == "failed":
                print(f"failed: {result['id']} (line {result['line']}): {result['error_type']}: "
                      f"{_first_line(result['error'])}")
    state.wait_for_everyone()
    lock.release(remove=state.is_main_process)  # every process is done writing
    state.destroy_process_group()
    return 1 if counts["failed"] and args.fail_on_error else 0
