"""Batch jobs files: one job per line (JSONL or CSV), each a video, its prompts and any option of `EDIT_OPTIONS` by its
name, read into settings the way the command line reads its flags (`Option.read`), and the hash of what a job's
outputs depend on (a rerun skips a finished job with the same hash)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass

from ..cogvideox_ddim_files import file_digest
from .inversions import inversion_dependencies
from .settings import EDIT_OPTIONS, EditSettings, SettingsError, parse_bool, read_value


PROMPT_SEPARATOR = "|"  # CSV only: several edit prompts in one cell
MANIFEST = "manifest.jsonl"
PATH_FIELDS = ("video", "image", "inversion", "mask")  # relative to the JOBS file's folder; hashed by content
KEY_ALIASES = {"prompt": "prompts"}
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# Names in the output folder that are batch's own, never a job's (compared ignoring case: macOS and Windows file
# systems do). The lock and temporary folders start with '.', which no id does.
RESERVED_IDS = (MANIFEST,)
MAX_JSON_DEPTH = 100  # deeper than any jobs file needs; json's recursion would raise RecursionError far deeper


@dataclass
class Job:
    """One line of the JOBS file: its id, its line number and its fields as given (names normalised)."""

    id: str
    line: int
    values: dict


# ----------------------------------------------------------------------------------------------------------------------
# The JOBS file


def read_jobs(path: str, table=EDIT_OPTIONS) -> list[Job]:
    """Parse and check the whole JOBS file: its format, a video (or inversion) on every line, known option names and
    unique ids. Raises ValueError naming the file and line; the values of options are checked per job later."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Jobs file not found: {path!r}. Check the path.")
    extension = os.path.splitext(path)[1].lower()
    if extension in (".jsonl", ".ndjson"):
        rows = _read_jsonl(path)
    elif extension == ".csv":
        rows = _read_csv(path)
    else:
        raise ValueError(f"Jobs file {path!r}: name it .jsonl (one JSON object per line) or .csv (a header row).")
    if not rows:
        raise ValueError(f"Jobs file {path!r} holds no jobs.")

    keys = ("id", *(option.name for option in table if option.name != "extra"))
    jobs, first_line_of = [], {}
    for line, raw in rows:
        values = {}
        for key, value in raw.items():
            name = KEY_ALIASES.get(_normalise_key(key), _normalise_key(key))
            if name not in keys:
                raise ValueError(
                    f"{path}:{line}: unknown option {key!r}. A job may set: {', '.join(keys)}. Model and memory "
                    "options (--model, --device, --offload, ...) apply to the whole run: pass them as flags."
                )
            if name in values:
                raise ValueError(f"{path}:{line}: {key!r} is given twice.")
            values[name] = value
        if not isinstance(values.get("video") or values.get("inversion"), str):
            raise ValueError(f"{path}:{line}: no video. Every job needs a 'video' (a path relative to the jobs file).")
        if "id" in values:
            job_id = values.pop("id")
            if not isinstance(job_id, str) or not ID_PATTERN.fullmatch(job_id):
                raise ValueError(
                    f"{path}:{line}: id {job_id!r} cannot name a folder: use up to 200 letters, digits, '.', '_' and "
                    "'-', starting with a letter or digit."
                )
            if is_reserved_id(job_id):
                raise ValueError(f"{path}:{line}: id {job_id!r} is the name of batch's {MANIFEST} in the output "
                                 "folder: give this job another 'id'.")
        else:
            job_id = default_job_id(values.get("video") or values["inversion"])
        if job_id in first_line_of:
            raise ValueError(
                f"{path}: lines {first_line_of[job_id]} and {line} both have the id {job_id!r} (an id defaults to the "
                "video's path): give each of these jobs its own 'id'."
            )
        first_line_of[job_id] = line
        jobs.append(Job(job_id, line, values))
    return jobs


def is_reserved_id(job_id: str) -> bool:
    return job_id.lower() in RESERVED_IDS


def _normalise_key(key) -> str:
    return str(key).strip().removeprefix("--").replace("-", "_")


def _read_text(path: str) -> str:
    """The jobs file as text: UTF-8, a byte-order mark (which Windows editors and spreadsheets write) skipped;
    bytes that are not UTF-8 are refused naming the line."""
    with open(path, "rb") as file:
        data = file.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at column {column}): "
                         "save the jobs file as UTF-8.") from None


def _unique_keys(pairs):
    """A JSON object's pairs as a dict, refusing a key given twice (json keeps the last silently)."""
    values = {}
    for key, value in pairs:
        if key in values:
            raise _DuplicateKey(key)
        values[key] = value
    return values


class _DuplicateKey(ValueError):
    pass


