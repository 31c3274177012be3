"""A saved DDIM inversion: the output of `invert()`, its file format, and the fingerprint of what made it.

A leaf module (no relative imports but `cogvideox_ddim_files` and `cogvideox_ddim_windows`, which the pipeline file
also imports): the pipeline file imports it directly, so diffusers' `custom_pipeline` loader ships it beside the
pipeline.
"""

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from diffusers.utils import BaseOutput

from .cogvideox_ddim_files import atomic_write
from .cogvideox_ddim_windows import WindowSchedule


INVERSION_FORMAT = "cogvideox-ddim-inversion/1"  # the `format` entry of a saved inversion's metadata


@dataclass
class CogVideoXDDIMInversionOutput(BaseOutput):
    r"""
    Output of [`CogVideoXDDIMInversionPipeline.invert`].

    Args:
        latents (`torch.Tensor` of shape `[B, F, C, H, W]`):
            Clean video latents (VAE latents times the scaling factor), laid out as the transformer consumes them.
        trajectory (`torch.Tensor` of shape `[T, B, F, C, H, W]`):
            The inverted latents in denoising order: `trajectory[i]` is at the noise level of `timesteps[i]`, so
            `trajectory[0]` is the noisiest. Pass it as `reference_latents`, and `trajectory[0]` as `latents`.
        timesteps (`torch.Tensor` of shape `[T]`):
            The denoising timesteps the trajectory is aligned with (the pipeline scheduler's own grid).
        fps (`float`, *optional*):
            Frame rate of the source when `video` was a file path, for writing results at the source's speed.
        model_evaluations (`int`):
            Transformer calls the inversion made (each with 1 row per video, 2 with guidance).
        image_latents (`torch.Tensor` of shape `[B, F, C, H, W]`, *optional*):
            Image-to-video checkpoints: the conditioning latents the inversion used; pass them to `__call__` as
            `image_latents` so that regeneration is conditioned identically.
        settings (`dict`):
            How the inversion was made: the checkpoint (`model`: its name and the structural settings that must match
            to reuse the trajectory), the scheduler config, prompt, steps, strength, size; callers may add more (the
            command line adds the source file and frame selection). Saved with the tensors by [`save`]. A clip
            longer than the native length records its temporal windows as `windows` (see the `windows` property).
        mask (`torch.Tensor` of shape `[B, F, H, W]`, *optional*):
            With `invert(..., mask_words=...)`: the automatic edit mask (bool, True where the video may change), at
            the video's frame count and size; pass it to `__call__` as `mask`, or write it with
            `video_io.write_mask_video`.
        attention_map (`torch.Tensor` of shape `[B, F_latent, H_tokens, W_tokens]`, *optional*):
            With `mask_words`: the recorded attention of the video tokens on the words, per latent frame and token
            (patch), scaled to [0, 1] per video; `mask` is it upsampled to pixels and thresholded.
    """

    latents: torch.Tensor
    trajectory: torch.Tensor
    timesteps: torch.Tensor
    fps: float | None = None
    model_evaluations: int = 0
    image_latents: torch.Tensor | None = None
    settings: dict = field(default_factory=dict)
    mask: torch.Tensor | None = None
    attention_map: torch.Tensor | None = None

    @property
    def windows(self) -> WindowSchedule | None:
        """The overlapping temporal windows a long clip was inverted in (from `settings["windows"]`), which `__call__`
        runs again over the trajectory; None for a clip of the native length or less (one window)."""
        recorded = (self.settings or {}).get("windows")
        return None if recorded is None else WindowSchedule.from_dict(recorded)

    def save(self, path: str | os.PathLike) -> str:
        """Write the inversion to one `.safetensors` file: its tensors, and everything else as JSON metadata.

        The file is written under a temporary name and moved into place, so an interrupted save leaves no file that
        `load` could mistake for a complete one; it gets the permissions of any new file (0666 less the umask)."""
        from safetensors.torch import save_file

        path = os.fspath(path)
        tensors, extras = {}, {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                tensors[name] = value.detach().to("cpu").contiguous()
            elif value is not None:
                extras[name] = value
        metadata = {"format": INVERSION_FORMAT, "fields": json.dumps(extras)}
        with atomic_write(path, suffix=".safetensors") as partial:  # no half-written file `load` could mistake
            save_file(tensors, partial, metadata=metadata)
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, pipeline=None, device="cpu"
    ) -> "CogVideoXDDIMInversionOutput":
        """Read an inversion written by [`save`]. With `pipeline`, also check that it was made by a checkpoint and
        scheduler that match (see [`CogVideoXDDIMInversionPipeline.check_inversion`])."""
        from safetensors import safe_open

        fields = cls._read_fields(path)
        with safe_open(os.fspath(path), framework="pt", device=str(device)) as file:
            tensors = {name: file.get_tensor(name) for name in file.keys()}
        values = {**fields, **tensors}
        inversion = cls(**{name: value for name, value in values.items() if name in cls.__dataclass_fields__})
        if pipeline is not None:
            pipeline.check_inversion(inversion)
        return inversion

    @classmethod
    def read_settings(cls, path: str | os.PathLike) -> dict:
        """The `settings` of a saved inversion, read from the file's header without loading its tensors."""
        return cls._read_fields(path).get("settings", {})

    @staticmethod
    def _read_fields(path: str | os.PathLike) -> dict:
        from safetensors import safe_open

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Inversion file not found: {path!r}. Write one with `inv.save(path)` first.")
        try:
            with safe_open(path, framework="pt") as file:
                metadata = file.metadata() or {}
        except Exception as error:  # safetensors raises its own error types for a truncated or foreign file
            raise ValueError(
                f"{path!r} is not an inversion saved by CogVideoXDDIMInversionOutput.save (not a readable "
                f"safetensors file: {error})."
            ) from None
        if metadata.get("format") != INVERSION_FORMAT:
            raise ValueError(
                f"{path!r} is not an inversion saved by CogVideoXDDIMInversionOutput.save (format "
                f"{metadata.get('format')!r}, expected {INVERSION_FORMAT!r})."
            )
        return json.loads(metadata["fields"])


