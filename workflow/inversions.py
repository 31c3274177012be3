"""What a saved inversion depends on, and whether a saved inversion fits an edit: its settings (`depends_on`, compared
with what this edit would invert, each difference naming the option to change) and its checkpoint (structure and
noise schedule from the configs, before any weights load; the weights when the pipeline loads it)."""

from __future__ import annotations

import json

from ..cogvideox_ddim_errors import ParameterError, literal
from ..cogvideox_ddim_files import file_digest
from .settings import EditSettings, SettingsError
from .sources import SourceShape


def inversion_dependencies(settings: EditSettings) -> dict:
    """What an inversion made with these settings depends on, besides the checkpoint (`invert()` records that as
    `settings["model"]`): the video's content (SHA-256) and every `EditSettings` field marked `inversion`; the frame
    selection and size only where a video is read, the mask's settings only with --mask-words (None otherwise).
    JSON values: recorded in a saved inversion (`settings["depends_on"]`), compared by `check_saved_inversion`, and
    hashed for the app's inversion cache and batch's settings hash."""
    values = {"video_sha256": None if settings.video is None else file_digest(settings.video)}
    for option in type(settings).table:
        if option.inversion is not None:
            values[option.name] = getattr(settings, option.name) if _depends_on(option.name, settings) else None
    return json.loads(json.dumps(values))  # as saved and read back: tuples become lists


def _depends_on(name: str, settings: EditSettings) -> bool:
    """Whether an inversion for `settings` depends on the field `name` (see `inversion_dependencies`)."""
    kind = type(settings).table[name].inversion
    return kind == "always" or (kind == "source" and settings.video is not None) or (
        kind == "mask" and bool(settings.mask_words))


def recorded_dependencies(recorded: dict) -> dict:
    """A saved inversion's `inversion_dependencies`; for one saved by `inv.save()` outside the edit workflow, what
    `invert()` itself records (prompt, steps, strength, fixed-point iterations, the mask's words and threshold)."""
    if "depends_on" in recorded:
        return recorded["depends_on"]
    values = {"steps": recorded.get("num_inference_steps"), "mask_words": recorded.get("mask_words")}
    for name in ("strength", "fixed_point_iterations", "mask_threshold"):
        if name in recorded:
            values[name] = recorded[name]
    if isinstance(recorded.get("prompt"), str):
        values["source_prompt"] = recorded["prompt"]
    return values


def _set_to(name: str, value) -> str:
    """How to give the option `name` the value `value`, in a message template."""
    field = "{" + name + "}"
    if value is None:
        return f"leave {field} out"
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"set {field} to {literal(repr(value) if isinstance(value, str) else value)}"


def inversion_differences(settings: EditSettings, recorded: dict, source: SourceShape | None = None) -> list[str]:
    """Each way the saved inversion (its `recorded` settings) differs from what this edit would invert, naming the
    option that makes them agree, as message templates; `source` is what the edit reads of the video
    (`check_source`)."""
    before, now = recorded_dependencies(recorded), inversion_dependencies(settings)
    differences = []
    if before.get("video_sha256") and now["video_sha256"] and before["video_sha256"] != now["video_sha256"]:
        made_from = (recorded.get("source") or {}).get("video")
        differences.append(f"it was made from another video ({literal(repr(made_from))}, by content): pass that video, "
                           "or leave {inversion} out to invert this one")
    windows = recorded.get("windows")
    if settings.window_weighting is not None and windows and windows.get("scheme") != settings.window_weighting:
        # the saved windows' own record (also in inversions saved outside the edit workflow); one window: no weighting
        differences.append(f"its windows were weighted {windows.get('scheme')!r}, not {settings.window_weighting!r}: "
                           f"set {{window_weighting}} to {windows.get('scheme')}, or leave it out")
    for name, value in now.items():
        if name in ("video_sha256", "window_weighting") or name not in before or not _depends_on(name, settings) or (
                before[name] == value):
            continue
        if name == "mask_words":
            differences.append(f"it recorded no mask for {{mask_words}} {literal(value)} (it has "
                               f"{literal(before[name])}): invert again with these {{mask_words}}, or give a {{mask}} "
                               "video")
        elif name == "mask_threshold":
            differences.append(f"it thresholded its mask at {before[name]}, not {value}: set {{mask_threshold}} "
                               f"to {before[name]}")
        else:
            differences.append(f"{{{name}}} was {literal(repr(before[name]))}, not {literal(repr(value))}: "
                               f"{_set_to(name, before[name])}")
    made = tuple(recorded.get(key) for key in ("num_frames", "height", "width"))
    read = None if source is None else (source.num_frames, source.height, source.width)
    if source is not None and not differences and None not in made and made != read:
        differences.append(
            f"it holds {made[0]} frames of {made[2]}x{made[1]}, this edit reads the video as {source.num_frames} "
            f"frames of {source.width}x{source.height}: pass the frame selection and size it was made with"
        )
    return differences


