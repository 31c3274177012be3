# Copyright 2026 The CogVideoX DDIM Inversion authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""DDIM inversion and reference-guided editing of real videos with CogVideoX."""

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXImageToVideoPipeline,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.cogvideo.pipeline_cogvideox import retrieve_timesteps
from diffusers.pipelines.cogvideo.pipeline_output import CogVideoXPipelineOutput
from diffusers.schedulers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DDIMScheduler
from diffusers.utils import BaseOutput, logging, replace_example_docstring
from transformers import T5EncoderModel, T5Tokenizer

from .processors.reference_attention import CogVideoXRefAttnProcessor
from .processors.text_attention import CogVideoXTextAttentionRecorder
from .cogvideox_ddim_video_io import (
    MIN_NUM_FRAMES,
    VideoFrames,
    aspect_preserving_size,
    check_resize_mode,
    count_frames,
    frame_count_for_vae,
    frames_to_tensor,
    probe_video,
    read_mask_video,
    read_video_frames,
    resize_frames,
)


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

# (height, width) CogVideoX 1.5 was trained at (model card). Its config's sample_height/width (300 latents) bound the
# RoPE grid instead: they are not a size to generate at.
COGVIDEOX_1_5_NATIVE_SIZE = (768, 1360)


EXAMPLE_DOC_STRING = """
    Examples:
        ```python
        >>> import torch
        >>> from diffusers import DiffusionPipeline
        >>> from diffusers.utils import export_to_video

        >>> pipe = DiffusionPipeline.from_pretrained(
        ...     "THUDM/CogVideoX-5b",
        ...     custom_pipeline="pipeline_cogvideox_ddim_inversion.py",
        ...     trust_remote_code=True,
        ...     torch_dtype=torch.bfloat16,
        ... ).to("cuda")

        >>> # 1. Invert the source video (49 frames at 720x480); the trajectory is kept as latents.
        >>> inv = pipe.invert(video="horse.mp4", prompt="", num_inference_steps=50)

        >>> # 2. Regenerate under a new prompt; attention to the inverted trajectory keeps structure and motion.
        >>> video = pipe(
        ...     prompt="a zebra running across a field",
        ...     latents=inv.trajectory[0],
        ...     reference_latents=inv.trajectory,
        ...     num_inference_steps=50,
        ...     guidance_scale=6,
        ... ).frames[0]
        >>> export_to_video(video, "edit.mp4", fps=8)
        ```
"""


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
            command line adds the source file and frame selection). Saved with the tensors by [`save`].
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

    def save(self, path: str | os.PathLike) -> str:
        """Write the inversion to one `.safetensors` file: its tensors, and everything else as JSON metadata.

        The file is written under a temporary name and moved into place, so an interrupted save leaves no file that
        `load` could mistake for a complete one."""
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
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        handle, partial = tempfile.mkstemp(suffix=".safetensors", prefix=".partial-", dir=directory)
        os.close(handle)
        try:
            save_file(tensors, partial, metadata=metadata)
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, pipeline: "CogVideoXDDIMInversionPipeline | None" = None, device="cpu"
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