# What a saved trajectory depends on (see `config_fingerprint`).
FINGERPRINT_TRANSFORMER_KEYS = (
    "num_layers",
    "num_attention_heads",
    "attention_head_dim",
    "in_channels",
    "out_channels",
    "patch_size",
    "patch_size_t",
    "text_embed_dim",
    "use_rotary_positional_embeddings",
    "use_learned_positional_embeddings",
    "ofs_embed_dim",
)
FINGERPRINT_VAE_KEYS = ("latent_channels", "scaling_factor", "temporal_compression_ratio", "invert_scale_latents")
FINGERPRINT_SCHEDULER_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "snr_shift_scale",
    "rescale_betas_zero_snr",
    "set_alpha_to_one",
    "timestep_spacing",
    "steps_offset",
    "prediction_type",
)


def weights_digest(transformer) -> str | None:
    """A digest of the transformer's first weight (CogVideoX's patch embedding), rounded to bfloat16 so that loading
    in another dtype gives the same digest; None where the weights are not in memory (sequential offload keeps them
    elsewhere) or there are none."""
    weight = next(transformer.parameters(), None)
    if weight is None or weight.device.type == "meta":
        return None
    values = weight.detach().to("cpu", torch.float32).to(torch.bfloat16).view(torch.int16).numpy()
    return hashlib.sha256(values.tobytes()).hexdigest()[:16]


def config_fingerprint(transformer_config: Mapping, vae_config: Mapping, scheduler_config: Mapping) -> dict:
    """The structural settings a trajectory depends on, from plain configs: a loaded model's `config` or the dicts
    `cogvideox_ddim_checkpoint.checkpoint_config()` reads before any weights load."""
    return {
        "transformer": {key: transformer_config.get(key) for key in FINGERPRINT_TRANSFORMER_KEYS},
        "vae": {key: vae_config.get(key) for key in FINGERPRINT_VAE_KEYS},
        "scheduler": {key: scheduler_config.get(key) for key in FINGERPRINT_SCHEDULER_KEYS},
    }


def check_fingerprint(recorded: Mapping | None, current: Mapping):
    """Refuse, naming each difference, an inversion whose recorded fingerprint (`settings["model"]`) differs from
    `current`. The weights digest is compared only where both sides have one (a config-only fingerprint has none)."""
    if not recorded:
        raise ValueError(
            "This inversion does not record the checkpoint that made it (it was not made by `invert()`), so it "
            "cannot be checked against this pipeline: invert the video again with this pipeline."
        )
    differences = []
    for part in ("transformer", "vae", "scheduler"):
        before_part, now_part = recorded.get(part) or {}, current.get(part) or {}
        for key in sorted(set(before_part) | set(now_part)):
            if before_part.get(key) != now_part.get(key):
                before, now = before_part.get(key), now_part.get(key)
                differences.append(f"{part}.{key}: inversion {before!r}, this pipeline {now!r}")
    before_weights, now_weights = recorded.get("weights"), current.get("weights")
    if not differences and None not in (before_weights, now_weights) and before_weights != now_weights:
        differences.append(
            f"weights: the inversion was made by other weights ({recorded.get('name_or_path')!r}) than this "
            f"pipeline's ({current.get('name_or_path')!r})"
        )
    if differences:
        raise ValueError(
            f"This inversion was made with {recorded.get('name_or_path')!r}, which does not match this pipeline "
            f"({current.get('name_or_path')!r}): " + "; ".join(differences) + ". Load the checkpoint it was made "
            "with, or invert the video again with this one."
        )