def _json_depth(text: str) -> int:
    """How deeply brackets nest in a JSON text (strings skipped): checked before parsing, which recurses."""
    depth = deepest = 0
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _read_jsonl(path: str) -> list[tuple[int, dict]]:
    rows = []
    for line, text in enumerate(_read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        if _json_depth(text) > MAX_JSON_DEPTH:
            raise ValueError(f"{path}:{line}: JSON nested more than {MAX_JSON_DEPTH} levels deep; a job is one "
                             "object of options.")
        try:
            row = json.loads(text, object_pairs_hook=_unique_keys)
        except _DuplicateKey as error:
            raise ValueError(f"{path}:{line}: the key {error.args[0]!r} is given twice: keep one.") from None
        except (json.JSONDecodeError, RecursionError) as error:
            row = error
        if not isinstance(row, dict):
            raise ValueError(
                f"{path}:{line}: not a JSON object ({row}). Each line holds one job, e.g. "
                '{"video": "clip.mp4", "source_prompt": "a horse", "prompts": ["a zebra"], "steps": 30}'
            )
        rows.append((line, row))
    return rows


def _read_csv(path: str) -> list[tuple[int, dict]]:
    rows = []
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    try:
        columns = [_normalise_key(name) for name in reader.fieldnames or []]
        if "video" not in columns and "inversion" not in columns:
            raise ValueError(
                f"{path}: no 'video' column. The first row names the columns: id, video, source_prompt, prompts "
                f"(several separated by '{PROMPT_SEPARATOR}') and any option, e.g. steps, guidance, strength."
            )
        for row in reader:
            if None in row:
                raise ValueError(f"{path}:{reader.line_num}: more cells than the header has columns.")
            # An empty cell keeps the flag's value; several edit prompts share one cell.
            values = {key: value for key, value in row.items() if value not in (None, "")}
            for key in list(values):
                if KEY_ALIASES.get(_normalise_key(key), _normalise_key(key)) == "prompts":
                    values[key] = [prompt.strip() for prompt in values[key].split(PROMPT_SEPARATOR)]
            if values:
                rows.append((reader.line_num, values))
    except csv.Error as error:  # a cell over csv's size limit (128 KiB), a NUL byte, ...
        raise ValueError(f"{path}:{reader.line_num + 1}: not readable as CSV: {error}.") from None
    return rows


def default_job_id(path: str) -> str:
    """A job's id when its line gives none: the video's path as written, without extension, folders joined by '-'
    (`clips/horse.mp4` -> `clips-horse`)."""
    parts = [part for part in re.split(r"[\\/]+", os.path.splitext(path)[0]) if part not in ("", ".", "..")]
    job_id = re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts)).lstrip("._-")[-200:].lstrip("._-")
    if is_reserved_id(job_id):  # `manifest.jsonl.mp4`: its folder would shadow the manifest
        job_id = f"{job_id}-job"
    return job_id or "job"


def job_settings(job: Job, defaults: EditSettings, jobs_dir: str) -> EditSettings:
    """The job's settings: the flags' `defaults` with the job's options replacing them, each read by its option
    (`Option.read`: types, choices, lists, null for "not set"); paths are relative to `jobs_dir`. Raises
    SettingsError naming the key (a failure of this job only)."""
    overrides = {}
    for name, value in job.values.items():
        if name == "save_inversion":  # a switch in batch: each job's inversion goes into its own folder
            try:
                overrides[name] = parse_bool(value)
            except ValueError:
                raise SettingsError(name, f"{{{name}}} must be true or false, got {json.dumps(value)}.") from None
            continue
        if name == "prompts" and isinstance(value, str):
            value = [value]
        if name == "prompts" and not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise SettingsError(name, "{prompts} must be a text or a list of texts, got " + json.dumps(value) + ".")
        overrides[name] = read_value(type(defaults).table[name], value)
    for name in PATH_FIELDS:
        if overrides.get(name) is not None:
            overrides[name] = os.path.join(jobs_dir, overrides[name])
    return dataclasses.replace(defaults, **overrides, extra={**defaults.extra, "job_id": job.id})


def settings_hash(settings: EditSettings, model: str, dtype: str, model_options: dict | None = None) -> str:
    """What a job's outputs depend on: the checkpoint and the dtype, what its inversion depends on
    (`editing.inversion_dependencies`: the video by content), and every other edit setting, with the image, mask and
    inversion files by content (so moving the data keeps finished jobs, replacing a video redoes its job). Not the
    options that only change memory or speed (`prompt_batch_size`, `trajectory_device`), the device, offload, tiling
    or library versions (recorded in job.json). `model_options`: the weight storage and step cache options that change
    the outputs (`ModelSettings.output_options()`), hashed only when some are set."""
    skipped = {"extra", "video", *type(settings).table.names(memory_only=True)}
    values = {name: value for name, value in dataclasses.asdict(settings).items() if name not in skipped}
    for name in PATH_FIELDS:
        if name in values:
            values[name] = None if values[name] is None else file_digest(values[name])
    values["save_inversion"] = bool(values["save_inversion"])
    payload = {"model": model, "dtype": dtype, "inversion": inversion_dependencies(settings), "edit": values}
    if model_options:
        payload["model_options"] = model_options
    payload = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