# What a saved trajectory depends on (see `inversion_fingerprint`).
_FINGERPRINT_TRANSFORMER_KEYS = (
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
_FINGERPRINT_VAE_KEYS = ("latent_channels", "scaling_factor", "temporal_compression_ratio", "invert_scale_latents")
_FINGERPRINT_SCHEDULER_KEYS = (
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

_COGVIDEOX_TRANSFORMER_KEYS = (
    "patch_size",
    "patch_size_t",
    "use_rotary_positional_embeddings",
    "sample_frames",
    "in_channels",
)


def check_cogvideox_components(transformer, vae):
    """Refuse, with a message naming the fix, components that are not a CogVideoX text-to-video checkpoint's."""
    transformer_config = getattr(transformer, "config", None) or {}
    vae_config = getattr(vae, "config", None) or {}
    missing = [key for key in _COGVIDEOX_TRANSFORMER_KEYS if key not in transformer_config]
    if missing or "temporal_compression_ratio" not in vae_config:
        raise ValueError(
            f"This is not a CogVideoX checkpoint: got a {type(transformer).__name__} transformer and a "
            f"{type(vae).__name__} VAE (missing CogVideoX settings: {missing or ['temporal_compression_ratio']}). "
            "Load a CogVideoX checkpoint such as THUDM/CogVideoX-5b or THUDM/CogVideoX-2b."
        )
    in_channels, out_channels = transformer_config["in_channels"], transformer_config.get("out_channels") or 16
    if in_channels not in (out_channels, 2 * out_channels):
        raise ValueError(
            f"This CogVideoX transformer takes {in_channels} input channels for {out_channels} output channels; "
            "expected a text-to-video (equal) or image-to-video (twice as many) checkpoint."
        )


def latent_frame_spans(num_frames: int, temporal_compression: int = 4) -> list[range]:
    """The pixel frames each latent frame stands for: CogVideoX's VAE keeps frame 0 on its own and compresses the
    rest in groups, so latent frame 0 is pixel frame 0 and latent frame k pixel frames 4k-3 .. 4k."""
    latent_frames = (num_frames - 1) // temporal_compression + 1
    return [range(1)] + [
        range(temporal_compression * k - temporal_compression + 1, temporal_compression * k + 1)
        for k in range(1, latent_frames)
    ]


def grow_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate `[..., H, W]` masks (values in [0, 1]) by a square of half-width `pixels`."""
    if pixels <= 0:
        return mask
    flat = mask.reshape(-1, 1, *mask.shape[-2:])
    return F.max_pool2d(flat, 2 * pixels + 1, stride=1, padding=pixels).reshape(mask.shape)


def feather_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Soften the outside edge of `[..., H, W]` masks: 1 (the mask's own values) inside, then falling linearly to 0
    over `pixels` pixels (square distance) around it. The inside is never lowered."""
    if pixels <= 0:
        return mask
    flat = mask.reshape(-1, 1, *mask.shape[-2:])
    soft, grown = flat, flat
    for distance in range(1, pixels + 1):
        grown = F.max_pool2d(grown, 3, stride=1, padding=1)
        soft = torch.maximum(soft, grown * (1 - distance / (pixels + 1)))
    return soft.reshape(mask.shape)


def mask_to_latent_grid(mask: torch.Tensor, spatial_compression: int, temporal_compression: int) -> torch.Tensor:
    """Reduce pixel masks `[B, F, H, W]` to the latent grid `[B, F_latent, 1, H / s, W / s]`: each latent cell takes
    the largest value of the pixels and frames it stands for, so a cell may change as much as any of its pixels."""
    cells = F.max_pool2d(mask, spatial_compression)  # the frame axis is treated as channels
    spans = latent_frame_spans(mask.shape[1], temporal_compression)
    return torch.stack([cells[:, span.start : span.stop].amax(dim=1) for span in spans], dim=1).unsqueeze(2)


def attention_map_to_video(
    attention_map: torch.Tensor, num_frames: int, height: int, width: int, temporal_compression: int = 4
) -> torch.Tensor:
    """Upsample per-latent-frame token maps `[B, F_latent, h, w]` to pixel frames `[B, F, H, W]` (bilinear in space;
    each latent frame's map for every pixel frame it stands for)."""
    pixels = F.interpolate(attention_map.float(), size=(height, width), mode="bilinear", align_corners=False)
    spans = latent_frame_spans(num_frames, temporal_compression)
    index = torch.tensor([k for k, span in enumerate(spans) for _ in span], device=pixels.device)
    return pixels.index_select(1, index)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of `[..., H, W]` over (2 radius + 1)-wide squares (over the pixels inside the frame at the borders), with
    running sums: the cost does not grow with the radius."""

    def window_sums(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[dim]
        sums = torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), x.cumsum(dim)], dim)  # sums[i] = x[:i].sum()
        positions = torch.arange(size, device=x.device)
        end, start = (positions + radius + 1).clamp(max=size), (positions - radius).clamp(min=0)
        return sums.index_select(dim, end) - sums.index_select(dim, start), (end - start).to(x.dtype)

    rows, row_counts = window_sums(x.double(), -2)
    total, column_counts = window_sums(rows, -1)
    return (total / (row_counts[:, None] * column_counts[None, :])).to(x.dtype)


def guided_filter(guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float = 1e-3) -> torch.Tensor:
    """The guided filter of He, Sun and Tang (ECCV 2010) with a colour guide: `source` `[N, H, W]` filtered so that
    its edges follow those of `guide` `[N, 3, H, W]` (colours in [0, 1]). In every window the output is an affine
    function of the guide's colour fitted to the source (ridge `eps`), so a coarse map snaps to the frame's edges."""
    guide, source = guide.float(), source.float()
    mean_guide, mean_source = box_filter(guide, radius), box_filter(source, radius)
    covariance = box_filter(guide * source[:, None], radius) - mean_guide * mean_source[:, None]  # [N, 3, H, W]
    variance = (
        torch.stack(
            [torch.stack([box_filter(guide[:, i] * guide[:, j], radius) for j in range(3)], dim=-1) for i in range(3)],
            dim=-2,
        )
        - mean_guide.permute(0, 2, 3, 1)[..., :, None] * mean_guide.permute(0, 2, 3, 1)[..., None, :]
    )  # [N, H, W, 3, 3]
    variance = variance + eps * torch.eye(3, device=guide.device)
    slope = torch.linalg.solve(variance, covariance.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # [N, 3, H, W]
    offset = mean_source - (slope * mean_guide).sum(dim=1)
    return (box_filter(slope, radius) * guide).sum(dim=1) + box_filter(offset, radius)


class CogVideoXDDIMInversionPipeline(CogVideoXPipeline):
    r"""
    DDIM inversion and reference-guided regeneration of real videos with CogVideoX.

    It has the components of [`CogVideoXPipeline`] (and inherits its prompt encoding, decoding and RoPE helpers), so
    every CogVideoX checkpoint loads into it: text-to-video (2B, 5B, 1.5-5B), where `__call__` with
    `reference_latents=None` is `CogVideoXPipeline.__call__`, and image-to-video (5B-I2V, 1.5-5B-I2V, recognised by
    the transformer's input channels), where it is `CogVideoXImageToVideoPipeline.__call__`. Two things are added:

    - [`~CogVideoXDDIMInversionPipeline.invert`] runs the pipeline's own deterministic DDIM sampler backwards from a
      video's latents to noise, with the scheduler's `alphas_cumprod` (SNR shift and zero-terminal-SNR rescaling
      included) and timestep grid, and returns the whole trajectory.
    - `__call__(..., reference_latents=trajectory)` runs, at every step, the reference latent at that step's noise
      level through the transformer beside the sample; with [`CogVideoXRefAttnProcessor`] the sample's attention
      also reads the reference's keys and values, which keeps the source's structure and motion.

    Args:
        vae ([`AutoencoderKLCogVideoX`]):
            Variational Auto-Encoder (VAE) Model to encode and decode videos to and from latent representations.
        text_encoder ([`T5EncoderModel`]):
            Frozen text-encoder (T5 v1.1 XXL for the public checkpoints).
        tokenizer (`T5Tokenizer`):
            Tokenizer of the text encoder.
        transformer ([`CogVideoXTransformer3DModel`]):
            A text conditioned `CogVideoXTransformer3DModel` to denoise the encoded video latents.
        scheduler ([`SchedulerMixin`]):
            The checkpoint's scheduler; inversion uses its noise schedule and timestep grid.
    """

    def __init__(
        self,
        tokenizer: T5Tokenizer,
        text_encoder: T5EncoderModel,
        vae: AutoencoderKLCogVideoX,
        transformer: CogVideoXTransformer3DModel,
        scheduler: CogVideoXDDIMScheduler | CogVideoXDPMScheduler,
    ):
        check_cogvideox_components(transformer, vae)
        super().__init__(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
        )

    def prepare_video_latents(
        self,
        video: torch.Tensor,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None = None,
        sample_posterior: bool = False,
    ) -> torch.Tensor:
        """Encode a preprocessed video `[B, C, F, H, W]` in [-1, 1] to scaled latents `[B, F, C, H, W]`."""
        video = video.to(device=device, dtype=self.vae.dtype)
        if isinstance(generator, list) and len(generator) != video.shape[0]:
            raise ValueError(
                f"You have passed a list of {len(generator)} generators for {video.shape[0]} videos; pass one per video."
            )
        latents = []
        for index in range(video.shape[0]):
            posterior = self.vae.encode(video[index : index + 1]).latent_dist
            if sample_posterior:
                row_generator = generator[index] if isinstance(generator, list) else generator
                latents.append(posterior.sample(row_generator))
            else:
                latents.append(posterior.mode())
        latents = torch.cat(latents) * self.vae_scaling_factor_image
        return latents.permute(0, 2, 1, 3, 4).to(dtype=dtype)  # [B, F, C, H, W]

    def default_video_size(self, source_height: int | None = None, source_width: int | None = None) -> tuple[int, int]:
        """
        The `(height, width)` a source video is brought to when no size is given.

        CogVideoX 1.5 (RoPE only, temporal patches: any resolution) keeps the source's aspect and orientation (a
        portrait video stays portrait) at about its native pixel count (1360x768), both sides multiples of the VAE's 8
        times the patch size (16), within its RoPE grid. Other checkpoints get their native size (720x480), the only
        one 5B-I2V's learned positional embeddings allow, as does a call without a source size.
        """
        config = self.transformer.config
        native = (
            config.sample_height * self.vae_scale_factor_spatial,
            config.sample_width * self.vae_scale_factor_spatial,
        )
        any_size = (
            config.patch_size_t is not None
            and config.use_rotary_positional_embeddings
            and not config.use_learned_positional_embeddings
        )
        if source_height is None or source_width is None or not any_size:
            return native
        pixel_count = min(math.prod(COGVIDEOX_1_5_NATIVE_SIZE), math.prod(native))
        multiple = self.vae_scale_factor_spatial * config.patch_size
        return aspect_preserving_size(source_height, source_width, pixel_count, multiple, *native)

    def read_source_video(
        self,
        path: str | os.PathLike,
        height: int | None = None,
        width: int | None = None,
        resize_mode: str = "crop",
        num_frames: int | None = None,
        sampling: str = "first",
        skip_frames_start: int = 0,
        skip_frames_end: int = 0,
        frame_stride: int = 1,
    ) -> VideoFrames:
        """
        Read a video file's frames at the size `invert()` uses, resized by ffmpeg while decoding.

        `height`/`width` default to `default_video_size` of the source; `num_frames` (the most frames) to the
        transformer's `sample_frames`. Frame selection (`sampling`, skips, stride) is `read_video_frames`'. Returns its
        `VideoFrames` (frames, fps, source frame numbers, the source's `VideoInfo`).
        """
        check_resize_mode(resize_mode)
        if height is None or width is None:
            source = probe_video(path)
            default = self.default_video_size(source.height, round(source.width * source.pixel_aspect_ratio))
            height, width = height or default[0], width or default[1]
        self.check_size_for_positional_embeddings(height, width)
        return read_video_frames(
            path,
            skip_frames_start,
            skip_frames_end,
            frame_stride,
            max_num_frames=num_frames or self.transformer.config.sample_frames,
            temporal_compression=self.vae_scale_factor_temporal,
            sampling=sampling,
            height=height,
            width=width,
            resize_mode=resize_mode,
        )

    def preprocess_source_video(
        self, video, height: int, width: int, num_frames: int | None, resize_mode: str = "crop"
    ) -> tuple[torch.Tensor, float | None]:
        """
        Read (a file path) and resize (`resize_frames`, `resize_mode`) the source video to `[B, C, F, H, W]` in
        [-1, 1]; returns it and the source fps (`None` for frames).
        """
        fps = None
        if isinstance(video, (str, os.PathLike)):
            source = self.read_source_video(video, height, width, resize_mode, num_frames)
            video, fps = source.frames, source.fps
        frames = resize_frames(frames_to_tensor(video), height, width, resize_mode)
        video = (frames * 2 - 1).permute(0, 2, 1, 3, 4)  # [B, F, C, H, W] in [0, 1] -> [B, C, F, H, W] in [-1, 1]
        frames = video.shape[2]
        if frames < MIN_NUM_FRAMES or (frames - 1) % (2 * self.vae_scale_factor_temporal) != 0:
            valid = frame_count_for_vae(frames, self.vae_scale_factor_temporal)
            raise ValueError(
                f"The video has {frames} frames; CogVideoX's VAE needs 8k + 1 frames (an odd number of latent frames: "
                "diffusers' decoder turns an even number into 4 frames each, out of step with the source) and at least "
                f"{MIN_NUM_FRAMES}. "
                + (
                    f"Pass its first {valid} frames (e.g. `video[:{valid}]`)."
                    if valid >= MIN_NUM_FRAMES
                    else "Pass a longer video."
                )
            )
        return video, fps

    def ddim_scheduler(self) -> CogVideoXDDIMScheduler | DDIMScheduler:
        """
        The deterministic DDIM scheduler that inversion and reference-guided regeneration step with.

        It is the pipeline's scheduler when that is a DDIM scheduler. A multistep scheduler such as
        `CogVideoXDPMScheduler` cannot be inverted step by step, so it is replaced by a `CogVideoXDDIMScheduler` built
        from the same config: same `alphas_cumprod` (SNR shift, zero-terminal-SNR rescaling) and timestep spacing.
        """
        if isinstance(self.scheduler, (CogVideoXDDIMScheduler, DDIMScheduler)):
            return self.scheduler
        cached = getattr(self, "_substitute_ddim_scheduler", None)
        if cached is None or cached[0] is not self.scheduler:
            logger.warning(
                f"{self.scheduler.__class__.__name__} is a multistep scheduler and cannot be inverted step by step: "
                "inversion and reference-guided regeneration use a deterministic CogVideoXDDIMScheduler with the same "
                "noise schedule and timestep spacing instead."
            )
            cached = (self.scheduler, CogVideoXDDIMScheduler.from_config(self.scheduler.config))
            self._substitute_ddim_scheduler = cached
        return cached[1]

    @staticmethod
    def _ddim_alphas(scheduler, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_cumprod at `timestep`, alpha_cumprod where the forward DDIM step from `timestep` lands).

        Mirrors `CogVideoXDDIMScheduler.step` / `DDIMScheduler.step`, so the inverse step uses exactly the pair the
        forward step uses: the scheduler's own `alphas_cumprod` (SNR shift and zero-SNR rescaling already applied),
        its `final_alpha_cumprod`, and its previous-timestep rule (also where that rule is off the timestep grid).
        """
        step_ratio = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        timestep = int(timestep)
        prev_timestep = timestep - step_ratio
        alpha_prod_t = scheduler.alphas_cumprod[timestep]
        alpha_prod_prev = (
            scheduler.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else scheduler.final_alpha_cumprod
        )
        return torch.as_tensor(alpha_prod_t).double(), torch.as_tensor(alpha_prod_prev).double()

    def _predicted_noise(
        self, model_output: torch.Tensor, sample: torch.Tensor, alpha_prod: torch.Tensor
    ) -> torch.Tensor:
        """The noise implied by `model_output` for `sample` read at noise level `alpha_prod`."""
        prediction_type = self.scheduler.config.prediction_type
        if prediction_type == "v_prediction":
            return (1 - alpha_prod) ** 0.5 * sample + alpha_prod**0.5 * model_output
        if prediction_type == "epsilon":
            return model_output
        if prediction_type == "sample":
            return (sample - alpha_prod**0.5 * model_output) / (1 - alpha_prod) ** 0.5
        raise ValueError(f"Unsupported prediction_type {prediction_type!r}.")

    def _predicted_original(
        self, model_output: torch.Tensor, sample: torch.Tensor, alpha_prod: torch.Tensor
    ) -> torch.Tensor:
        """The clean sample implied by `model_output` for `sample` read at noise level `alpha_prod`."""
        prediction_type = self.scheduler.config.prediction_type
        if prediction_type == "v_prediction":
            return alpha_prod**0.5 * sample - (1 - alpha_prod) ** 0.5 * model_output
        if prediction_type == "epsilon":
            return (sample - (1 - alpha_prod) ** 0.5 * model_output) / alpha_prod**0.5
        if prediction_type == "sample":
            return model_output
        raise ValueError(f"Unsupported prediction_type {prediction_type!r}.")

    def inverse_step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor,
        sample: torch.Tensor,
        guess: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        One deterministic DDIM step backwards: from `sample` (x_s, at the level where the forward step from `timestep`
        lands) to the level of `timestep` (x_t).

        `model_output` is the model evaluated at (`guess`, `timestep`); `guess` defaults to `sample`, which is plain
        DDIM inversion. The result is the image of `guess` under a fixed-point map whose fixed point is exactly the x_t
        that the forward step sends to x_s: the forward step's clean estimate and noise at x_t, recombined at the level
        of x_s, give x_s back.

        Both degenerate ends are written so that nothing divides by zero. Normally the noise is read from the model
        and the clean estimate from x_s, which also covers a clean x_s (alpha_cumprod = 1). At the zero-terminal-SNR
        end (alpha_cumprod = 0 at `timestep`) the model input *is* the noise, so the noise form would return its input
        unchanged; there the clean estimate is read from the model and the noise from x_s.
        """
        scheduler = self.ddim_scheduler()
        alpha_prod_t, alpha_prod_s = self._ddim_alphas(scheduler, timestep)
        guess = sample if guess is None else guess
        model_output, sample_64, guess_64 = model_output.double(), sample.double(), guess.double()
        if alpha_prod_t > 0:
            noise = self._predicted_noise(model_output, guess_64, alpha_prod_t)
            original = (sample_64 - (1 - alpha_prod_s) ** 0.5 * noise) / alpha_prod_s**0.5
        else:
            original = self._predicted_original(model_output, guess_64, alpha_prod_t)
            noise = (sample_64 - alpha_prod_s**0.5 * original) / (1 - alpha_prod_s) ** 0.5
        return (alpha_prod_t**0.5 * original + (1 - alpha_prod_t) ** 0.5 * noise).to(sample.dtype)

    def _solve_inverse_step(
        self,
        predict: Callable[[torch.Tensor], torch.Tensor],
        timestep: torch.Tensor,
        sample: torch.Tensor,
        iterations: int,
        tolerance: float | None,
        history: int = 3,
    ) -> tuple[torch.Tensor, int]:
        """A plain inverse step, then up to `iterations` Anderson-accelerated fixed-point refinements. Returns the
        latent and the number of model evaluations; stops early once the relative residual is below `tolerance`."""
        latents = self.inverse_step(predict(sample), timestep, sample)
        evaluations = 1
        past_latents, past_residuals = [], []
        for _ in range(iterations):
            mapped = self.inverse_step(predict(latents), timestep, sample, guess=latents).double().flatten(1)
            evaluations += 1
            current = latents.double().flatten(1)
            residual = mapped - current
            relative = residual.norm(dim=1) / current.norm(dim=1).clamp_min(1e-12)
            if tolerance is not None and bool((relative <= tolerance).all()):
                return mapped.view_as(latents).to(sample.dtype), evaluations
            past_latents, past_residuals = (
                (past_latents + [current])[-history - 1 :],
                (past_residuals + [residual])[-history - 1 :],
            )
            if len(past_residuals) > 1:
                # Anderson mixing (type II): the combination of recent maps whose linearised residual is least squares.
                d_residuals = torch.stack([b - a for a, b in zip(past_residuals, past_residuals[1:])], dim=2)
                d_latents = torch.stack([b - a for a, b in zip(past_latents, past_latents[1:])], dim=2)
                gamma = torch.linalg.lstsq(d_residuals, residual.unsqueeze(2)).solution
                mapped = mapped - ((d_latents + d_residuals) @ gamma).squeeze(2)
            latents = mapped.view_as(latents).to(sample.dtype)
        return latents, evaluations

    @staticmethod
    def cut_timesteps(timesteps: torch.Tensor, strength: float) -> torch.Tensor:
        """The last `strength` fraction of `timesteps` (SDEdit / video-to-video style)."""
        if not 0 < strength <= 1:
            raise ValueError(f"`strength` must be in (0, 1], got {strength}.")
        kept = min(int(len(timesteps) * strength), len(timesteps))
        if kept < 1:
            raise ValueError(
                f"`strength={strength}` keeps no step of {len(timesteps)}: raise `strength` or `num_inference_steps`."
            )
        return timesteps[len(timesteps) - kept :]

    def _rotary_embeddings(self, latents: torch.Tensor, device: torch.device):
        if not self.transformer.config.use_rotary_positional_embeddings:
            return None
        return self._prepare_rotary_positional_embeddings(
            height=latents.size(3) * self.vae_scale_factor_spatial,
            width=latents.size(4) * self.vae_scale_factor_spatial,
            num_frames=latents.size(1),
            device=device,
        )

    @property
    def is_image_to_video(self) -> bool:
        """Image-to-video checkpoints (5B-I2V, 1.5-5B-I2V) take image latents concatenated on the channel axis."""
        return self.transformer.config.in_channels == 2 * self.transformer.config.out_channels

    def padding_frames(self, latent_frames: int) -> int:
        """Latent frames CogVideoX 1.5 (temporal patches of `patch_size_t`) needs in front of `latent_frames`."""
        patch_size_t = self.transformer.config.patch_size_t
        return 0 if patch_size_t is None else (-latent_frames) % patch_size_t

    @staticmethod
    def pad_frames(latents: torch.Tensor, padding: int) -> torch.Tensor:
        """Prepend `padding` copies of the first latent frame, as diffusers' image-to-video pipeline pads 1.5 latents.

        Inversion and reference-guided regeneration re-pad at every step from the current latents, so the padding is
        the same function of the video's latents in both directions and never appears in an output."""
        return latents if padding == 0 else torch.cat([latents[:, :1]] * padding + [latents], dim=1)

    def prepare_image_latents(
        self,
        image: torch.Tensor,
        latent_frames: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None = None,
        sample_posterior: bool = False,
    ) -> torch.Tensor:
        """Image-to-video conditioning `[B, F, C, H, W]`: the encoded image, then zeros, as
        `CogVideoXImageToVideoPipeline` builds it (before the 1.5 padding)."""
        posterior = self.vae.encode(image.unsqueeze(2).to(device=device, dtype=self.vae.dtype)).latent_dist
        image_latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        image_latents = image_latents.to(dtype).permute(0, 2, 1, 3, 4)  # [B, 1, C, H, W]
        if self.vae.config.get("invert_scale_latents", False):
            image_latents = image_latents / self.vae_scaling_factor_image  # as diffusers does for 1.5-I2V
        else:
            image_latents = image_latents * self.vae_scaling_factor_image
        padding = image_latents.new_zeros(image_latents.shape[0], latent_frames - 1, *image_latents.shape[2:])
        return torch.cat([image_latents, padding], dim=1)

    def check_size_for_positional_embeddings(self, height: int, width: int):
        """Learned positional embeddings (5B-I2V) exist for the native size only."""
        config = self.transformer.config
        native = (
            config.sample_height * self.vae_scale_factor_spatial,
            config.sample_width * self.vae_scale_factor_spatial,
        )
        if config.use_learned_positional_embeddings and (height, width) != native:
            raise ValueError(
                f"This checkpoint has learned positional embeddings for {native[1]}x{native[0]} (width x height) "
                f"only, not {width}x{height}: pass height={native[0]}, width={native[1]}, or use a checkpoint with "
                "RoPE only (e.g. CogVideoX1.5-5B-I2V) for other sizes."
            )

    def _model_kwargs(self, latents: torch.Tensor) -> dict:
        """Extra transformer inputs: `ofs` for checkpoints with an ofs embedding (1.5-I2V), as diffusers passes it."""
        if self.transformer.config.get("ofs_embed_dim", None) is None:
            return {}
        return {"ofs": latents.new_full((1,), fill_value=2.0)}

    def inversion_fingerprint(self) -> dict:
        """What a trajectory made by this pipeline depends on, recorded by `invert()` and compared by
        `check_inversion()`: the checkpoint's structure, a digest of some of its weights, and the noise schedule."""
        transformer = {key: self.transformer.config.get(key) for key in _FINGERPRINT_TRANSFORMER_KEYS}
        vae = {key: self.vae.config.get(key) for key in _FINGERPRINT_VAE_KEYS}
        scheduler = self.ddim_scheduler()
        schedule = {key: scheduler.config.get(key) for key in _FINGERPRINT_SCHEDULER_KEYS}
        return {
            "name_or_path": self.name_or_path,
            "transformer": transformer,
            "vae": vae,
            "scheduler": schedule,
            "weights": self._weights_digest(),
        }

    def _weights_digest(self) -> str | None:
        """A digest of the transformer's first weight (CogVideoX's patch embedding), rounded to bfloat16 so that loading
        in another dtype gives the same digest; None where the weights are not in memory (sequential offload keeps
        them elsewhere) or there are none."""
        weight = next(self.transformer.parameters(), None)
        if weight is None or weight.device.type == "meta":
            return None
        values = weight.detach().to("cpu", torch.float32).to(torch.bfloat16).view(torch.int16).numpy()
        return hashlib.sha256(values.tobytes()).hexdigest()[:16]

    def check_inversion(self, inversion: CogVideoXDDIMInversionOutput):
        """Refuse, naming each difference, an inversion made by another checkpoint or noise schedule than this one."""
        recorded = (inversion.settings or {}).get("model")
        if not recorded:
            raise ValueError(
                "This inversion does not record the checkpoint that made it (it was not made by `invert()`), so it "
                "cannot be checked against this pipeline: invert the video again with this pipeline."
            )
        current = self.inversion_fingerprint()
        differences = []
        for part in ("transformer", "vae", "scheduler"):
            for key in sorted(set(recorded.get(part, {})) | set(current[part])):
                before, now = recorded.get(part, {}).get(key), current[part].get(key)
                if before != now:
                    differences.append(f"{part}.{key}: inversion {before!r}, this pipeline {now!r}")
        if not differences and None not in (recorded.get("weights"), current["weights"]):
            if recorded["weights"] != current["weights"]:
                differences.append(
                    f"weights: the inversion was made by other weights ({recorded.get('name_or_path')!r}) than this "
                    f"pipeline's ({current['name_or_path']!r})"
                )
        if differences:
            raise ValueError(
                f"This inversion was made with {recorded.get('name_or_path')!r}, which does not match this pipeline "
                f"({current['name_or_path']!r}): " + "; ".join(differences) + ". Load the checkpoint it was made "
                "with, or invert the video again with this one."
            )

    @torch.no_grad()
    def invert(
        self,
        video: str | os.PathLike | list[PIL.Image.Image] | np.ndarray | torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
        prompt: str | list[str] = "",
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        strength: float = 1.0,
        fixed_point_iterations: int = 0,
        fixed_point_tolerance: float | None = 1e-5,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        resize_mode: str = "crop",
        generator: torch.Generator | list[torch.Generator] | None = None,
        sample_posterior: bool = False,
        image: PIL.Image.Image | np.ndarray | torch.Tensor | None = None,
        image_latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[int, int], None] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        max_sequence_length: int = 226,
        trajectory_device: str | torch.device | None = None,
        mask_words: str | list[str] | list[list[str]] | None = None,
        mask_threshold: float = 0.5,
        mask_blocks: list[int] | None = None,
        mask_steps: float | tuple[float, float] = 1.0,
        mask_refine: bool | None = None,
        return_dict: bool = True,
    ) -> CogVideoXDDIMInversionOutput | tuple:
        r"""
        DDIM-invert a video: run the pipeline's deterministic sampler backwards from its latents to noise.

        Args:
            video (`str`, `os.PathLike`, `list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`, *optional*):
                The source video: a file path (decoded with ffmpeg; the first `num_frames` frames, trimmed to 8k + 1),
                a list of PIL frames, an array `[F, H, W, 3]` (uint8, or float in [0, 1]) or a tensor `[F, 3, H, W]`
                (uint8, or float in [0, 1]); a leading batch axis is accepted. Frames are brought to `height` x
                `width` with `resize_mode` (by ffmpeg while decoding, for a file). Pass `video` or `latents`.
            latents (`torch.Tensor` of shape `[B, F, C, H, W]`, *optional*):
                Clean, scaled video latents; skips the VAE.
            prompt (`str` or `list[str]`, defaults to `""`):
                The prompt the inversion is conditioned on. The published method uses `""`; pass the same text as
                `reference_prompt` when regenerating.
            negative_prompt (`str` or `list[str]`, *optional*):
                Only used with `guidance_scale > 1`.
            num_inference_steps (`int`, defaults to 50):
                Number of DDIM steps; regenerate with the same number so the trajectory lines up.
            guidance_scale (`float`, defaults to 1.0):
                1.0 runs one transformer row per step. Values above 1 run classifier-free guidance during inversion
                (two rows per step), as the published recipe does; with an empty prompt that only doubles the cost.
            strength (`float`, defaults to 1.0):
                Invert only the first `strength` fraction of the schedule (the last `int(num_inference_steps *
                strength)` denoising timesteps), for SDEdit-style editing that keeps more of the source. Regenerate
                with the same `strength` and `num_inference_steps`.
            fixed_point_iterations (`int`, defaults to 0):
                Extra model evaluations per step that refine each inverse step towards the exact inverse of the
                forward step (a fixed point, solved with Anderson mixing). 0 is plain DDIM inversion, whose round trip
                drifts because it evaluates the model at the wrong end of each step; 2 to 4 make the round trip exact
                to about 1e-4 with an ideal denoiser (see docs/inversion.md).
            fixed_point_tolerance (`float`, *optional*, defaults to 1e-5):
                Stop refining a step once the relative change of the latent is below this; `None` always runs
                `fixed_point_iterations` refinements.
            height (`int`, *optional*), width (`int`, *optional*):
                Size the frames are resized to; defaults to `default_video_size(source height, source width)`: the
                native size (720x480), or for CogVideoX 1.5 the source's aspect and orientation at about 1360x768.
            num_frames (`int`, *optional*):
                With a file path, the most frames to read; defaults to the transformer's `sample_frames` (49).
                `read_source_video` reads other selections (evenly spread over the clip, skips, stride).
            resize_mode (`str`, defaults to `"crop"`):
                How frames of another aspect reach `height` x `width`: `"crop"` scales them to cover it and cuts the
                centre, `"pad"` scales them to fit and adds black bars, `"stretch"` scales each axis on its own.
                `image` is resized the same way.
            generator (`torch.Generator`, *optional*):
                Used only with `sample_posterior=True`.
            sample_posterior (`bool`, defaults to `False`):
                Encode with a sample of the VAE posterior instead of its mode.
            image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`, *optional*):
                Image-to-video checkpoints only: the conditioning image; defaults to the first source frame.
            image_latents (`torch.Tensor`, *optional*):
                Image-to-video checkpoints only: ready conditioning latents (e.g. a previous `inv.image_latents`).
            prompt_embeds, negative_prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed text embeddings, as in `__call__`.
            attention_kwargs (`dict`, *optional*):
                Passed to the attention processors.
            callback_on_step_end (`Callable`, *optional*):
                Called after every inverse step as `callback_on_step_end(self, step, timestep, callback_kwargs)`;
                `step` counts inverse steps from 0 (least noisy first).
            callback_on_step_end_tensor_inputs (`list`, defaults to `["latents"]`):
                Tensors passed in `callback_kwargs`.
            max_sequence_length (`int`, defaults to 226):
                Text length of the prompt embeddings.
            trajectory_device (`str` or `torch.device`, *optional*):
                Where to keep the trajectory (in the model's dtype). Defaults to the execution device; `"cpu"` keeps
                it in (pinned, when CUDA is available) host memory, which `__call__` copies to the device one step at
                a time (49 frames of 720x480 at 50 steps in bf16: 50 x 13 x 16 x 60 x 90 x 2 bytes = 112 MiB).
            mask_words (`str`, `list[str]` or `list[list[str]]`, *optional*):
                Words (or phrases) of `prompt`, e.g. `["horse"]`, or one list per prompt: record, on the inversion's own forward passes, the
                joint attention the video tokens give to their text tokens, and return it as `attention_map` and,
                thresholded, as the edit `mask` (pass it to `__call__` as `mask`). Costs about one extra `Q K^T` per
                recorded block and step; no extra transformer pass.
            mask_threshold (`float`, defaults to 0.5):
                The mask is where the attention map, scaled to [0, 1] per video and upsampled to pixels, exceeds this.
                Lower covers more.
            mask_blocks (`list[int]`, *optional*):
                Transformer blocks whose attention is recorded (heads averaged, blocks summed); default: the last
                block, which localised the words best on the toy model (see docs/masks.md).
            mask_steps (`float` or `(float, float)`, defaults to 1.0):
                The steps whose attention is recorded, as fractions of the denoising order like `__call__`'s
                `reference_steps` (`0.5`: the noisiest half); default: all.
            mask_refine (`bool`, *optional*):
                Snap the attention map (one value per 16x16-pixel token) to the source frames' edges with a guided
                filter (radius: one token) before thresholding. Needs the source pixels, so `video`; the default
                (`None`) refines when `video` is given and not with `latents`.
            return_dict (`bool`, defaults to `True`):
                Return a [`CogVideoXDDIMInversionOutput`] instead of a tuple `(latents, trajectory, timesteps)`.

        Returns:
            [`CogVideoXDDIMInversionOutput`] or `tuple`.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        if fixed_point_iterations < 0:
            raise ValueError(f"`fixed_point_iterations` must be >= 0, got {fixed_point_iterations}.")
        if (video is None) == (latents is None):
            raise ValueError("Pass exactly one of `video` (frames or a file path) or `latents` (clean video latents).")
        if latents is not None and latents.ndim != 5:
            raise ValueError(
                f"`latents` must be [B, F, C, H, W] clean video latents, got shape {tuple(latents.shape)}."
            )

        check_resize_mode(resize_mode)
        if latents is not None:  # the latents fix the size
            height, width = (size * self.vae_scale_factor_spatial for size in latents.shape[3:])
        else:
            if isinstance(video, (str, os.PathLike)):
                source = probe_video(video)  # the header only: a missing or broken file fails before any model work
                source_size = (source.height, round(source.width * source.pixel_aspect_ratio))
            else:
                video = frames_to_tensor(video)
                source_size = tuple(video.shape[-2:])
            default_height, default_width = self.default_video_size(*source_size)
            height, width = height or default_height, width or default_width
        if prompt_embeds is not None:
            prompt = None
        self.check_inputs(
            prompt,
            height,
            width,
            negative_prompt,
            callback_on_step_end_tensor_inputs,
            prompt_embeds,
            negative_prompt_embeds,
        )
        self.check_size_for_positional_embeddings(height, width)
        recorders = {}
        if mask_words is not None:  # checked here, before any model work
            if prompt is None:
                raise ValueError("`mask_words` are found in the prompt's text: pass `prompt`, not `prompt_embeds`.")
            if not 0 < mask_threshold < 1:
                raise ValueError(f"`mask_threshold` must be in (0, 1), got {mask_threshold}.")
            if mask_refine and video is None:
                raise ValueError(
                    "`mask_refine=True` snaps the mask to the source frames' edges: pass `video`, not `latents` (or "
                    "leave `mask_refine` unset)."
                )
            self.reference_step_window(mask_steps, num_inference_steps, "mask_steps")  # checks the window
            recorders = self.text_attention_recorders(
                mask_blocks, self.word_token_weights(prompt, mask_words, max_sequence_length)
            )
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        device = self._execution_device
        do_classifier_free_guidance = guidance_scale > 1.0

        # 1. Encode the prompt (one row per video unless guidance is on)
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            negative_prompt,
            do_classifier_free_guidance,
            num_videos_per_prompt=1,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_sequence_length,
            device=device,
        )
        dtype = prompt_embeds.dtype

        # 2. Clean latents (and image-to-video conditioning)
        fps = source_frames = None
        if latents is None:
            video, fps = self.preprocess_source_video(video, height, width, num_frames, resize_mode)
            source_frames = video if mask_words is not None and mask_refine is not False else None
            latents = self.prepare_video_latents(video, dtype, device, generator, sample_posterior)
            if image is None and image_latents is None and self.is_image_to_video:
                image = video[:, :, 0]  # the first source frame, already resized and in [-1, 1]
        latents = latents.to(device=device, dtype=dtype)
        batch_size = latents.shape[0]
        if self.is_image_to_video:
            if image_latents is None:
                if image is None:
                    raise ValueError(
                        "This is an image-to-video checkpoint: with `latents`, also pass `image` (the first frame) or "
                        "`image_latents`."
                    )
                if not isinstance(image, torch.Tensor) or image.ndim != 4:  # 4-D: already preprocessed, [-1, 1]
                    image = resize_frames(frames_to_tensor([image]), height, width, resize_mode)[:, 0] * 2 - 1
                image_latents = self.prepare_image_latents(
                    image, latents.shape[1], dtype, device, generator, sample_posterior
                )
            image_latents = image_latents.to(device=device, dtype=dtype)
            if image_latents.shape != latents.shape:
                raise ValueError(
                    f"`image_latents` has shape {tuple(image_latents.shape)}, the video latents {tuple(latents.shape)}: "
                    "they must match."
                )
        elif image is not None or image_latents is not None:
            raise ValueError("`image`/`image_latents` are for image-to-video checkpoints; this one is text-to-video.")
        if prompt_embeds.shape[0] != batch_size:
            if prompt_embeds.shape[0] != 1:
                raise ValueError(
                    f"{prompt_embeds.shape[0]} prompts for {batch_size} videos: pass one prompt, or one per video."
                )
            prompt_embeds = prompt_embeds.expand(batch_size, -1, -1)
            if negative_prompt_embeds is not None:
                negative_prompt_embeds = negative_prompt_embeds.expand(batch_size, -1, -1)
        if do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)

        # 3. The forward sampler's timesteps (cut to `strength`); inversion walks them from the last to the first.
        scheduler = self.ddim_scheduler()
        timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, device)
        timesteps = self.cut_timesteps(timesteps, strength)
        self._num_timesteps = len(timesteps)
        padding = self.padding_frames(latents.shape[1])
        image_rotary_emb = self._rotary_embeddings(self.pad_frames(latents, padding), device)
        model_kwargs = self._model_kwargs(latents)
        rows = 2 if do_classifier_free_guidance else 1
        image_input = None if image_latents is None else torch.cat([self.pad_frames(image_latents, padding)] * rows)

        def predict(sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            latent_model_input = torch.cat([self.pad_frames(sample, padding)] * rows)
            if image_input is not None:
                latent_model_input = torch.cat([latent_model_input, image_input], dim=2)
            noise_pred = self.transformer(
                hidden_states=latent_model_input,
                encoder_hidden_states=prompt_embeds,
                timestep=t.expand(latent_model_input.shape[0]),
                image_rotary_emb=image_rotary_emb,
                attention_kwargs=attention_kwargs,
                return_dict=False,
                **model_kwargs,
            )[0]
            noise_pred = noise_pred[:, padding:].float()
            if do_classifier_free_guidance:
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
            return noise_pred

        # 4. Inversion loop: trajectory[i] is the latent at the level of timesteps[i].
        clean_latents = latents
        trajectory = [None] * len(timesteps)
        model_evaluations = 0
        mask_window = self.reference_step_window(mask_steps, len(timesteps), "mask_steps")
        for recorder in recorders.values():  # the chosen blocks record the words' attention on these same passes
            recorder.text_token_weights = recorder.text_token_weights.expand(batch_size, -1)
        with self.progress_bar(total=len(timesteps)) as progress_bar, self.attention_processors_swapped(recorders):
            for step, i in enumerate(reversed(range(len(timesteps)))):
                if self.interrupt:
                    raise RuntimeError("Inversion was interrupted; the trajectory is incomplete.")
                t = timesteps[i]
                self._current_timestep = t
                for recorder in recorders.values():
                    recorder.recording = i in mask_window
                latents, evaluations = self._solve_inverse_step(
                    lambda sample: predict(sample, t), t, latents, fixed_point_iterations, fixed_point_tolerance
                )
                model_evaluations += evaluations
                trajectory[i] = self._store(latents, trajectory_device)

                if callback_on_step_end is not None:
                    step_locals = locals()
                    callback_kwargs = {k: step_locals[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, step, t, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                    trajectory[i] = self._store(latents, trajectory_device)
                progress_bar.update()

        self._current_timestep = None
        trajectory = torch.stack(trajectory)
        attention_map = mask = None
        if recorders:
            attention_map = self.word_attention_map(list(recorders.values()), clean_latents.shape)
            mask = self.mask_from_attention_map(attention_map, mask_threshold, clean_latents.shape, source_frames)
        self.maybe_free_model_hooks()

        if not return_dict:
            return (clean_latents, trajectory, timesteps)
        return CogVideoXDDIMInversionOutput(
            latents=clean_latents,
            trajectory=trajectory,
            timesteps=timesteps,
            fps=fps,
            model_evaluations=model_evaluations,
            image_latents=image_latents,
            settings={
                "model": self.inversion_fingerprint(),
                "prompt": prompt,
                "negative_prompt": negative_prompt if do_classifier_free_guidance else None,
                "num_inference_steps": num_inference_steps,
                "strength": strength,
                "guidance_scale": guidance_scale,
                "fixed_point_iterations": fixed_point_iterations,
                "height": clean_latents.shape[3] * self.vae_scale_factor_spatial,
                "width": clean_latents.shape[4] * self.vae_scale_factor_spatial,
                "num_frames": (clean_latents.shape[1] - 1) * self.vae_scale_factor_temporal + 1,
                "timesteps": timesteps.tolist(),
                **({"mask_words": mask_words, "mask_threshold": mask_threshold} if recorders else {}),
            },
            mask=mask,
            attention_map=attention_map,
        )

    @staticmethod
    def _store(latents: torch.Tensor, device: str | torch.device | None) -> torch.Tensor:
        """A trajectory entry on `device` (default: where it is), pinned on the host when CUDA is there to copy to."""
        if device is None or torch.device(device) == latents.device:
            return latents
        stored = latents.to(device)
        if stored.device.type == "cpu" and torch.cuda.is_available():
            stored = stored.pin_memory()
        return stored

    @staticmethod
    def reference_step_window(
        reference_steps: float | tuple[float, float], num_steps: int, name: str = "reference_steps"
    ) -> range:
        """Indices of the denoising steps in a window given as fractions (`reference_steps`, `mask_steps`)."""
        start, end = (0.0, reference_steps) if isinstance(reference_steps, (int, float)) else reference_steps
        if not 0 <= start < end <= 1:
            raise ValueError(
                f"`{name}` must be a fraction in (0, 1] or a window (start, end) with 0 <= start < end <= 1, "
                f"got {reference_steps!r}."
            )
        return range(round(start * num_steps), round(end * num_steps))

    def reference_processors(self, reference_blocks: list[int] | None) -> dict[str, CogVideoXRefAttnProcessor]:
        """One processor per attention layer; layers outside `reference_blocks` pass the reference rows through."""
        names = list(self.transformer.attn_processors)
        blocks = range(len(names)) if reference_blocks is None else reference_blocks
        unknown = [b for b in blocks if not 0 <= b < len(names)]
        if unknown:
            raise ValueError(
                f"`reference_blocks` {unknown} out of range: the transformer has blocks 0..{len(names) - 1}."
            )
        return {
            name: CogVideoXRefAttnProcessor(attend_to_reference=index in blocks) for index, name in enumerate(names)
        }

    @contextlib.contextmanager
    def attention_processors_swapped(self, processors: dict):
        """Install `processors` (by attention layer name) for the duration of a `with` block, then put back what was
        installed before. Nothing happens for an empty dict."""
        if not processors:
            yield
            return
        installed = self.transformer.attn_processors
        self.transformer.set_attn_processor({**installed, **processors})
        try:
            yield
        finally:
            self.transformer.set_attn_processor(installed)

    def text_attention_recorders(
        self, blocks: list[int] | None, text_token_weights: torch.Tensor
    ) -> dict[str, CogVideoXTextAttentionRecorder]:
        """Recording processors for the attention layers of `blocks` (default: the last block)."""
        names = list(self.transformer.attn_processors)
        blocks = [len(names) - 1] if blocks is None else list(blocks)
        unknown = [b for b in blocks if not 0 <= b < len(names)]
        if unknown or not blocks:
            raise ValueError(f"`mask_blocks` {blocks} must be blocks of the transformer, 0..{len(names) - 1}.")
        return {names[b]: CogVideoXTextAttentionRecorder(text_token_weights) for b in sorted(set(blocks))}

    def word_attention_map(
        self, recorders: list[CogVideoXTextAttentionRecorder], latents_shape: tuple[int, ...]
    ) -> torch.Tensor:
        """The recorders' attention summed, laid out per latent frame and token `[B, F, H / p, W / p]` (1.5's
        temporal patches spread over their frames, padding frames dropped) and scaled to [0, 1] per video."""
        if any(recorder.attention is None for recorder in recorders):
            raise ValueError("No attention was recorded: `mask_steps` selects no step of this inversion.")
        attention = sum(recorder.attention.to(recorders[0].attention.device) for recorder in recorders)
        batch_size, latent_frames, _, latent_height, latent_width = latents_shape
        patch_size, patch_size_t = self.transformer.config.patch_size, self.transformer.config.patch_size_t or 1
        padding = self.padding_frames(latent_frames)
        grid = attention.reshape(
            batch_size,
            (latent_frames + padding) // patch_size_t,
            latent_height // patch_size,
            latent_width // patch_size,
        )
        grid = grid.repeat_interleave(patch_size_t, dim=1)[:, padding:]
        low, high = grid.amin(dim=(1, 2, 3), keepdim=True), grid.amax(dim=(1, 2, 3), keepdim=True)
        return ((grid - low) / (high - low).clamp_min(torch.finfo(grid.dtype).tiny)).cpu()

    def mask_from_attention_map(
        self,
        attention_map: torch.Tensor,
        threshold: float,
        latents_shape: tuple[int, ...],
        source_frames: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The edit mask `[B, F, H, W]` (bool) of an attention map `[B, F_latent, h, w]`: upsampled to the video's
        frames and pixels, snapped to the edges of `source_frames` (`[B, C, F, H, W]` in [-1, 1]) with a guided
        filter of one token's radius when they are given, and thresholded."""
        num_frames = (latents_shape[1] - 1) * self.vae_scale_factor_temporal + 1
        height, width = (size * self.vae_scale_factor_spatial for size in latents_shape[3:])
        soft = attention_map_to_video(attention_map, num_frames, height, width, self.vae_scale_factor_temporal)
        if source_frames is not None:
            radius = self.vae_scale_factor_spatial * self.transformer.config.patch_size
            guide = ((source_frames.to(soft.device).float() + 1) / 2).clamp(0, 1).transpose(1, 2)  # [B, F, C, H, W]
            frames_per_chunk = 8  # bounds the 3x3 systems held at once (720x480: 8 x 3 MB x 9 values)
            soft = torch.stack(
                [
                    torch.cat(
                        [
                            guided_filter(
                                video_guide[start : start + frames_per_chunk],
                                video_map[start : start + frames_per_chunk],
                                radius,
                            )
                            for start in range(0, num_frames, frames_per_chunk)
                        ]
                    )
                    for video_guide, video_map in zip(guide, soft)
                ]
            )
        return soft > threshold

    def prepare_mask(
        self,
        mask,
        num_frames: int,
        height: int,
        width: int,
        batch_size: int = 1,
        dilation: int = 0,
        feather: int = 0,
        resize_mode: str | None = None,
    ) -> torch.Tensor:
        """
        A video mask as floats in [0, 1], `[B or 1, F, H, W]` at the video's frame count and size (1 = may change):
        read or converted, checked, resized like the source frames, then grown by `dilation` pixels and feathered
        over `feather` pixels. Every check runs here, before any model work.

        `mask` is a mask video file (read black and white), a list of PIL images (converted to grayscale), or an
        array / tensor `[F, H, W]` or `[B, F, H, W]` (or `[H, W]`: the same mask for every frame): bool, uint8 (0 to
        255) or floats in [0, 1]. Any size with the video's aspect ratio is resized to `height` x `width`; another
        aspect ratio only with `resize_mode` (the source's, e.g. `invert()`'s default `"crop"`).
        """
        if isinstance(mask, (str, os.PathLike)):
            available = count_frames(mask)  # from the packet list: a short mask is named as such, not as a video
            if available < num_frames:
                raise ValueError(
                    f"The mask has {available} frames but the video has {num_frames}: pass one mask frame per video "
                    "frame."
                )
            mask = read_mask_video(
                mask, max_num_frames=num_frames, temporal_compression=self.vae_scale_factor_temporal
            )
        elif isinstance(mask, (list, tuple)):
            if len(mask) == 0:
                raise ValueError("`mask` is an empty list: pass one mask image per video frame.")
            mask = np.stack(
                [np.asarray(m.convert("L")) if isinstance(m, PIL.Image.Image) else np.asarray(m) for m in mask]
            )
        elif not isinstance(mask, (np.ndarray, torch.Tensor)):
            raise TypeError(
                "`mask` must be a mask video file, a list of PIL images, or an array/tensor [F, H, W], got "
                f"{type(mask)}."
            )
        mask = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask).detach().to("cpu")
        if mask.dtype == torch.bool:
            mask = mask.float()
        elif mask.dtype == torch.uint8:
            if mask.max() <= 1:
                raise ValueError(
                    "`mask` is uint8 with values 0 and 1 only; uint8 masks are read as 0 to 255 (like images). Pass "
                    "`mask.astype(bool)` or `mask * 255`."
                )
            mask = mask.float() / 255
        elif mask.is_floating_point():
            mask = mask.float()
            if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
                raise ValueError(
                    f"`mask` values must be in [0, 1] (1 = may change), got [{mask.min().item():g}, "
                    f"{mask.max().item():g}]."
                )
        else:
            raise TypeError(f"`mask` must be bool, uint8 or float, got {mask.dtype}.")
        if mask.ndim == 2:
            mask = mask.expand(num_frames, *mask.shape)
        if mask.ndim == 3:
            mask = mask.unsqueeze(0)
        if mask.ndim != 4 or mask.shape[-1] in (1, 3, 4):
            raise ValueError(
                f"`mask` must be [F, H, W] or [B, F, H, W] (one value per pixel, no channel axis), got shape "
                f"{tuple(mask.shape)}."
            )
        if mask.shape[1] != num_frames:
            raise ValueError(
                f"The mask has {mask.shape[1]} frames but the video has {num_frames}: pass one mask frame per video "
                f"frame (the frames the source was inverted from)."
            )
        if mask.shape[0] not in (1, batch_size):
            raise ValueError(
                f"The mask holds {mask.shape[0]} videos for {batch_size}: pass one mask, or one per video."
            )
        mask_height, mask_width = mask.shape[2:]
        if (mask_height, mask_width) != (height, width) and not self._same_aspect(
            "mask", mask_height, mask_width, height, width, resize_mode
        ):
            mask = resize_frames(mask.unsqueeze(2), height, width, resize_mode).squeeze(2)  # as the source was
        elif (mask_height, mask_width) != (height, width):
            # area averaging when shrinking (exact for whole factors), bilinear when enlarging
            shrink = mask_height > height
            mask = F.interpolate(
                mask,
                size=(height, width),
                mode="area" if shrink else "bilinear",
                align_corners=None if shrink else False,
            ).clamp(0, 1)
        empty = [index for index, video_mask in enumerate(mask) if not video_mask.any()]
        if empty:
            raise ValueError(
                f"The mask of video {empty} is 0 everywhere: nothing may change, so the edit would return the source. "
                "Mark with 1 (white) the pixels that may change."
            )
        if dilation < 0 or feather < 0:
            raise ValueError(f"`mask_dilation` and `mask_feather` are pixels >= 0, got {dilation} and {feather}.")
        return feather_mask(grow_mask(mask, dilation), feather)

    @staticmethod
    def _same_aspect(name: str, source_height: int, source_width: int, height: int, width: int, resize_mode) -> bool:
        """Whether frames of `name` have the video's aspect ratio (to a pixel). When they do not, `resize_mode` must
        say how the source was brought to the video's size: guessing would misplace the region."""
        if abs(source_height * width - source_width * height) <= max(width, height):
            return True
        if resize_mode is None:
            raise ValueError(
                f"The {name} is {source_width}x{source_height} (width x height) but the video is {width}x{height}: "
                "another aspect ratio cannot be resized without knowing how the source was. Pass "
                "`mask_resize_mode` (the `resize_mode` the source was inverted with, 'crop' by default), or frames "
                f"of the video's aspect ratio (e.g. resized to {width}x{height})."
            )
        check_resize_mode(resize_mode)
        return False

    def word_token_weights(
        self, prompt: str | list[str], words: str | list[str] | list[list[str]], max_sequence_length: int
    ):
        """`[P, L]`: per prompt, 1 on the text tokens that spell any of `words` (whole words or phrases, any case;
        or one list of words per prompt), found with the tokenizer's character offsets, as `encode_prompt`
        tokenizes."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        words = [words] if isinstance(words, str) else list(words)
        if words and all(isinstance(entry, (list, tuple)) for entry in words):
            if len(words) != len(prompts):
                raise ValueError(
                    f"`mask_words` holds {len(words)} lists of words for {len(prompts)} prompts: pass one list per "
                    "prompt, or one list for all."
                )
            per_prompt = [list(entry) for entry in words]
        else:
            per_prompt = [words] * len(prompts)
        if not all(entry and all(isinstance(word, str) and word.strip() for word in entry) for entry in per_prompt):
            raise ValueError(f"`mask_words` must be words of the inversion prompt, got {words!r}.")
        encoding = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_offsets_mapping=True,
        )
        weights = torch.zeros(len(prompts), max_sequence_length)
        for row, (text, offsets, words) in enumerate(zip(prompts, encoding["offset_mapping"], per_prompt)):
            for word in words:
                spans = [
                    m.span() for m in re.finditer(rf"(?<!\w){re.escape(word.strip())}(?!\w)", text, re.IGNORECASE)
                ]
                if not spans:
                    raise ValueError(
                        f"Mask word {word!r} is not in the inversion prompt {text!r}: `mask_words` must be words of "
                        "the prompt the video is inverted with."
                    )
                tokens = [
                    index
                    for index, (start, end) in enumerate(offsets)
                    if end > start and any(start < span_end and end > span_start for span_start, span_end in spans)
                ]
                if not tokens:
                    raise ValueError(
                        f"Mask word {word!r} of {text!r} lies beyond the {max_sequence_length} text tokens the prompt "
                        "is cut to: raise `max_sequence_length` or move the word forward."
                    )
                weights[row, tokens] = 1.0
        return weights

    def check_reference_inputs(
        self,
        reference_latents: torch.Tensor,
        reference_timesteps: torch.Tensor | None,
        reference_mode: str,
        timesteps: torch.Tensor,
        latents_shape: tuple[int, ...],
    ):
        if reference_mode not in ("shared", "paired"):
            raise ValueError(f"`reference_mode` must be 'shared' or 'paired', got {reference_mode!r}.")
        if not isinstance(reference_latents, torch.Tensor) or reference_latents.ndim != 6:
            raise ValueError(
                "`reference_latents` must be a trajectory tensor [T, B, F, C, H, W] in denoising order, e.g. "
                "`pipe.invert(...).trajectory`."
            )
        if reference_latents.shape[0] != len(timesteps):
            raise ValueError(
                f"`reference_latents` has {reference_latents.shape[0]} steps but this call runs {len(timesteps)}: "
                f"call with `num_inference_steps={reference_latents.shape[0]}`, or invert again with "
                f"`num_inference_steps={len(timesteps)}`."
            )
        if reference_timesteps is not None and not torch.equal(
            torch.as_tensor(reference_timesteps).cpu().long(), timesteps.cpu().long()
        ):
            raise ValueError(
                f"`reference_timesteps` {torch.as_tensor(reference_timesteps).tolist()} differ from this call's "
                f"timesteps {timesteps.tolist()}: invert and regenerate with the same scheduler and step count."
            )
        if reference_latents.shape[1] == 1 and latents_shape[0] > 1:  # one video, several prompts
            latents_shape = (1, *latents_shape[1:])
        if tuple(reference_latents.shape[1:]) != tuple(latents_shape):
            raise ValueError(
                f"Each `reference_latents` step has shape {tuple(reference_latents.shape[1:])} but the sample latents "
                f"are {tuple(latents_shape)} [B, F, C, H, W]: use the same height, width, num_frames and number of "
                "prompts as the inversion, or leave height/width/num_frames unset to take them from the reference."
            )

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        timesteps: list[int] | None = None,
        guidance_scale: float = 6,
        use_dynamic_cfg: bool = False,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.FloatTensor | None = None,
        prompt_embeds: torch.FloatTensor | None = None,
        negative_prompt_embeds: torch.FloatTensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[int, int], None] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        max_sequence_length: int = 226,
        reference_latents: torch.Tensor | None = None,
        reference_timesteps: torch.Tensor | None = None,
        reference_prompt: str | list[str] = "",
        reference_prompt_embeds: torch.Tensor | None = None,
        reference_mode: str = "shared",
        strength: float = 1.0,
        image: PIL.Image.Image | np.ndarray | torch.Tensor | None = None,
        image_latents: torch.Tensor | None = None,
        reference_image_latents: torch.Tensor | None = None,
        reference_steps: float | tuple[float, float] = 1.0,
        reference_blocks: list[int] | None = None,
        reference_weight: float = 1.0,
        mask: str | os.PathLike | list[PIL.Image.Image] | np.ndarray | torch.Tensor | None = None,
        mask_steps: float | tuple[float, float] = 1.0,
        mask_dilation: int = 0,
        mask_feather: int = 0,
        mask_latent_dilation: int = 1,
        mask_resize_mode: str | None = None,
        source_latents: torch.Tensor | None = None,
        paste_back: bool = False,
        source_video: str | os.PathLike | list[PIL.Image.Image] | np.ndarray | torch.Tensor | None = None,
    ) -> CogVideoXPipelineOutput | tuple:
        r"""
        Generate a video; with `reference_latents`, regenerate it guided by an inverted source video.

        Takes every argument of [`CogVideoXPipeline.__call__`], with the same meaning and defaults; with
        `reference_latents=None` the result is the same as `CogVideoXPipeline`'s, bit for bit.

        Args:
            reference_latents (`torch.Tensor` of shape `[T, B, F, C, H, W]`, *optional*):
                An inversion trajectory in denoising order (`pipe.invert(...).trajectory`). Step `i` runs
                `reference_latents[i]` through the transformer beside the sample, and the sample's attention also
                reads its keys and values. Its length must be the number of steps of this call, and its shape sets
                `height`, `width` and `num_frames` when they are not given. Its batch holds one video per prompt, or
                one video for all prompts: several prompts then edit the same video, and in `"shared"` mode they share
                one reference row per step (2N + 1 rows for N prompts with guidance instead of 3N); `latents` and
                `image_latents` with a batch of one then serve every prompt. Start from `latents=trajectory[0]` to
                follow the source closely, or from fresh noise (`latents=None`) as the published method does.
            reference_timesteps (`torch.Tensor`, *optional*):
                The inversion's `timesteps`; when given they must equal this call's timesteps.
            reference_prompt (`str` or `list[str]`, defaults to `""`):
                Text of the reference rows: the prompt the video was inverted with.
            reference_prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed embeddings of `reference_prompt`.
            reference_mode (`str`, defaults to `"shared"`):
                `"shared"`: one reference row per video and step, read by both guidance branches (3 rows per step
                with guidance). `"paired"`: the published layout, one reference row per guidance branch carrying that
                branch's text (4 rows per step); `reference_prompt` is not used.
            strength (`float`, defaults to 1.0):
                Run only the last `strength` fraction of the denoising timesteps, starting from `latents` at that
                level, e.g. `pipe.invert(..., strength=s).trajectory[0]` (SDEdit / video-to-video style editing).
            image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`, *optional*):
                Image-to-video checkpoints: the conditioning image, as in `CogVideoXImageToVideoPipeline`.
            image_latents (`torch.Tensor`, *optional*):
                Image-to-video checkpoints: ready conditioning latents, e.g. `inv.image_latents` (regenerates with
                exactly the conditioning the inversion used).
            reference_image_latents (`torch.Tensor` of shape `[B, F, C, H, W]`, *optional*):
                Image-to-video checkpoints: the conditioning of the reference rows, one per reference video. By
                default they take the sample's (`image` / `image_latents`); when the edit starts from an edited
                first frame, pass `inv.image_latents` so that the reference rows are conditioned as the trajectory
                was inverted (on the source's first frame).
            reference_steps (`float` or `(float, float)`, defaults to 1.0):
                The step window where the reference is used, as fractions of the steps: `0.5` is the first half (the
                noisiest steps, which set layout and motion), `(0.2, 0.6)` the steps from 20% to 60%. Outside the
                window the reference rows are not computed at all, so those steps cost what plain generation costs;
                a shorter window is cheaper and lets the prompt change more of the details.
            reference_blocks (`list[int]`, *optional*):
                Indices of the transformer blocks whose attention reads the reference (default: all). The reference
                rows still run through every block, so this saves little compute; fewer blocks keep less of the source.
            reference_weight (`float`, defaults to 1.0):
                Scales the attention mass sample queries give to the reference keys (1 is plain joint attention).
                Below 1 the edit follows the prompt more and the source less; above 1 the reverse; 0 ignores the
                reference (its rows are still computed: use `reference_steps` to save compute).
            mask (`str`, `list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`, *optional*):
                Limits the edit to a region: 1 (white) where the video may change, 0 where it must stay the source.
                A mask video file, a list of PIL masks, or an array/tensor `[F, H, W]` or `[B, F, H, W]` (bool, uint8
                or floats in [0, 1]; `[H, W]` for one mask for all frames), such as `inv.mask` from
                `invert(..., mask_words=...)`; one frame per video frame, at the video's size or any size with its
                aspect ratio (resized like the source). It is reduced to the latent grid (a latent cell takes the
                largest value of the pixels and frames it stands for: latent frame 0 is pixel frame 0, latent frame k
                pixel frames 4k-3 .. 4k), and after each step in `mask_steps` the latents outside it are set to the
                source's: the inverted latent at the next noise level (`reference_latents[i + 1]`), then, after the
                last step, `source_latents`. Needs `reference_latents`.
            mask_steps (`float` or `(float, float)`, defaults to 1.0):
                The steps after which the latents are blended, as fractions of the steps like `reference_steps`: 1.0
                blends after every step (outside a hard mask the result is then exactly the source latents); `0.5`
                only over the noisiest half, leaving the last steps free to smooth the seams.
            mask_dilation (`int`, defaults to 0):
                Pixels by which to grow the mask first (a margin for motion or soft edges).
            mask_feather (`int`, defaults to 0):
                Pixels over which the mask falls from 1 to 0 around its edge (the inside stays 1): soft seams in the
                latent blending and in `paste_back`.
            mask_latent_dilation (`int`, defaults to 1):
                Latent cells by which the latent mask is grown beyond the cells the mask touches. The VAE spreads a
                pixel into neighbouring latents, so without this margin the source's latents next to the region pull
                its edge back (toy colour edits with the true mask in shared mode: 58% succeed without it, 68% with
                it; in paired mode 100% and 98%, with 2-3 dB less background without paste-back: see docs/masks.md).
                `paste_back` is not affected.
            mask_resize_mode (`str`, *optional*):
                How a `mask` or `source_video` of another aspect ratio than the video was brought to its size: the
                `resize_mode` the source was inverted with (`"crop"`, `"pad"` or `"stretch"`). Without it, only
                frames of the video's aspect ratio are accepted (any size), so that a region is never misplaced.
            source_latents (`torch.Tensor` of shape `[B, F, C, H, W]`, *optional*):
                The clean source latents, `inv.latents`: where blending ends after the last step (at any `strength`
                the trajectory stops one step short of them), and what `paste_back` decodes without `source_video`.
            paste_back (`bool`, defaults to `False`):
                After decoding, composite the source outside the (dilated, feathered) pixel mask: `source_video`
                when given, otherwise the decoded `source_latents` (the VAE's reconstruction of the source).
            source_video (`str`, `list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`, *optional*):
                The source frames for `paste_back`, in any form `invert(video=...)` takes (resized to `height` x
                `width`); outside the mask the output is then the source's pixels.

        Image-to-video checkpoints (in_channels twice out_channels) are served by the same class: with `image` and
        `reference_latents=None` the result is `CogVideoXImageToVideoPipeline`'s, bit for bit. For CogVideoX 1.5,
        the latent frames that temporal patching needs are padded in front as diffusers does and dropped from every
        output, `output_type="latent"` included (diffusers returns them there), so `invert()` and `__call__`
        latents always have the video's frame count.

        Examples:

        Returns:
            [`~pipelines.cogvideo.pipeline_output.CogVideoXPipelineOutput`] or `tuple`: the generated frames.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        if reference_latents is not None and reference_latents.ndim == 6:
            # The reference fixes the latent size: default the pixel size to it.
            _, _, ref_frames, _, ref_height, ref_width = reference_latents.shape
            height = height or ref_height * self.vae_scale_factor_spatial
            width = width or ref_width * self.vae_scale_factor_spatial
            num_frames = num_frames or (ref_frames - 1) * self.vae_scale_factor_temporal + 1
        height = height or self.transformer.config.sample_height * self.vae_scale_factor_spatial
        width = width or self.transformer.config.sample_width * self.vae_scale_factor_spatial
        num_frames = num_frames or self.transformer.config.sample_frames

        num_videos_per_prompt = 1

        # 1. Check inputs. Raise error if not correct
        self.check_inputs(
            prompt,
            height,
            width,
            negative_prompt,
            callback_on_step_end_tensor_inputs,
            prompt_embeds,
            negative_prompt_embeds,
        )
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False

        # 2. Default call parameters
        if prompt is not None and isinstance(prompt, str):
            batch_size = 1
        elif prompt is not None and isinstance(prompt, list):
            batch_size = len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]

        # A local edit's mask and source pixels are read and checked here, before any model work.
        pixel_mask = source_pixels = None
        if mask is not None:
            if reference_latents is None:
                raise ValueError(
                    "`mask` keeps the source outside it by following the inverted trajectory: pass "
                    "`reference_latents=inv.trajectory` (and `source_latents=inv.latents`)."
                )
            self.reference_step_window(mask_steps, num_inference_steps, "mask_steps")  # checks the window
            pixel_mask = self.prepare_mask(
                mask, num_frames, height, width, batch_size, mask_dilation, mask_feather, mask_resize_mode
            )
            if mask_latent_dilation < 0:
                raise ValueError(
                    f"`mask_latent_dilation` is a number of latent cells >= 0, got {mask_latent_dilation}."
                )
            if source_latents is None:
                raise ValueError(
                    "`mask` needs `source_latents=inv.latents`: the clean source latents that the last step blends to."
                )
            if tuple(source_latents.shape) != tuple(reference_latents.shape[1:]):
                raise ValueError(
                    f"`source_latents` has shape {tuple(source_latents.shape)} but each reference step is "
                    f"{tuple(reference_latents.shape[1:])}: pass the `latents` of the same inversion."
                )
        if paste_back:
            if pixel_mask is None:
                raise ValueError("`paste_back` composites the source outside a mask: pass `mask` too.")
            if output_type == "latent":
                raise ValueError(
                    "`paste_back` composites decoded frames: it does nothing with `output_type='latent'`."
                )
            if source_video is not None:
                if isinstance(source_video, (str, os.PathLike)):
                    header = probe_video(source_video)
                    source_size = (header.height, round(header.width * header.pixel_aspect_ratio))
                else:
                    source_video = frames_to_tensor(source_video)
                    source_size = tuple(source_video.shape[-2:])
                self._same_aspect("source video", *source_size, height, width, mask_resize_mode)
                source_pixels, _ = self.preprocess_source_video(
                    source_video, height, width, num_frames, mask_resize_mode or "crop"
                )
                if source_pixels.shape[2] != num_frames or source_pixels.shape[0] not in (1, batch_size):
                    raise ValueError(
                        f"`source_video` gives {source_pixels.shape[0]} video(s) of {source_pixels.shape[2]} frames; "
                        f"expected one (or {batch_size}) of {num_frames} frames, the frames the source was inverted "
                        "from."
                    )
        elif source_video is not None:
            raise ValueError("`source_video` is only used with `paste_back=True`.")

        device = self._execution_device

        # here `guidance_scale` is defined analog to the guidance weight `w` of equation (2)
        # of the Imagen paper: https://huggingface.co/papers/2205.11487 . `guidance_scale = 1`
        # corresponds to doing no classifier free guidance.
        do_classifier_free_guidance = guidance_scale > 1.0

        # 3. Encode input prompt
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            negative_prompt,
            do_classifier_free_guidance,
            num_videos_per_prompt=num_videos_per_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_sequence_length,
            device=device,
        )
        if do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)

        # 4. Prepare timesteps. A reference trajectory was made by DDIM inversion: regenerate with the same DDIM step.
        scheduler = self.ddim_scheduler() if reference_latents is not None else self.scheduler
        timesteps, num_inference_steps = retrieve_timesteps(scheduler, num_inference_steps, device, timesteps)
        if strength != 1.0:
            if latents is None:
                raise ValueError(
                    f"`strength={strength}` starts part-way through the schedule: pass `latents` at that noise level, "
                    "e.g. `latents=pipe.invert(..., strength=strength).trajectory[0]`."
                )
            timesteps = self.cut_timesteps(timesteps, strength)
            num_inference_steps = len(timesteps)
        self._num_timesteps = len(timesteps)

        # 5. Prepare latents
        self.check_size_for_positional_embeddings(height, width)
        latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1

        # For CogVideoX 1.5, the latent frames should be padded to make it divisible by patch_size_t. Generating from
        # scratch, the padding frames are sampled and denoised as diffusers does; following an inversion (a
        # reference, or unpadded start latents) they are re-made at every step as copies of the first frame, as
        # `invert()` makes them, so both directions see the same padding.
        additional_frames = self.padding_frames(latent_frames)
        stepwise_padding = additional_frames > 0 and (
            reference_latents is not None or (latents is not None and latents.shape[1] == latent_frames)
        )
        if additional_frames > 0 and not stepwise_padding:
            num_frames += additional_frames * self.vae_scale_factor_temporal

        if reference_latents is not None and batch_size > 1:
            # One inverted video edited under several prompts: its start latents and conditioning serve every prompt.
            if latents is not None and latents.shape[0] == 1:
                latents = latents.expand(batch_size, *latents.shape[1:])
            if image_latents is not None and image_latents.shape[0] == 1:
                image_latents = image_latents.expand(batch_size, *image_latents.shape[1:])

        latent_channels = self.transformer.config.in_channels
        if self.is_image_to_video:
            latent_channels //= 2
            if image_latents is None and image is None:
                raise ValueError(
                    "This is an image-to-video checkpoint: pass `image` (e.g. the first frame of the video) or "
                    "`image_latents` (e.g. `inv.image_latents`)."
                )
        elif image is not None or image_latents is not None:
            raise ValueError("`image`/`image_latents` are for image-to-video checkpoints; this one is text-to-video.")

        if self.is_image_to_video and image_latents is None:
            image = self.video_processor.preprocess(image, height=height, width=width).to(
                device, dtype=prompt_embeds.dtype
            )
            latents, image_latents = CogVideoXImageToVideoPipeline.prepare_latents(
                self,
                image,
                batch_size * num_videos_per_prompt,
                latent_channels,
                num_frames,
                height,
                width,
                prompt_embeds.dtype,
                device,
                generator,
                latents,
            )
            if stepwise_padding:  # diffusers pads by itself here; the padding is re-made at every step instead
                latents, image_latents = latents[:, -latent_frames:], image_latents[:, -latent_frames:]
        else:
            latents = self.prepare_latents(
                batch_size * num_videos_per_prompt,
                latent_channels,
                num_frames,
                height,
                width,
                prompt_embeds.dtype,
                device,
                generator,
                latents,
            )
            if image_latents is not None:
                image_latents = image_latents.to(device=device, dtype=prompt_embeds.dtype)
                if not stepwise_padding:
                    image_latents = self.pad_frames(image_latents, latents.shape[1] - image_latents.shape[1])
                if image_latents.shape != latents.shape:
                    raise ValueError(
                        f"`image_latents` has shape {tuple(image_latents.shape)} but the latents are "
                        f"{tuple(latents.shape)}: pass the `image_latents` of the inversion these latents come from."
                    )
        model_padding = additional_frames if stepwise_padding else 0
        # the image-to-video conditioning is the same at every step: pad it once
        model_image_latents = None if image_latents is None else self.pad_frames(image_latents, model_padding)
        model_reference_image_latents = None
        if reference_image_latents is not None:
            if reference_latents is None or not self.is_image_to_video:
                raise ValueError(
                    "`reference_image_latents` condition the reference rows of an image-to-video edit: pass them with "
                    "`reference_latents`, on an image-to-video checkpoint."
                )
            reference_image_latents = reference_image_latents.to(device=device, dtype=prompt_embeds.dtype)
            if reference_image_latents.shape != reference_latents.shape[1:]:
                raise ValueError(
                    f"`reference_image_latents` has shape {tuple(reference_image_latents.shape)}, the reference videos "
                    f"{tuple(reference_latents.shape[1:])}: pass the `image_latents` of the inversion (`inv`)."
                )
            model_reference_image_latents = self.pad_frames(reference_image_latents, model_padding)
        model_kwargs = self._model_kwargs(latents)

        # 6. Reference rows: validated against this call, laid out after the sample rows.
        sample_rows = prompt_embeds.shape[0]
        reference_kwargs = None
        if reference_latents is not None:
            self.check_reference_inputs(
                reference_latents, reference_timesteps, reference_mode, timesteps, tuple(latents.shape)
            )
            if reference_mode == "paired":
                reference_embeds = prompt_embeds
            else:
                if reference_prompt_embeds is None:
                    reference_prompt_embeds, _ = self.encode_prompt(
                        reference_prompt,
                        do_classifier_free_guidance=False,
                        max_sequence_length=prompt_embeds.shape[1],
                        device=device,
                        dtype=prompt_embeds.dtype,
                    )
                # one shared row per reference video: several prompts editing one video share a single row
                reference_videos = reference_latents.shape[1]
                reference_embeds = reference_prompt_embeds.to(device=device, dtype=prompt_embeds.dtype)
                if reference_embeds.shape[0] == 1 and reference_videos > 1:
                    reference_embeds = reference_embeds.expand(reference_videos, -1, -1)
                if (
                    reference_embeds.shape[0] != reference_videos
                    or reference_embeds.shape[1:] != prompt_embeds.shape[1:]
                ):
                    raise ValueError(
                        f"`reference_prompt` gives embeddings of shape {tuple(reference_embeds.shape)}; expected "
                        f"one prompt, or {reference_videos} (one per reference video), encoded like `prompt` "
                        f"{tuple(prompt_embeds.shape[1:])}."
                    )
            reference_rows = reference_embeds.shape[0]
            reference_kwargs = {**(attention_kwargs or {}), "reference_rows": reference_rows}
            if reference_weight != 1.0:
                reference_kwargs["reference_weight"] = reference_weight
            if reference_weight < 0:
                raise ValueError(f"`reference_weight` must be >= 0, got {reference_weight}.")
            reference_window = self.reference_step_window(reference_steps, len(timesteps))
            reference_processors = self.reference_processors(reference_blocks)
        latent_mask = None
        if pixel_mask is not None:
            mask_window = self.reference_step_window(mask_steps, len(timesteps), "mask_steps")
            latent_mask = mask_to_latent_grid(
                pixel_mask, self.vae_scale_factor_spatial, self.vae_scale_factor_temporal
            )
            latent_mask = grow_mask(latent_mask, mask_latent_dilation).to(device=device, dtype=latents.dtype)

        # 7. Prepare extra step kwargs. TODO: Logic should ideally just be moved out of the pipeline
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        # 8. Create rotary embeds if required
        image_rotary_emb = (
            self._prepare_rotary_positional_embeddings(height, width, latents.size(1) + model_padding, device)
            if self.transformer.config.use_rotary_positional_embeddings
            else None
        )

        # 9. Denoising loop
        num_warmup_steps = max(len(timesteps) - num_inference_steps * scheduler.order, 0)

        user_processors = self.transformer.attn_processors if reference_latents is not None else None
        if user_processors is not None:
            self.transformer.set_attn_processor(reference_processors)
        try:
            with self.progress_bar(total=num_inference_steps) as progress_bar:
                # for DPM-solver++
                old_pred_original_sample = None
                for i, t in enumerate(timesteps):
                    if self.interrupt:
                        continue

                    self._current_timestep = t
                    model_latents = self.pad_frames(latents, model_padding)
                    latent_model_input = (
                        torch.cat([model_latents] * 2) if do_classifier_free_guidance else model_latents
                    )
                    encoder_hidden_states, step_attention_kwargs = prompt_embeds, attention_kwargs
                    if reference_kwargs is not None and i in reference_window:
                        reference = reference_latents[i].to(
                            device=device, dtype=latent_model_input.dtype, non_blocking=True
                        )
                        reference = self.pad_frames(reference, model_padding)
                        reference = reference.repeat(reference_rows // reference.shape[0], 1, 1, 1, 1)
                        latent_model_input = torch.cat([latent_model_input, reference])
                        # per step, so that a callback's new `prompt_embeds` reach the sample rows here too
                        encoder_hidden_states = torch.cat([prompt_embeds, reference_embeds])
                        step_attention_kwargs = reference_kwargs
                    latent_model_input = scheduler.scale_model_input(latent_model_input, t)
                    if model_image_latents is not None:  # image-to-video: each row gets its video's conditioning
                        copies = sample_rows // model_image_latents.shape[0]
                        image_rows = model_image_latents.repeat(copies, 1, 1, 1, 1)
                        reference_rows_now = latent_model_input.shape[0] - sample_rows
                        if reference_rows_now:  # the reference videos' own conditioning, or the first videos' rows'
                            reference_image = model_reference_image_latents
                            if reference_image is None:
                                reference_image = model_image_latents[: reference_latents.shape[1]]
                            repeats = reference_rows_now // reference_image.shape[0]
                            image_rows = torch.cat([image_rows, reference_image.repeat(repeats, 1, 1, 1, 1)])
                        latent_model_input = torch.cat([latent_model_input, image_rows], dim=2)

                    # broadcast to batch dimension in a way that's compatible with ONNX/Core ML
                    timestep = t.expand(latent_model_input.shape[0])

                    # predict noise model_output
                    with self.transformer.cache_context("cond_uncond"):
                        noise_pred = self.transformer(
                            hidden_states=latent_model_input,
                            encoder_hidden_states=encoder_hidden_states,
                            timestep=timestep,
                            image_rotary_emb=image_rotary_emb,
                            attention_kwargs=step_attention_kwargs,
                            return_dict=False,
                            **model_kwargs,
                        )[0]
                    # the reference rows' and the padding frames' predictions are not used
                    noise_pred = noise_pred[:sample_rows, model_padding:].float()

                    # perform guidance
                    if use_dynamic_cfg:
                        self._guidance_scale = 1 + guidance_scale * (
                            (1 - math.cos(math.pi * ((num_inference_steps - t.item()) / num_inference_steps) ** 5.0))
                            / 2
                        )
                    if do_classifier_free_guidance:
                        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)

                    # compute the previous noisy sample x_t -> x_t-1
                    if not isinstance(scheduler, CogVideoXDPMScheduler):
                        latents = scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                    else:
                        latents, old_pred_original_sample = scheduler.step(
                            noise_pred,
                            old_pred_original_sample,
                            t,
                            timesteps[i - 1] if i > 0 else None,
                            latents,
                            **extra_step_kwargs,
                            return_dict=False,
                        )
                    latents = latents.to(prompt_embeds.dtype)

                    if latent_mask is not None and i in mask_window:
                        # outside the mask, the source: its inverted latent at the next level, its clean latents last
                        source = reference_latents[i + 1] if i + 1 < len(timesteps) else source_latents
                        latents = torch.lerp(source.to(device=device, dtype=latents.dtype), latents, latent_mask)

                    # call the callback, if provided
                    if callback_on_step_end is not None:
                        callback_kwargs = {}
                        for k in callback_on_step_end_tensor_inputs:
                            callback_kwargs[k] = locals()[k]
                        callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)

                        latents = callback_outputs.pop("latents", latents)
                        prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                        negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)

                    if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % scheduler.order == 0):
                        progress_bar.update()
        finally:
            if user_processors is not None:
                self.transformer.set_attn_processor(user_processors)

        self._current_timestep = None

        # Discard any padding frames that were added for CogVideoX 1.5 (also from latent outputs, unlike diffusers)
        latents = latents[:, latents.shape[1] - latent_frames :]
        if not output_type == "latent":
            video = self.decode_latents(latents)
            if paste_back:
                if source_pixels is None:
                    source_pixels = self.decode_latents(source_latents.to(device=device, dtype=latents.dtype))
                source_pixels = source_pixels.to(device=video.device, dtype=video.dtype)
                video = torch.lerp(source_pixels, video, pixel_mask.to(video.device, video.dtype).unsqueeze(1))
            video = self.video_processor.postprocess_video(video=video, output_type=output_type)
        else:
            video = latents

        # Offload all models
        self.maybe_free_model_hooks()

        if not return_dict:
            return (video,)

        return CogVideoXPipelineOutput(frames=video)