def checkpoint_fingerprint(config: dict) -> dict:
    """What `invert()` records of the checkpoint (`inversion_fingerprint()`), from `checkpoint_config()` alone: the
    structure and noise schedule, with the defaults a config file leaves out filled in as loading would, and the
    DDIM scheduler the pipeline steps with (a multistep scheduler's config rebuilt as `CogVideoXDDIMScheduler`); no
    weights digest, which needs the weights."""
    import inspect

    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel, DDIMScheduler

    from ..cogvideox_ddim_output import config_fingerprint

    def with_defaults(cls, values):
        defaults = {name: parameter.default for name, parameter in inspect.signature(cls.__init__).parameters.items()
                    if parameter.default is not inspect.Parameter.empty}
        return {**defaults, **values}

    scheduler = config.get("scheduler") or {}
    ddim = DDIMScheduler if scheduler.get("_class_name") == "DDIMScheduler" else CogVideoXDDIMScheduler
    return config_fingerprint(with_defaults(CogVideoXTransformer3DModel, config["transformer"]),
                              with_defaults(AutoencoderKLCogVideoX, config["vae"]),
                              dict(ddim.from_config(scheduler).config))


def check_inversion_checkpoint(recorded: dict, config: dict, model: str | None = None):
    """The checkpoint a saved inversion was made with (`recorded["model"]`, `invert()`'s fingerprint) against the one
    about to load (`config`, `checkpoint_config()` of `model`): its structure and noise schedule, before any weights
    load. The weights themselves are compared by the pipeline as it loads the inversion (`check_inversion`)."""
    from ..cogvideox_ddim_output import check_fingerprint

    if not recorded.get("model"):
        raise SettingsError(
            "inversion", "This inversion does not record the checkpoint that made it (it was not made by `invert()`), "
            "so it cannot be checked against {model}: invert the video again."
        )
    try:
        check_fingerprint(recorded["model"], {"name_or_path": model, **checkpoint_fingerprint(config)})
    except ValueError as error:
        raise SettingsError("inversion", literal(error) + " ({model})") from None


def check_saved_inversion(settings: EditSettings, config: dict, source: SourceShape | None = None,
                          model: str | None = None, memory=None):
    """Refuse a saved inversion (read from its header alone) made with other settings than this edit's, naming each
    difference and the option to change, or without a record of its checkpoint; with `memory` (the run's
    `MemoryOptions`), one made with other 8-bit weights."""
    from ..cogvideox_ddim_memory import check_weights_storage, expected_weights_storage
    from ..cogvideox_ddim_output import CogVideoXDDIMInversionOutput

    recorded = CogVideoXDDIMInversionOutput.read_settings(settings.inversion)
    check_inversion_checkpoint(recorded, config, model)
    differences = inversion_differences(settings, recorded, source)
    if differences:
        raise SettingsError(
            "inversion", f"The inversion {literal(repr(settings.inversion))} was made with other settings than this "
            "edit: " + "; ".join(differences) + ". Change these, or leave {inversion} out to invert again."
        )
    if memory is not None:  # the loaded pipeline checks it again (`check_inversion`)
        try:
            check_weights_storage(recorded.get("model"), {"weights_storage": expected_weights_storage(memory)})
        except ParameterError as error:
            raise SettingsError.from_parameter_error(error) from None
        except ValueError as error:
            raise SettingsError("inversion", literal(error)) from None
