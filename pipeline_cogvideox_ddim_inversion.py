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
"""DDIM inversion and reference-guided editing of real videos with CogVideoX.

Every module this file uses is imported here directly (`from .module import name`): diffusers' `custom_pipeline`
loader ships only a pipeline file's direct relative imports (see `publish.pipeline_modules`).
"""

import hashlib
import math
import os
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
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
from diffusers.utils import logging, replace_example_docstring
from transformers import T5EncoderModel, T5Tokenizer

from .cogvideox_ddim_checkpoint import (
    check_cogvideox_config,
    check_size_for_positional_embeddings,
    default_video_size,
    is_image_to_video,
    latent_frame_count,
    pixel_frame_count,
)
from .cogvideox_ddim_files import atomic_write  # noqa: F401  (shipped: cogvideox_ddim_output imports it)
from .cogvideox_ddim_masks import (  # attention_map_to_video: benchmarks/mask_*.py import it from here
    attention_map_to_video,  # noqa: F401
    check_aspect_or_resize_mode,
    grow_mask,
    mask_from_attention_map,
    mask_to_latent_grid,
    prepare_mask,
    word_attention_map,
    word_token_weights,
)
from .cogvideox_ddim_output import CogVideoXDDIMInversionOutput, check_fingerprint, config_fingerprint
from .cogvideox_ddim_reference import (
    check_reference_inputs,
    guided_prediction,
    processors_swapped,
    reference_processors,
    text_attention_recorders,
    windowed_step_prediction,
)
from .cogvideox_ddim_sampling import check_invertible, cut_timesteps, invert_ddim, step_window
from .cogvideox_ddim_video_io import (
    MIN_NUM_FRAMES,
    VideoFrames,
    check_resize_mode,
    frame_count_for_vae,
    frames_to_tensor,
    probe_video,
    read_video_frames,
    resize_frames,
)
from .cogvideox_ddim_windows import (
    WindowSchedule,
    call_windows,
    long_clip_frames,
    pipeline_windows,
    window_rows,
    windowed,
)
from .processors.reference_attention import CogVideoXRefAttnProcessor  # noqa: F401  (shipped; a public name)
from .processors.text_attention import CogVideoXTextAttentionRecorder  # noqa: F401  (shipped; a public name)


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name


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
        check_cogvideox_config(
            getattr(transformer, "config", None) or {},
            getattr(vae, "config", None) or {},
            type(transformer).__name__,
            type(vae).__name__,
        )
        super().__init__(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
        )

    # Window and schedule helpers, kept as pipeline names for callers (editing.py) that check settings early.
    reference_step_window = staticmethod(step_window)
    cut_timesteps = staticmethod(cut_timesteps)

    @property
    def is_image_to_video(self) -> bool:
        """Image-to-video checkpoints (5B-I2V, 1.5-5B-I2V) take image latents concatenated on the channel axis."""
        return is_image_to_video(self.transformer.config)

    def default_video_size(self, source_height: int | None = None, source_width: int | None = None) -> tuple[int, int]:
        """The `(height, width)` a source video is brought to when no size is given (see
        `cogvideox_ddim_checkpoint.default_video_size`): 720x480, or for CogVideoX 1.5 the source's aspect."""
        return default_video_size(self.transformer.config, source_height, source_width, self.vae_scale_factor_spatial)

    def check_size_for_positional_embeddings(self, height: int, width: int):
        """Refuse a size the positional embeddings do not cover (5B-I2V: native only; 1.5: within its RoPE grid)."""
        check_size_for_positional_embeddings(self.transformer.config, height, width, self.vae_scale_factor_spatial)

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

    def _rotary_embeddings(self, latents: torch.Tensor, device: torch.device):
        if not self.transformer.config.use_rotary_positional_embeddings:
            return None
        return self._prepare_rotary_positional_embeddings(
            height=latents.size(3) * self.vae_scale_factor_spatial,
            width=latents.size(4) * self.vae_scale_factor_spatial,
            num_frames=latents.size(1),
            device=device,
        )

    def _model_kwargs(self, latents: torch.Tensor) -> dict:
        """Extra transformer inputs: `ofs` for checkpoints with an ofs embedding (1.5-I2V), as diffusers passes it."""
        if self.transformer.config.get("ofs_embed_dim", None) is None:
            return {}
        return {"ofs": latents.new_full((1,), fill_value=2.0)}

    def _source_size(self, video) -> tuple[int, int]:
        """The display `(height, width)` of a source: a file's header (square pixels), or in-memory frames' size."""
        if isinstance(video, (str, os.PathLike)):
            return probe_video(video).display_size  # the header only: a broken file fails before any model work
        return tuple(frames_to_tensor(video).shape[-2:])

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
            default = self.default_video_size(*self._source_size(path))
            height, width = height or default[0], width or default[1]
        self.check_size_for_positional_embeddings(height, width)
        return read_video_frames(
            path,
            skip_frames_start,
            skip_frames_end,
            frame_stride,
            max_num_frames=None if num_frames == "all" else num_frames or self.transformer.config.sample_frames,
            temporal_compression=self.vae_scale_factor_temporal,
            sampling=sampling,
            height=height,
            width=width,
            resize_mode=resize_mode,
        )

    def load_source_video(
        self, video, height: int, width: int, num_frames: int | None, resize_mode: str = "crop"
    ) -> tuple[torch.Tensor, float | None]:
        """
        Decode (a file path) or convert (frames) the source video, resize it (`resize_frames`, `resize_mode`) and check
        that it has 8k + 1 frames; returns `[B, C, F, H, W]` in [-1, 1] and the source fps (`None` for frames).
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
                "diffusers' decoder turns an even number into 4 frames each, out of step with the source) and at "
                f"least {MIN_NUM_FRAMES}. "
                + (
                    f"Pass its first {valid} frames (e.g. `video[:{valid}]`)."
                    if valid >= MIN_NUM_FRAMES
                    else "Pass a longer video."
                )
            )
        return video, fps

    preprocess_source_video = load_source_video  # the former name (it also decodes and checks): kept for callers

    def prepare_video_latents(self, video: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Encode a video `[B, C, F, H, W]` in [-1, 1] to scaled latents `[B, F, C, H, W]` (the posterior's mode,
        one video at a time: inversion is deterministic)."""
        video = video.to(device=device, dtype=self.vae.dtype)
        posteriors = [self.vae.encode(video[index : index + 1]).latent_dist for index in range(len(video))]
        latents = torch.cat([posterior.mode() for posterior in posteriors])
        latents = latents * self.vae_scaling_factor_image
        return latents.permute(0, 2, 1, 3, 4).to(dtype=dtype)  # [B, F, C, H, W]

    @staticmethod
    def image_pixels(image, height: int, width: int, resize_mode: str = "crop") -> torch.Tensor:
        """A conditioning image (PIL, `[H, W, 3]` array, `[3, H, W]` or `[B, 3, H, W]` tensor; uint8 or floats in
        [0, 1]) as `[B, 3, H, W]` in [-1, 1] at `height` x `width`, resized with `resize_mode` as source frames are."""
        if isinstance(image, torch.Tensor) and image.ndim == 4:
            pixels = frames_to_tensor(image)[0]  # a batch of images, read as frames
        else:
            pixels = frames_to_tensor([image])[:, 0]
        return resize_frames(pixels, height, width, resize_mode) * 2 - 1

    def prepare_image_latents(
        self,
        image: torch.Tensor,
        latent_frames: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None = None,
        sample_posterior: bool = False,
    ) -> torch.Tensor:
        """Image-to-video conditioning `[B, F, C, H, W]` of pixels `[B, 3, H, W]` in [-1, 1] (`image_pixels`): the
        encoded image, then zeros, as `CogVideoXImageToVideoPipeline` builds it (before the 1.5 padding). The
        posterior's mode; `sample_posterior` samples it as diffusers does (to compare with diffusers)."""
        posterior = self.vae.encode(image.unsqueeze(2).to(device=device, dtype=self.vae.dtype)).latent_dist
        image_latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        image_latents = image_latents.to(dtype).permute(0, 2, 1, 3, 4)  # [B, 1, C, H, W]
        if self.vae.config.get("invert_scale_latents", False):
            image_latents = image_latents / self.vae_scaling_factor_image  # as diffusers does for 1.5-I2V
        else:
            image_latents = image_latents * self.vae_scaling_factor_image
        padding = image_latents.new_zeros(image_latents.shape[0], latent_frames - 1, *image_latents.shape[2:])
        return torch.cat([image_latents, padding], dim=1)

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

    def inversion_fingerprint(self) -> dict:
        """What a trajectory made by this pipeline depends on, recorded by `invert()` and compared by
        `check_inversion()`: the checkpoint's structure and noise schedule (`config_fingerprint`) and a digest of
        some of its weights."""
        fingerprint = config_fingerprint(self.transformer.config, self.vae.config, self.ddim_scheduler().config)
        return {"name_or_path": self.name_or_path, **fingerprint, "weights": self._weights_digest()}

    def _weights_digest(self) -> str | None:
        """A digest of the transformer's first weight (CogVideoX's patch embedding), rounded to bfloat16 so that
        loading in another dtype gives the same digest; None where the weights are not in memory (sequential offload
        keeps them elsewhere) or there are none."""
        weight = next(self.transformer.parameters(), None)
        if weight is None or weight.device.type == "meta":
            return None
        values = weight.detach().to("cpu", torch.float32).to(torch.bfloat16).view(torch.int16).numpy()
        return hashlib.sha256(values.tobytes()).hexdigest()[:16]

    def check_inversion(self, inversion: CogVideoXDDIMInversionOutput):
        """Refuse, naming each difference, an inversion made by another checkpoint or noise schedule than this one."""
        check_fingerprint((inversion.settings or {}).get("model"), self.inversion_fingerprint())

    def prepare_mask(self, mask, num_frames: int, height: int, width: int, batch_size: int = 1, dilation: int = 0,
                     feather: int = 0, resize_mode: str | None = None) -> torch.Tensor:
        """`cogvideox_ddim_masks.prepare_mask` with this checkpoint's temporal compression."""
        return prepare_mask(
            mask, num_frames, height, width, batch_size, dilation, feather, resize_mode, self.vae_scale_factor_temporal
        )

    def word_token_weights(self, prompt, words, max_sequence_length: int) -> torch.Tensor:
        """`cogvideox_ddim_masks.word_token_weights` with this pipeline's tokenizer."""
        return word_token_weights(self.tokenizer, prompt, words, max_sequence_length)

    @staticmethod
    def _store(latents: torch.Tensor, device: str | torch.device | None) -> torch.Tensor:
        """A trajectory entry on `device` (default: where it is), pinned on the host when CUDA is there to copy to."""
        if device is None or torch.device(device) == latents.device:
            return latents
        stored = latents.to(device)
        if stored.device.type == "cpu" and torch.cuda.is_available():
            stored = stored.pin_memory()
        return stored

    def _conditioning_latents(self, image, image_latents, latents, height, width, resize_mode, dtype, device):
        """Image-to-video conditioning for `latents` by the one path `invert()` and a referenced `__call__` share:
        `image_latents` as given, or `image` resized with `resize_mode` and encoded with the posterior's mode."""
        if not self.is_image_to_video:
            if image is not None or image_latents is not None:
                raise ValueError(
                    "`image`/`image_latents` are for image-to-video checkpoints; this one is text-to-video."
                )
            return None
        if image_latents is None:
            if image is None:
                raise ValueError(
                    "This is an image-to-video checkpoint: pass `image` (e.g. the first frame of the video) or "
                    "`image_latents` (e.g. `inv.image_latents`)."
                )
            pixels = self.image_pixels(image, height, width, resize_mode)
            image_latents = self.prepare_image_latents(pixels, latents.shape[1], dtype, device)
        return image_latents.to(device=device, dtype=dtype)

    def _mask_recorders(self, prompt, mask_words, mask_threshold, mask_blocks, mask_steps, mask_refine, video,
                        num_steps: int, max_sequence_length: int) -> tuple[dict, range]:
        """`invert()`'s attention recorders for `mask_words` (none without) and the steps they record, checked."""
        if mask_words is None:
            return {}, range(0)
        if prompt is None:
            raise ValueError("`mask_words` are found in the prompt's text: pass `prompt`, not `prompt_embeds`.")
        if not 0 < mask_threshold < 1:
            raise ValueError(f"`mask_threshold` must be in (0, 1), got {mask_threshold}.")
        if mask_refine and video is None:
            raise ValueError(
                "`mask_refine=True` snaps the mask to the source frames' edges: pass `video`, not `latents` (or "
                "leave `mask_refine` unset)."
            )
        mask_window = step_window(mask_steps, num_steps, "mask_steps")
        weights = self.word_token_weights(prompt, mask_words, max_sequence_length)
        return text_attention_recorders(list(self.transformer.attn_processors), mask_blocks, weights), mask_window

    def _word_mask(self, recorders: dict, latents_shape, threshold: float, source_frames, device):
        """The recorded attention map and the edit mask thresholded from it (snapped to `source_frames`' edges with
        a guided filter of one token's radius, on the execution device, when they are given)."""
        config = self.transformer.config
        latent_frames = latents_shape[1]
        height, width = (n * self.vae_scale_factor_spatial for n in latents_shape[3:])
        attention_map = word_attention_map(
            list(recorders.values()), latents_shape, config.patch_size, config.patch_size_t,
            self.padding_frames(latent_frames),
        )
        mask = mask_from_attention_map(
            attention_map,
            threshold,
            pixel_frame_count(latent_frames, self.vae_scale_factor_temporal),
            height,
            width,
            self.vae_scale_factor_temporal,
            self.vae_scale_factor_spatial * config.patch_size,  # one token
            None if source_frames is None else source_frames.to(device),
        )
        return attention_map, mask

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
        window_overlap: int | None = None,
        window_batch_size: int = 1,
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
                Number of DDIM steps (at least 2: one step from pure noise to a clean video cannot be inverted);
                regenerate with the same number so the trajectory lines up.
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
            num_frames (`int` or `"all"`, *optional*):
                With a file path, the most frames to read; defaults to the transformer's `sample_frames` (49);
                `"all"` reads the whole clip (trimmed to 8k + 1). `read_source_video` reads other selections (evenly
                spread over the clip, skips, stride). A clip longer than `sample_frames` is inverted in overlapping
                windows of that length (see docs/long_videos.md); text-to-video checkpoints only.
            resize_mode (`str`, defaults to `"crop"`):
                How frames of another aspect reach `height` x `width`: `"crop"` scales them to cover it and cuts the
                centre, `"pad"` scales them to fit and adds black bars, `"stretch"` scales each axis on its own.
                `image` is resized the same way.
            image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`, *optional*):
                Image-to-video checkpoints only: the conditioning image (PIL, `[H, W, 3]` array or `[3, H, W]` /
                `[B, 3, H, W]` tensor, uint8 or floats in [0, 1]), resized with `resize_mode` and encoded with the VAE
                posterior's mode, exactly as `__call__` prepares it with a reference; defaults to the first frame.
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
                Words (or phrases) of `prompt`, e.g. `["horse"]`, or one list per prompt: record, on the
                inversion's own forward passes, the
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
                `reference_steps` (`0.5`: the noisiest half; rounded to whole steps, halves up); default: all. A window
                that selects no step is refused before any model work.
            mask_refine (`bool`, *optional*):
                Snap the attention map (one value per 16x16-pixel token) to the source frames' edges with a guided
                filter (radius: one token) before thresholding. Needs the source pixels, so `video`; the default
                (`None`) refines when `video` is given and not with `latents`.
            return_dict (`bool`, defaults to `True`):
                Return a [`CogVideoXDDIMInversionOutput`] instead of a tuple `(latents, trajectory, timesteps)`.
            window_overlap (`int`, *optional*):
                A clip longer than the native length: video frames shared by neighbouring windows, a multiple of the
                VAE's temporal compression (4); defaults to a quarter of the window (12 for 49-frame windows). The
                windows are recorded in `settings["windows"]`, and `__call__` runs the same ones.
            window_batch_size (`int`, defaults to 1):
                Windows per transformer call: 1 holds the activations of one window (the least memory); more is
                faster on a large GPU. The result does not depend on it.

        Returns:
            [`CogVideoXDDIMInversionOutput`] or `tuple`.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 1. Check inputs, all before any model work
        if fixed_point_iterations < 0:
            raise ValueError(f"`fixed_point_iterations` must be >= 0, got {fixed_point_iterations}.")
        pipeline_windows(self, None, window_overlap, window_batch_size, mask_words)
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
            video = video if isinstance(video, (str, os.PathLike)) else frames_to_tensor(video)
            default_height, default_width = self.default_video_size(*self._source_size(video))
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
        device = self._execution_device
        # The forward sampler's timesteps (cut to `strength`); inversion walks them from the last to the first.
        scheduler = self.ddim_scheduler()
        timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, device)
        timesteps = cut_timesteps(timesteps, strength)
        check_invertible(scheduler, timesteps)
        recorders, mask_window = self._mask_recorders(
            prompt, mask_words, mask_threshold, mask_blocks, mask_steps, mask_refine, video, len(timesteps),
            max_sequence_length,
        )
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        self._num_timesteps = len(timesteps)
        do_classifier_free_guidance = guidance_scale > 1.0

        # 2. Encode input prompt (one row per video unless guidance is on)
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

        # 3. Prepare the clean latents and the image-to-video conditioning
        fps = source_frames = None
        if latents is None:
            video, fps = self.load_source_video(video, height, width, num_frames, resize_mode)
            source_frames = video if recorders and mask_refine is not False else None
            latents = self.prepare_video_latents(video, dtype, device)
            if image is None and image_latents is None and self.is_image_to_video:
                # the first source frame, already resized and in [-1, 1]
                image_latents = self.prepare_image_latents(video[:, :, 0], latents.shape[1], dtype, device)
        latents = latents.to(device=device, dtype=dtype)
        batch_size = latents.shape[0]
        if self.is_image_to_video and image is None and image_latents is None:
            raise ValueError(
                "This is an image-to-video checkpoint: with `latents`, also pass `image` (the first frame) or "
                "`image_latents`."
            )
        image_latents = self._conditioning_latents(
            image, image_latents, latents, height, width, resize_mode, dtype, device
        )
        if image_latents is not None and image_latents.shape != latents.shape:
            raise ValueError(
                f"`image_latents` has shape {tuple(image_latents.shape)}, the video latents {tuple(latents.shape)}: "
                "they must match."
            )
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

        # 4. Prepare what every step's model call shares (1.5's padding frames are re-made from each step's latents).
        # A long clip runs in windows of the native length, each padded and positioned as a native clip.
        schedule = pipeline_windows(self, latents.shape[1], window_overlap, window_batch_size, mask_words)
        padding = self.padding_frames(schedule.window)
        image_rotary_emb = self._rotary_embeddings(self.pad_frames(latents[:, : schedule.window], padding), device)
        model_kwargs = self._model_kwargs(latents)
        rows = 2 if do_classifier_free_guidance else 1
        image_input = None if image_latents is None else torch.cat([self.pad_frames(image_latents, padding)] * rows)

        def predict_window(sample: torch.Tensor, windows: tuple[int, ...], t: torch.Tensor) -> torch.Tensor:
            model_input = torch.cat([self.pad_frames(sample, padding)] * rows)
            if image_input is not None:
                model_input = torch.cat([model_input, image_input], dim=2)
            guidance = guidance_scale if do_classifier_free_guidance else None
            return guided_prediction(
                self.transformer, model_input, window_rows(prompt_embeds, len(windows), rows), t,
                model_input.shape[0], padding, guidance, image_rotary_emb, attention_kwargs, model_kwargs,
            )

        predict = windowed(predict_window, schedule, window_batch_size)

        # 5. Inversion loop: trajectory[i] is the latent at the level of timesteps[i]
        for recorder in recorders.values():  # the chosen blocks record the words' attention on these same passes
            recorder.text_token_weights = recorder.text_token_weights.expand(batch_size, -1)

        def before_step(i: int):
            if self.interrupt:
                raise RuntimeError("Inversion was interrupted; the trajectory is incomplete.")
            self._current_timestep = timesteps[i]
            for recorder in recorders.values():
                recorder.recording = i in mask_window

        def on_step(step: int, i: int, t: torch.Tensor, step_latents: torch.Tensor) -> torch.Tensor:
            if callback_on_step_end is not None:
                step_tensors = {
                    "latents": step_latents,
                    "prompt_embeds": prompt_embeds,
                    "negative_prompt_embeds": negative_prompt_embeds,
                }
                callback_kwargs = {k: step_tensors[k] for k in callback_on_step_end_tensor_inputs}
                step_latents = callback_on_step_end(self, step, t, callback_kwargs).pop("latents", step_latents)
            progress_bar.update()
            return step_latents

        with self.progress_bar(total=len(timesteps)) as progress_bar, processors_swapped(self.transformer, recorders):
            trajectory, model_evaluations = invert_ddim(
                predict,
                latents,
                timesteps,
                scheduler,
                fixed_point_iterations,
                fixed_point_tolerance,
                on_step=on_step,
                before_step=before_step,
                store=lambda stored: self._store(stored, trajectory_device),
            )
        self._current_timestep = None
        trajectory = torch.stack(trajectory)

        # 6. The edit mask from the recorded attention (snapped to the source frames' edges on the device)
        attention_map = mask = None
        if recorders:
            attention_map, mask = self._word_mask(recorders, latents.shape, mask_threshold, source_frames, device)

        # Offload all models
        self.maybe_free_model_hooks()

        if not return_dict:
            return (latents, trajectory, timesteps)
        return CogVideoXDDIMInversionOutput(
            latents=latents,
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
                "height": height,
                "width": width,
                "num_frames": pixel_frame_count(latents.shape[1], self.vae_scale_factor_temporal),
                "timesteps": timesteps.tolist(),
                **({"mask_words": mask_words, "mask_threshold": mask_threshold} if recorders else {}),
                **({"windows": schedule.to_dict()} if schedule.num_windows > 1 else {}),
            },
            mask=mask,
            attention_map=attention_map,
        )

    def _decode(self, latents, output_type, paste_mask=None, source_pixels=None, source_latents=None):
        """Decode and postprocess; with `paste_mask`, composite the source outside it first: `source_pixels`, or
        else the decoded `source_latents`."""
        video = self.decode_latents(latents)
        if paste_mask is not None:
            if source_pixels is None:
                source_pixels = self.decode_latents(source_latents.to(device=latents.device, dtype=latents.dtype))
            source_pixels = source_pixels.to(device=video.device, dtype=video.dtype)
            video = torch.lerp(source_pixels, video, paste_mask.to(video.device, video.dtype).unsqueeze(1))
        return self.video_processor.postprocess_video(video=video, output_type=output_type)

    def _call_size(self, height, width, num_frames, reference_latents) -> tuple[int, int, int]:
        """`__call__`'s video size: as given, else the reference's (it fixes the latent size), else the config's."""
        if reference_latents is not None and reference_latents.ndim == 6:
            _, _, ref_frames, _, ref_height, ref_width = reference_latents.shape
            height = height or ref_height * self.vae_scale_factor_spatial
            width = width or ref_width * self.vae_scale_factor_spatial
            num_frames = num_frames or pixel_frame_count(ref_frames, self.vae_scale_factor_temporal)
        height = height or self.transformer.config.sample_height * self.vae_scale_factor_spatial
        width = width or self.transformer.config.sample_width * self.vae_scale_factor_spatial
        return height, width, num_frames or self.transformer.config.sample_frames

    def _check_local_edit(self, mask, reference_latents, source_latents, paste_back, source_video, output_type,
                          num_frames, height, width, batch_size, mask_dilation, mask_feather, mask_latent_dilation,
                          mask_resize_mode) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """A local edit's pixel mask and paste-back source pixels, read and checked before any model work."""
        pixel_mask = source_pixels = None
        if mask is not None:
            if reference_latents is None:
                raise ValueError(
                    "`mask` keeps the source outside it by following the inverted trajectory: pass "
                    "`reference_latents=inv.trajectory` (and `source_latents=inv.latents`)."
                )
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
        if not paste_back:
            if source_video is not None:
                raise ValueError("`source_video` is only used with `paste_back=True`.")
            return pixel_mask, None
        if pixel_mask is None:
            raise ValueError("`paste_back` composites the source outside a mask: pass `mask` too.")
        if output_type == "latent":
            raise ValueError("`paste_back` composites decoded frames: it does nothing with `output_type='latent'`.")
        if source_video is not None:
            if not isinstance(source_video, (str, os.PathLike)):
                source_video = frames_to_tensor(source_video)
            source_size = self._source_size(source_video)
            check_aspect_or_resize_mode("source video", *source_size, height, width, mask_resize_mode)
            resize = mask_resize_mode or "crop"
            source_pixels, _ = self.load_source_video(source_video, height, width, num_frames, resize)
            if source_pixels.shape[2] != num_frames or source_pixels.shape[0] not in (1, batch_size):
                raise ValueError(
                    f"`source_video` gives {source_pixels.shape[0]} video(s) of {source_pixels.shape[2]} frames; "
                    f"expected one (or {batch_size}) of {num_frames} frames, the frames the source was inverted from."
                )
        return pixel_mask, source_pixels

    def _check_reference_controls(self, reference_latents, reference_steps, reference_mode, reference_weight,
                                  reference_blocks, num_steps: int) -> tuple[range, dict]:
        """The steps that run reference rows and the processors that read them (none without a reference), checked
        before any model work."""
        if reference_latents is None:
            return range(0), {}
        reference_window = step_window(reference_steps, num_steps, "reference_steps")
        if reference_mode not in ("shared", "paired"):
            raise ValueError(f"`reference_mode` must be 'shared' or 'paired', got {reference_mode!r}.")
        if reference_weight < 0:
            raise ValueError(f"`reference_weight` must be >= 0, got {reference_weight}.")
        return reference_window, reference_processors(list(self.transformer.attn_processors), reference_blocks)

    def _reference_rows(self, reference_mode, reference_prompt, reference_prompt_embeds, reference_latents,
                        prompt_embeds, device) -> torch.Tensor:
        """The text embeddings of the reference rows: in paired mode the sample's (one per guidance branch), in
        shared mode the reference prompt's, one row per reference video."""
        if reference_mode == "paired":
            return prompt_embeds
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
        if reference_embeds.shape[0] != reference_videos or reference_embeds.shape[1:] != prompt_embeds.shape[1:]:
            raise ValueError(
                f"`reference_prompt` gives embeddings of shape {tuple(reference_embeds.shape)}; expected one prompt, "
                f"or {reference_videos} (one per reference video), encoded like `prompt` "
                f"{tuple(prompt_embeds.shape[1:])}."
            )
        return reference_embeds

    def _prepare_call_latents(self, latents, image, image_latents, reference_latents, reference_image_latents,
                              batch_size, num_frames, height, width, resize_mode, dtype, device, generator,
                              windowed: bool = False):
        """`__call__`'s start latents and image-to-video conditioning (the sample's and the reference rows', padded as
        the model sees them). Returns them with the video's latent frame count and the padding made at every step."""
        latent_frames = latent_frame_count(num_frames, self.vae_scale_factor_temporal)

        # For CogVideoX 1.5, the latent frames should be padded to make it divisible by patch_size_t. Generating from
        # scratch, the padding frames are sampled and denoised as diffusers does; following an inversion (a
        # reference, or unpadded start latents) they are re-made at every step as copies of the first frame, as
        # `invert()` makes them, so both directions see the same padding.
        additional_frames = 0 if windowed else self.padding_frames(latent_frames)  # windows pad themselves
        stepwise_padding = additional_frames > 0 and (
            reference_latents is not None or (latents is not None and latents.shape[1] == latent_frames)
        )
        if additional_frames > 0 and not stepwise_padding:
            num_frames += additional_frames * self.vae_scale_factor_temporal

        latent_channels = self.transformer.config.in_channels // (2 if self.is_image_to_video else 1)
        if reference_latents is not None:
            # Conditioned as `invert()` conditions (one preparation path): resized with `resize_mode`, the mode.
            image_latents = self._conditioning_latents(
                image, image_latents, reference_latents[0], height, width, resize_mode, dtype, device
            )
            if batch_size > 1:
                # One inverted video edited under several prompts: its start latents and conditioning serve them all.
                if latents is not None and latents.shape[0] == 1:
                    latents = latents.expand(batch_size, *latents.shape[1:])
                if image_latents is not None and image_latents.shape[0] == 1:
                    image_latents = image_latents.expand(batch_size, *image_latents.shape[1:])
        elif not self.is_image_to_video and (image is not None or image_latents is not None):
            raise ValueError("`image`/`image_latents` are for image-to-video checkpoints; this one is text-to-video.")
        elif self.is_image_to_video and image_latents is None and image is None:
            raise ValueError(
                "This is an image-to-video checkpoint: pass `image` (e.g. the first frame of the video) or "
                "`image_latents` (e.g. `inv.image_latents`)."
            )

        if self.is_image_to_video and image_latents is None:
            # Without a reference: diffusers' own preparation (no crop, a posterior sample), for bit-for-bit parity
            image = self.video_processor.preprocess(image, height=height, width=width).to(
                device, dtype=dtype
            )
            latents, image_latents = CogVideoXImageToVideoPipeline.prepare_latents(
                self, image, batch_size, latent_channels, num_frames, height, width,
                dtype, device, generator, latents,
            )
            if stepwise_padding:  # diffusers pads by itself here; the padding is re-made at every step instead
                latents, image_latents = latents[:, -latent_frames:], image_latents[:, -latent_frames:]
        else:
            latents = self.prepare_latents(
                batch_size, latent_channels, num_frames, height, width, dtype,
                device, generator, latents,
            )
            if image_latents is not None:
                image_latents = image_latents.to(device=device, dtype=dtype)
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
            reference_image_latents = reference_image_latents.to(device=device, dtype=dtype)
            if reference_image_latents.shape != reference_latents.shape[1:]:
                raise ValueError(
                    f"`reference_image_latents` has shape {tuple(reference_image_latents.shape)}, the reference "
                    f"videos {tuple(reference_latents.shape[1:])}: pass the `image_latents` of the inversion (`inv`)."
                )
            model_reference_image_latents = self.pad_frames(reference_image_latents, model_padding)
        return latents, model_image_latents, model_reference_image_latents, latent_frames, model_padding

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
        resize_mode: str = "crop",
        window_overlap: int | None = None,
        window_batch_size: int = 1,
        reference_windows: WindowSchedule | dict | None = None,
    ) -> CogVideoXPipelineOutput | tuple:
        r"""
        Generate a video; with `reference_latents`, regenerate it guided by an inverted source video.

        Takes every argument of [`CogVideoXPipeline.__call__`], with the same meaning and defaults (but
        `num_videos_per_prompt`, which must be 1: pass the prompt several times); with `reference_latents=None` the
        result is the same as `CogVideoXPipeline`'s, bit for bit. Latents that are not finite (NaN or inf) at the end
        raise an error instead of decoding to a black video.

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
                Image-to-video checkpoints: the conditioning image. Without `reference_latents` it is prepared as
                `CogVideoXImageToVideoPipeline` does (resized without crop, a sample of the VAE posterior), so that
                the output is that pipeline's bit for bit; with `reference_latents` as `invert()` prepares it (resized
                with `resize_mode`, the posterior's mode), so that the edit is conditioned like the inversion.
            resize_mode (`str`, defaults to `"crop"`):
                With `reference_latents`: how `image` is brought to `height` x `width` (`"crop"`, `"pad"` or
                `"stretch"`), as `invert()` resizes the source frames.
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
                a shorter window is cheaper and lets the prompt change more of the details. Windows are rounded to
                whole steps, halves up (`0.25` of 10 steps: the first 3); one that selects no step is refused.
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

            window_overlap (`int`, *optional*), window_batch_size (`int`, defaults to 1):
                A clip longer than the transformer's `sample_frames` (49; 81 for 1.5) is generated in overlapping
                windows of that length, as `invert()` inverts it (see there and docs/long_videos.md); text-to-video
                checkpoints only. The result does not depend on `window_batch_size`.
            reference_windows (`WindowSchedule` or `dict`, *optional*):
                The windows the reference trajectory was inverted in, `inv.windows`: they are used again (a
                `window_overlap` that gives other windows is refused). Without it, `window_overlap` (or its default)
                sets the windows.

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

        num_frames = long_clip_frames(self, num_frames, latents, reference_windows)
        height, width, num_frames = self._call_size(height, width, num_frames, reference_latents)

        # 1. Check inputs. Raise error if not correct (windows, masks and source pixels too: before any model work)
        if num_videos_per_prompt != 1:
            raise ValueError(
                f"`num_videos_per_prompt={num_videos_per_prompt}` is not supported by "
                "CogVideoXDDIMInversionPipeline.__call__: pass each prompt that many times (`prompt=[p] * n`)."
            )
        self.check_inputs(
            prompt, height, width, negative_prompt, callback_on_step_end_tensor_inputs, prompt_embeds,
            negative_prompt_embeds,
        )
        self.check_size_for_positional_embeddings(height, width)
        num_steps = len(cut_timesteps(range(len(timesteps) if timesteps else num_inference_steps), strength))
        reference_window, processors = self._check_reference_controls(
            reference_latents, reference_steps, reference_mode, reference_weight, reference_blocks, num_steps
        )
        mask_window = step_window(mask_steps, num_steps, "mask_steps") if mask is not None else range(0)
        schedule = call_windows(self, num_frames, window_overlap, window_batch_size, reference_windows)
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False

        # 2. Default call parameters
        batch_size = prompt_embeds.shape[0] if prompt is None else 1 if isinstance(prompt, str) else len(prompt)
        pixel_mask, source_pixels = self._check_local_edit(
            mask, reference_latents, source_latents, paste_back, source_video, output_type, num_frames, height,
            width, batch_size, mask_dilation, mask_feather, mask_latent_dilation, mask_resize_mode,
        )
        device = self._execution_device

        # `guidance_scale` is the guidance weight `w` of equation (2) of the Imagen paper; 1 means no guidance
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
            timesteps = cut_timesteps(timesteps, strength)
            num_inference_steps = len(timesteps)
        self._num_timesteps = len(timesteps)

        # 5. Prepare latents
        latents, model_image_latents, model_reference_image_latents, latent_frames, model_padding = (
            self._prepare_call_latents(
                latents, image, image_latents, reference_latents, reference_image_latents, batch_size, num_frames,
                height, width, resize_mode, prompt_embeds.dtype, device, generator, schedule.num_windows > 1,
            )
        )
        if schedule.num_windows == 1:  # the whole clip, as it is laid out (fresh 1.5 noise holds its padding frames)
            schedule = WindowSchedule.for_clip(latents.shape[1], latents.shape[1])
        else:  # each window is padded as a native clip
            model_padding = self.padding_frames(schedule.window)
        model_kwargs = self._model_kwargs(latents)

        # 6. Prepare the reference rows (laid out after the sample rows) and the latent mask
        sample_rows = prompt_embeds.shape[0]
        reference_embeds = reference_kwargs = None
        if reference_latents is not None:
            check_reference_inputs(reference_latents, reference_timesteps, reference_mode, timesteps, latents.shape)
            reference_embeds = self._reference_rows(
                reference_mode, reference_prompt, reference_prompt_embeds, reference_latents, prompt_embeds, device
            )
            reference_kwargs = {**(attention_kwargs or {}), "reference_rows": reference_embeds.shape[0]}
            reference_kwargs.update({} if reference_weight == 1.0 else {"reference_weight": reference_weight})
        latent_mask = None
        if pixel_mask is not None:  # each latent cell takes the largest value of its pixels
            spatial, temporal = self.vae_scale_factor_spatial, self.vae_scale_factor_temporal
            latent_mask = mask_to_latent_grid(pixel_mask, spatial, temporal)
            latent_mask = grow_mask(latent_mask, mask_latent_dilation).to(device=device, dtype=latents.dtype)

        # 7. Prepare extra step kwargs. TODO: Logic should ideally just be moved out of the pipeline
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        # 8. Create rotary embeds if required
        image_rotary_emb = (
            self._prepare_rotary_positional_embeddings(height, width, schedule.window + model_padding, device)
            if self.transformer.config.use_rotary_positional_embeddings
            else None
        )

        predict = windowed_step_prediction(
            self, schedule, window_batch_size, scheduler, model_padding, do_classifier_free_guidance, sample_rows,
            image_rotary_emb, attention_kwargs, model_kwargs, reference_latents, reference_window,
            reference_embeds, reference_kwargs, reference_mode, model_image_latents, model_reference_image_latents,
        )

        # 9. Denoising loop
        num_warmup_steps = max(len(timesteps) - num_inference_steps * scheduler.order, 0)

        with self.progress_bar(total=num_inference_steps) as progress_bar, processors_swapped(
            self.transformer, processors
        ):
            # for DPM-solver++
            old_pred_original_sample = None
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue

                self._current_timestep = t
                # predict noise model_output, and perform guidance
                if use_dynamic_cfg:
                    self._guidance_scale = 1 + guidance_scale * (
                        (1 - math.cos(math.pi * ((num_inference_steps - t.item()) / num_inference_steps) ** 5.0)) / 2
                    )
                # `prompt_embeds` per step, so that a callback's new ones reach the sample rows
                noise_pred = predict(latents, t, i, prompt_embeds)

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

        self._current_timestep = None

        # 10. Decode. Padding frames added for CogVideoX 1.5 are discarded (from latent outputs too, unlike diffusers)
        latents = latents[:, latents.shape[1] - latent_frames :]
        if not torch.isfinite(latents).all():
            raise FloatingPointError(
                "CogVideoXDDIMInversionPipeline.__call__ produced latents with NaN or inf values (they would decode "
                "to a black video): check the inputs (`latents`, `reference_latents`: an inversion with NaN), or "
                "run in float32/bfloat16 rather than float16."
            )
        video = latents
        if not output_type == "latent":
            paste_mask = pixel_mask if paste_back else None
            video = self._decode(latents, output_type, paste_mask, source_pixels, source_latents)

        # Offload all models
        self.maybe_free_model_hooks()

        if not return_dict:
            return (video,)

        return CogVideoXPipelineOutput(frames=video)
