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

import math
import os
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.cogvideo.pipeline_cogvideox import retrieve_timesteps
from diffusers.pipelines.cogvideo.pipeline_output import CogVideoXPipelineOutput
from diffusers.schedulers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DDIMScheduler
from diffusers.utils import logging, replace_example_docstring
from transformers import T5EncoderModel, T5Tokenizer

from .cogvideox_ddim_checkpoint import (
    check_cogvideox_config, check_size_for_positional_embeddings, default_video_size, is_image_to_video,
    padding_frames, pixel_frame_count,
)
from .cogvideox_ddim_choices import REFERENCE_MODES  # noqa: F401  (shipped: the named choices, torch-free)
from .cogvideox_ddim_context_parallel import disable_context_parallel, enable_pipeline_context_parallel
from .cogvideox_ddim_errors import ParameterError  # noqa: F401  (shipped: the other modules raise it)
from .cogvideox_ddim_files import atomic_write  # noqa: F401  (shipped: cogvideox_ddim_output imports it)
from .cogvideox_ddim_latents import (
    call_size, decode_with_paste_back, encode_video, image_pixels, load_source_video, prepare_call_latents,
    prepare_image_latents, prepare_source_latents, read_source_video, source_video_size,
)
from .cogvideox_ddim_masks import (  # attention_map_to_video, grow_mask: benchmarks and tests import them from here
    attention_map_to_video, check_local_edit, grow_mask, latent_edit_mask, prepare_mask, word_mask,  # noqa: F401
    word_mask_recorders, word_token_weights,
)
from .cogvideox_ddim_memory import MemoryOptions  # noqa: F401  (shipped; a public name)
from .cogvideox_ddim_options import CheckedInputs, MaskOptions, ReferenceOptions, WindowOptions, WordMaskOptions
from .cogvideox_ddim_output import CogVideoXDDIMInversionOutput, check_fingerprint, config_fingerprint, weights_digest
from .cogvideox_ddim_reference import (
    check_reference_controls, check_reference_inputs, embeds_per_video, processors_swapped, reference_attention_kwargs,
    reference_row_embeds, windowed_inversion_prediction, windowed_step_prediction,
)
from .cogvideox_ddim_sampling import (
    check_finite_latents, check_invertible, cut_timesteps, ddim_substitute, invert_ddim, step_window, stored_on,
)
from .cogvideox_ddim_step_cache import without_step_cache
from .cogvideox_ddim_video_io import VideoFrames
from .cogvideox_ddim_video_probe import probe_video  # noqa: F401  (shipped: cogvideox_ddim_video_io imports it)
from .cogvideox_ddim_video_writer import write_video  # noqa: F401  (shipped: cogvideox_ddim_video_io imports it)
from .cogvideox_ddim_weights_storage import check_weights_storage, weights_storage
from .cogvideox_ddim_windows import (
    WindowProgress, call_windows, check_window_options, long_clip_frames, native_latent_frames, pipeline_windows,
    sample_windows,
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
        ...     dtype=torch.bfloat16,
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

    It has the components of [`CogVideoXPipeline`], so every CogVideoX checkpoint loads into it: text-to-video (2B,
    5B, 1.5-5B), where `__call__` with `reference_latents=None` is `CogVideoXPipeline.__call__`, and image-to-video
    (5B-I2V, 1.5-5B-I2V), where it is `CogVideoXImageToVideoPipeline.__call__`. Two things are added:
    [`~CogVideoXDDIMInversionPipeline.invert`] runs the pipeline's own DDIM sampler backwards from a video's latents
    to noise and returns the trajectory; `__call__(..., reference_latents=trajectory)` runs each step's reference
    latent beside the sample, whose attention also reads the reference's keys and values
    ([`CogVideoXRefAttnProcessor`]), which keeps the source's structure and motion.

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
        transformer_config, vae_config = getattr(transformer, "config", None) or {}, getattr(vae, "config", None) or {}
        check_cogvideox_config(transformer_config, vae_config, type(transformer).__name__, type(vae).__name__)
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
        return padding_frames(self.transformer.config, latent_frames)

    @staticmethod
    def pad_frames(latents: torch.Tensor, padding: int) -> torch.Tensor:
        """Prepend `padding` copies of the first latent frame, as diffusers' image-to-video pipeline pads 1.5 latents.

        Inversion and reference-guided regeneration re-pad at every step from the current latents, so the padding is
        the same function of the video's latents in both directions and never appears in an output."""
        return latents if padding == 0 else torch.cat([latents[:, :1]] * padding + [latents], dim=1)

    def _rotary_embeddings(self, latents: torch.Tensor, device: torch.device):
        if not self.transformer.config.use_rotary_positional_embeddings:
            return None
        height, width = (size * self.vae_scale_factor_spatial for size in latents.shape[3:])
        return self._prepare_rotary_positional_embeddings(height, width, num_frames=latents.size(1), device=device)

    def _model_kwargs(self, latents: torch.Tensor) -> dict:
        """Extra transformer inputs: `ofs` for checkpoints with an ofs embedding (1.5-I2V), as diffusers passes it."""
        if self.transformer.config.get("ofs_embed_dim", None) is None:
            return {}
        return {"ofs": latents.new_full((1,), fill_value=2.0)}

    def read_source_video(
        self, path: str | os.PathLike, height: int | None = None, width: int | None = None, resize_mode: str = "crop",
        num_frames: int | None = None, sampling: str = "first", skip_frames_start: int = 0, skip_frames_end: int = 0,
        frame_stride: int = 1,
    ) -> VideoFrames:
        """
        Read a video file's frames at the size `invert()` uses, resized by ffmpeg while decoding.

        `height`/`width` default to `default_video_size` of the source; `num_frames` (the most frames) to the
        transformer's `sample_frames`. Frame selection (`sampling`, skips, stride) is `read_video_frames`'. Returns its
        `VideoFrames` (frames, fps, source frame numbers, the source's `VideoInfo`).
        """
        return read_source_video(
            self, path, height=height, width=width, resize_mode=resize_mode, num_frames=num_frames, sampling=sampling,
            skip_frames_start=skip_frames_start, skip_frames_end=skip_frames_end, frame_stride=frame_stride,
        )

    def load_source_video(
        self, video, height: int, width: int, num_frames: int | None, resize_mode: str = "crop"
    ) -> tuple[torch.Tensor, float | None]:
        """
        Decode (a file path) or convert (frames) the source video, resize it (`resize_frames`, `resize_mode`) and check
        that it has 8k + 1 frames; returns `[B, C, F, H, W]` in [-1, 1] and the source fps (`None` for frames).
        """
        return load_source_video(self, video, height=height, width=width, num_frames=num_frames, resize_mode=resize_mode)

    preprocess_source_video = load_source_video  # the former name (it also decodes and checks): kept for callers

    # Encoding (cogvideox_ddim_latents): functions of the pipeline, as methods
    prepare_video_latents = encode_video  # (video, dtype, device): `[B, C, F, H, W]` to scaled latents
    image_pixels = staticmethod(image_pixels)
    prepare_image_latents = prepare_image_latents  # (image, latent_frames, dtype, device, generator, sample_posterior)

    def ddim_scheduler(self) -> CogVideoXDDIMScheduler | DDIMScheduler:
        """
        The deterministic DDIM scheduler that inversion and reference-guided regeneration step with.

        It is the pipeline's scheduler when that is a DDIM scheduler. A multistep scheduler such as
        `CogVideoXDPMScheduler` cannot be inverted step by step, so it is replaced by a `CogVideoXDDIMScheduler` built
        from the same config: same `alphas_cumprod` (SNR shift, zero-terminal-SNR rescaling) and timestep spacing.
        """
        substitute = ddim_substitute(self.scheduler, getattr(self, "_substitute_ddim_scheduler", None))
        if substitute is not None:
            self._substitute_ddim_scheduler = substitute
        return self.scheduler if substitute is None else substitute[1]

    def inversion_fingerprint(self) -> dict:
        """What a trajectory made by this pipeline depends on, recorded by `invert()` and compared by
        `check_inversion()`: the checkpoint's structure and noise schedule (`config_fingerprint`) and a digest of
        some of its weights."""
        fingerprint = config_fingerprint(self.transformer.config, self.vae.config, self.ddim_scheduler().config)
        return {"name_or_path": self.name_or_path, **fingerprint, "weights": weights_digest(self.transformer),
                "weights_storage": weights_storage(self)}  # 8-bit storage (fp8 storage, torchao quantization) or None

    def check_inversion(self, inversion: CogVideoXDDIMInversionOutput):
        """Refuse, naming each difference, an inversion made by another checkpoint or noise schedule than this one."""
        check_fingerprint((inversion.settings or {}).get("model"), self.inversion_fingerprint())
        check_weights_storage((inversion.settings or {}).get("model"), self.inversion_fingerprint())

    def enable_context_parallel(self, degree: int | None = None, process_group=None):
        """Spread the transformer's video tokens over `degree` processes (default: all of `process_group`, or of the
        `torchrun` launch, whose group is joined here if none exists). Every process calls `invert()` / `__call__`
        with the same inputs and gets the same outputs; only one should write them. See docs/context_parallel.md."""
        return enable_pipeline_context_parallel(self, degree, process_group)

    def disable_context_parallel(self):
        """Undo `enable_context_parallel`: the transformer computes on this process alone again."""
        disable_context_parallel(self.transformer)

    def prepare_mask(self, mask, num_frames: int, height: int, width: int, batch_size: int = 1, dilation: int = 0,
                     feather: int = 0, resize_mode: str | None = None) -> torch.Tensor:
        """`cogvideox_ddim_masks.prepare_mask` with this checkpoint's temporal compression."""
        return prepare_mask(
            mask, num_frames, height, width, batch_size, dilation=dilation, feather=feather, resize_mode=resize_mode,
            temporal_compression=self.vae_scale_factor_temporal,
        )

    def word_token_weights(self, prompt, words, max_sequence_length: int) -> torch.Tensor:
        """`cogvideox_ddim_masks.word_token_weights` with this pipeline's tokenizer."""
        return word_token_weights(self.tokenizer, prompt, words, max_sequence_length)

    def check_inputs(
        self, prompt, height, width, negative_prompt, callback_on_step_end_tensor_inputs, prompt_embeds=None,
        negative_prompt_embeds=None, *, num_frames: int | None = None, num_steps: int | None = None,
        num_videos_per_prompt: int = 1, output_type: str = "pil", reference: ReferenceOptions | None = None,
        masks: MaskOptions | None = None, windows: WindowOptions | None = None,
        word_masks: WordMaskOptions | None = None, video=None, max_sequence_length: int = 226,
        fixed_point_iterations: int = 0,
    ) -> CheckedInputs:
        """Every check before any model work: diffusers' (prompt, size, callback inputs), the size the positional
        embeddings cover, then the option groups gathered in step 1 of `__call__` (`num_frames`, `num_steps`,
        `reference`, `masks`, `windows`) or of `invert()` (`windows`, `word_masks` with the source `video`). Returns
        what the checks derive (`CheckedInputs`), handed down so that nothing is checked or built twice. With
        diffusers' arguments only, it checks those and the size."""
        if num_videos_per_prompt != 1:
            raise ValueError(
                f"`num_videos_per_prompt={num_videos_per_prompt}` is not supported by "
                "CogVideoXDDIMInversionPipeline.__call__: pass each prompt that many times (`prompt=[p] * n`)."
            )
        if fixed_point_iterations < 0:
            raise ValueError(f"`fixed_point_iterations` must be >= 0, got {fixed_point_iterations}.")
        super().check_inputs(
            prompt, height, width, negative_prompt, callback_on_step_end_tensor_inputs, prompt_embeds,
            negative_prompt_embeds,
        )
        self.check_size_for_positional_embeddings(height, width)
        config, temporal_compression = self.transformer.config, self.vae_scale_factor_temporal
        if windows is not None:
            check_window_options(windows, native_latent_frames(config, temporal_compression), temporal_compression)
        if word_masks is not None:  # invert(): the word-attention recorders (its windows follow the latents)
            recorders, mask_window = word_mask_recorders(
                self.transformer, self.tokenizer, word_masks, prompt=prompt, video=video, num_steps=num_steps,
                max_sequence_length=max_sequence_length,
            )
            return CheckedInputs(mask_window=mask_window, recorders=recorders)
        if num_frames is None:
            return CheckedInputs()
        reference, masks = reference or ReferenceOptions(), masks or MaskOptions()
        reference_window, processors = check_reference_controls(self.transformer, reference, num_steps)
        mask_window = step_window(masks.steps, num_steps, "mask_steps") if masks.mask is not None else range(0)
        schedule = call_windows(
            config, num_frames, windows or WindowOptions(), temporal_compression=temporal_compression
        )
        batch_size = prompt_embeds.shape[0] if prompt is None else 1 if isinstance(prompt, str) else len(prompt)
        pixel_mask, source_pixels = check_local_edit(
            self, masks, reference.latents, output_type=output_type, num_frames=num_frames, height=height,
            width=width, batch_size=batch_size,
        )
        return CheckedInputs(
            reference_window=reference_window, processors=processors, mask_window=mask_window, schedule=schedule,
            pixel_mask=pixel_mask, source_pixels=source_pixels,
        )

    @without_step_cache  # a step cache enabled for the edits would skip the inversion's (fixed-point) evaluations
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
        window_weighting: str | None = None,
    ) -> CogVideoXDDIMInversionOutput | tuple:
        r"""
        DDIM-invert a video: run the pipeline's deterministic sampler backwards from its latents to noise (see
        [docs/inversion.md](docs/inversion.md)).

        Args:
            video (`str`, `os.PathLike`, `list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`, *optional*):
                The source video: a file path (decoded with ffmpeg), PIL frames, an array `[F, H, W, 3]` or a tensor
                `[F, 3, H, W]` (uint8, or floats in [0, 1]; a leading batch axis is accepted), with 8k + 1 frames.
                Pass `video` or `latents`.
            latents (`torch.Tensor` of shape `[B, F, C, H, W]`, *optional*):
                Clean, scaled video latents; skips the VAE.
            prompt (`str` or `list[str]`, defaults to `""`):
                The prompt the inversion is conditioned on (the published method: `""`); regenerate with the same
                text as `reference_prompt`.
            negative_prompt (`str` or `list[str]`, *optional*):
                Only used with `guidance_scale > 1`.
            num_inference_steps (`int`, defaults to 50):
                Number of DDIM steps (at least 2); regenerate with the same number so the trajectory lines up.
            guidance_scale (`float`, defaults to 1.0):
                1.0 runs one transformer row per step; above 1, classifier-free guidance (two rows per step).
            strength (`float`, defaults to 1.0):
                Invert only the last `int(num_inference_steps * strength)` denoising timesteps (SDEdit-style);
                regenerate with the same `strength`.
            fixed_point_iterations (`int`, defaults to 0):
                Extra model evaluations per step refining each inverse step towards the exact inverse of the forward
                step (Anderson mixing); 0 is plain DDIM inversion, 2 to 4 make the round trip exact to about 1e-4.
            fixed_point_tolerance (`float`, *optional*, defaults to 1e-5):
                Stop refining a step once the latent's relative change is below this; `None` always runs them all.
            height (`int`, *optional*), width (`int`, *optional*):
                Size the frames are resized to; defaults to `default_video_size(source height, source width)`.
            num_frames (`int` or `"all"`, *optional*):
                With a file path, the most frames to read (default: the transformer's `sample_frames`, 49; `"all"`:
                the whole clip); see `read_source_video` for other selections.
            resize_mode (`str`, defaults to `"crop"`):
                How frames (and `image`) of another aspect reach `height` x `width`: `"crop"`, `"pad"` or
                `"stretch"` ([docs/video_io.md](docs/video_io.md)).
            image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`, *optional*):
                Image-to-video checkpoints: the conditioning image, resized with `resize_mode` and encoded with the
                posterior's mode (as `__call__` prepares it with a reference); defaults to the first frame.
            image_latents (`torch.Tensor`, *optional*):
                Image-to-video checkpoints: ready conditioning latents (e.g. a previous `inv.image_latents`).
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
                Where to keep the trajectory (default: the execution device); `"cpu"` keeps it in (pinned) host
                memory, copied to the device one step at a time by `__call__` ([docs/memory.md](docs/memory.md)).
            mask_words (`str`, `list[str]` or `list[list[str]]`, *optional*):
                Words of `prompt` (or one list per prompt): record the attention the video gives them on the
                inversion's own passes and return it as `attention_map` and, thresholded, as the edit `mask` for
                `__call__` ([docs/masks.md](docs/masks.md)).
            mask_threshold (`float`, defaults to 0.5):
                The mask is where the attention map, scaled to [0, 1] per video, exceeds this; lower covers more.
            mask_blocks (`list[int]`, *optional*):
                Transformer blocks whose attention is recorded (heads averaged, blocks summed); default: the last.
            mask_steps (`float` or `(float, float)`, defaults to 1.0):
                The steps recorded, as fractions of the denoising order like `__call__`'s `reference_steps`.
            mask_refine (`bool`, *optional*):
                Snap the attention map to the source frames' edges with a guided filter before thresholding; needs
                `video`. The default refines when `video` is given.
            return_dict (`bool`, defaults to `True`):
                Return a [`CogVideoXDDIMInversionOutput`] instead of a tuple `(latents, trajectory, timesteps)`.
            window_overlap (`int`, *optional*), window_batch_size (`int`, defaults to 1):
                A clip longer than `sample_frames` runs in overlapping windows of it (text-to-video checkpoints):
                video frames neighbouring windows share (a multiple of 4; default a quarter of the window), windows
                per model call (not changing the result); recorded as `inv.windows`. See docs/long_videos.md.
            window_weighting (`str`, *optional*, defaults to `"pyramid"`):
                How overlapping windows' predictions are averaged per frame: `"flat"` (equally), `"pyramid"` (more
                towards a window's middle: a linear cross-fade; diffusers' FreeNoise) or `"hann"` (a raised cosine);
                recorded in `inv.windows`, which `__call__` reuses. Long clips' progress bars count window calls.

        Returns:
            [`CogVideoXDDIMInversionOutput`] or `tuple`.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 1. Check inputs, all before any model work
        windowing = WindowOptions(overlap=window_overlap, batch_size=window_batch_size, weighting=window_weighting)
        word_masks = WordMaskOptions(
            words=mask_words, threshold=mask_threshold, blocks=mask_blocks, steps=mask_steps, refine=mask_refine
        )
        video, height, width = source_video_size(self, video, latents, height, width, resize_mode)
        if prompt_embeds is not None:
            prompt = None
        device = self._execution_device
        # The forward sampler's timesteps (cut to `strength`); inversion walks them from the last to the first.
        scheduler = self.ddim_scheduler()
        timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, device)
        timesteps = cut_timesteps(timesteps, strength)
        check_invertible(scheduler, timesteps)
        checked = self.check_inputs(
            prompt, height, width, negative_prompt, callback_on_step_end_tensor_inputs, prompt_embeds,
            negative_prompt_embeds, num_steps=len(timesteps), windows=windowing, word_masks=word_masks,
            video=video, max_sequence_length=max_sequence_length, fixed_point_iterations=fixed_point_iterations,
        )
        recorders, mask_window = checked.recorders, checked.mask_window
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
        latents, image_latents, fps, source_frames = prepare_source_latents(
            self, video, latents, image=image, image_latents=image_latents, height=height, width=width,
            num_frames=num_frames, resize_mode=resize_mode, dtype=dtype, device=device,
            keep_source_frames=bool(recorders) and mask_refine is not False,
        )
        batch_size = latents.shape[0]
        prompt_embeds, negative_prompt_embeds = embeds_per_video(prompt_embeds, negative_prompt_embeds, batch_size)
        if do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)

        # 4. Prepare what every step's model call shares (1.5's padding frames are re-made from each step's latents);
        # a long clip runs in windows of the native length, each padded and positioned as a native clip
        schedule = pipeline_windows(
            self.transformer.config, latents.shape[1], windowing, temporal_compression=self.vae_scale_factor_temporal,
            mask_words=mask_words,
        )
        padding = self.padding_frames(schedule.window)
        image_rotary_emb = self._rotary_embeddings(self.pad_frames(latents[:, : schedule.window], padding), device)
        progress = WindowProgress(schedule, window_batch_size)  # a long clip's bar counts window calls
        predict = windowed_inversion_prediction(  # the whole clip, or windows of it combined
            self, schedule, prompt_embeds, window_batch_size=window_batch_size, padding=padding,
            guidance_scale=guidance_scale if do_classifier_free_guidance else None, image_latents=image_latents,
            image_rotary_emb=image_rotary_emb, attention_kwargs=attention_kwargs,
            model_kwargs=self._model_kwargs(latents), on_window_call=progress.window_call,
        )

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
            progress.end_step()
            return step_latents

        with progress.bar_of(self, len(timesteps), "Inverting"), processors_swapped(self.transformer, recorders):
            trajectory, model_evaluations = invert_ddim(
                predict,
                latents,
                timesteps,
                scheduler,
                fixed_point_iterations,
                fixed_point_tolerance,
                on_step=on_step,
                before_step=before_step,
                store=lambda stored: stored_on(stored, trajectory_device),
            )
        self._current_timestep = None
        trajectory = torch.stack(trajectory)

        # 6. The edit mask from the recorded attention (snapped to the source frames' edges on the device)
        attention_map = mask = None
        if recorders:
            attention_map, mask = word_mask(self, recorders, latents.shape, mask_threshold, source_frames, device)

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
        reference_windows=None,
        window_weighting: str | None = None,
    ) -> CogVideoXPipelineOutput | tuple:
        r"""
        Generate a video; with `reference_latents`, regenerate it guided by an inverted source video.

        Takes every argument of [`CogVideoXPipeline.__call__`] with the same meaning and defaults (but
        `num_videos_per_prompt`, which must be 1: pass the prompt several times); with `reference_latents=None` the
        result is `CogVideoXPipeline`'s (with `image`, `CogVideoXImageToVideoPipeline`'s) bit for bit. Latents that
        are not finite at the end raise an error. CogVideoX 1.5's padding frames never appear in an output.

        Args:
            reference_latents (`torch.Tensor` of shape `[T, B, F, C, H, W]`, *optional*):
                An inversion trajectory in denoising order (`pipe.invert(...).trajectory`): step `i` runs
                `reference_latents[i]` beside the sample, whose attention also reads its keys and values. One step
                per step of this call; its shape sets `height`, `width` and `num_frames` when not given. Its batch
                holds one video per prompt, or one video for all prompts (which then share one reference row per
                step in `"shared"` mode). See [docs/reference_attention.md](docs/reference_attention.md).
            reference_timesteps (`torch.Tensor`, *optional*):
                The inversion's `timesteps`; when given they must equal this call's timesteps.
            reference_prompt (`str` or `list[str]`, defaults to `""`):
                Text of the reference rows: the prompt the video was inverted with.
            reference_prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed embeddings of `reference_prompt`.
            reference_mode (`str`, defaults to `"shared"`):
                `"shared"`: one reference row per video and step, read by both guidance branches (3 rows per step).
                `"paired"`: the published layout, one reference row per guidance branch with that branch's text (4).
            strength (`float`, defaults to 1.0):
                Run only the last `strength` fraction of the timesteps, starting from `latents` at that level, e.g.
                `pipe.invert(..., strength=s).trajectory[0]`.
            image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`, *optional*):
                Image-to-video checkpoints: the conditioning image, prepared as `CogVideoXImageToVideoPipeline` does
                without `reference_latents`, and as `invert()` does with them (resized with `resize_mode`, the
                posterior's mode).
            resize_mode (`str`, defaults to `"crop"`):
                With `reference_latents`: how `image` reaches `height` x `width`, as `invert()` resizes the frames.
            image_latents (`torch.Tensor`, *optional*):
                Image-to-video checkpoints: ready conditioning latents, e.g. `inv.image_latents`.
            reference_image_latents (`torch.Tensor` of shape `[B, F, C, H, W]`, *optional*):
                Image-to-video checkpoints: the reference rows' conditioning (default: the sample's); pass
                `inv.image_latents` when the edit starts from an edited first frame.
            reference_steps (`float` or `(float, float)`, defaults to 1.0):
                The steps that use the reference, as fractions of the steps: `0.5` the noisiest half, `(0.2, 0.6)`
                the steps from 20% to 60% (rounded to whole steps, halves up). Outside it no reference rows run.
            reference_blocks (`list[int]`, *optional*):
                Transformer blocks whose attention reads the reference (default: all).
            reference_weight (`float`, defaults to 1.0):
                Scales the attention mass sample queries give to the reference keys: below 1 the edit follows the
                prompt more, above 1 the source; 0 ignores the reference.
            mask (`str`, `list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`, *optional*):
                Limits the edit to a region: 1 where the video may change, 0 where it stays the source (a mask video
                file, PIL masks, or `[F, H, W]` / `[B, F, H, W]` / `[H, W]` values in [0, 1], e.g. `inv.mask`).
                After each step in `mask_steps` the latents outside it are set to the source's. Needs
                `reference_latents` and `source_latents`; see [docs/masks.md](docs/masks.md).
            mask_steps (`float` or `(float, float)`, defaults to 1.0):
                The steps after which the latents are blended, as fractions like `reference_steps`.
            mask_dilation (`int`, defaults to 0):
                Pixels by which to grow the mask first.
            mask_feather (`int`, defaults to 0):
                Pixels over which the mask falls from 1 to 0 around its edge (soft seams).
            mask_latent_dilation (`int`, defaults to 1):
                Latent cells by which the latent mask is grown (the VAE spreads a pixel into neighbouring latents).
            mask_resize_mode (`str`, *optional*):
                The `resize_mode` the source was inverted with, for a `mask` or `source_video` of another aspect
                ratio; without it only the video's aspect ratio is accepted.
            source_latents (`torch.Tensor` of shape `[B, F, C, H, W]`, *optional*):
                The clean source latents, `inv.latents`: what the last step blends to, and what `paste_back`
                decodes without `source_video`.
            paste_back (`bool`, defaults to `False`):
                After decoding, composite the source outside the pixel mask.
            source_video (`str`, `list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`, *optional*):
                The source frames for `paste_back`, in any form `invert(video=...)` takes.
            window_overlap, window_batch_size, window_weighting, reference_windows (*optional*):
                A clip longer than `sample_frames` runs in overlapping windows, as in `invert()`; `reference_windows`
                (`inv.windows`) reuses the inversion's windows and weighting (another `window_overlap` or
                `window_weighting` is refused). See docs/long_videos.md.

        Examples:

        Returns:
            [`~pipelines.cogvideo.pipeline_output.CogVideoXPipelineOutput`] or `tuple`: the generated frames.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 1. Check inputs. Raise error if not correct (windows, masks and source pixels too: before any model work)
        num_frames = long_clip_frames(
            self.transformer.config, num_frames, temporal_compression=self.vae_scale_factor_temporal, latents=latents,
            reference_windows=reference_windows,
        )
        height, width, num_frames = call_size(self, height, width, num_frames, reference_latents)
        reference = ReferenceOptions(
            latents=reference_latents, timesteps=reference_timesteps, prompt=reference_prompt,
            prompt_embeds=reference_prompt_embeds, mode=reference_mode, steps=reference_steps, blocks=reference_blocks,
            weight=reference_weight, image_latents=reference_image_latents,
        )
        masks = MaskOptions(
            mask=mask, steps=mask_steps, dilation=mask_dilation, feather=mask_feather,
            latent_dilation=mask_latent_dilation, resize_mode=mask_resize_mode, source_latents=source_latents,
            paste_back=paste_back, source_video=source_video,
        )
        windowing = WindowOptions(
            overlap=window_overlap, batch_size=window_batch_size, weighting=window_weighting,
            reference_windows=reference_windows,
        )
        checked = self.check_inputs(
            prompt, height, width, negative_prompt, callback_on_step_end_tensor_inputs, prompt_embeds,
            negative_prompt_embeds, num_frames=num_frames, num_videos_per_prompt=num_videos_per_prompt,
            num_steps=len(cut_timesteps(range(len(timesteps) if timesteps else num_inference_steps), strength)),
            output_type=output_type, reference=reference, masks=masks, windows=windowing,
        )
        schedule = checked.schedule
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False

        # 2. Default call parameters
        batch_size = prompt_embeds.shape[0] if prompt is None else 1 if isinstance(prompt, str) else len(prompt)
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
            prepare_call_latents(
                self, latents, image=image, image_latents=image_latents, reference=reference, batch_size=batch_size,
                num_frames=num_frames, height=height, width=width, resize_mode=resize_mode, dtype=prompt_embeds.dtype,
                device=device, generator=generator, windowed=schedule.num_windows > 1,
            )
        )
        schedule, model_padding = sample_windows(
            self.transformer.config, schedule, latent_count=latents.shape[1], padding=model_padding
        )
        model_kwargs = self._model_kwargs(latents)

        # 6. Prepare the reference rows (laid out after the sample rows) and the latent mask
        sample_rows, reference_embeds, reference_kwargs = prompt_embeds.shape[0], None, None
        if reference_latents is not None:
            check_reference_inputs(reference, timesteps, latents.shape)
            reference_embeds = reference_row_embeds(self.encode_prompt, reference, prompt_embeds, device)
            reference_rows = reference_embeds.shape[0]
            reference_kwargs = reference_attention_kwargs(attention_kwargs, reference_rows, reference_weight)
        pixel_mask = checked.pixel_mask
        latent_mask = None if pixel_mask is None else latent_edit_mask(
            pixel_mask, spatial=self.vae_scale_factor_spatial, temporal=self.vae_scale_factor_temporal,
            latent_dilation=mask_latent_dilation, device=device, dtype=latents.dtype,
        )

        # 7. Prepare extra step kwargs. TODO: Logic should ideally just be moved out of the pipeline
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        # 8. Create rotary embeds if required
        image_rotary_emb = (
            self._prepare_rotary_positional_embeddings(height, width, schedule.window + model_padding, device)
            if self.transformer.config.use_rotary_positional_embeddings
            else None
        )
        progress = WindowProgress(schedule, window_batch_size)  # a long clip's bar counts window calls
        predict = windowed_step_prediction(  # the whole clip, or windows of it combined
            self, schedule, scheduler, window_batch_size=window_batch_size, padding=model_padding,
            guidance=do_classifier_free_guidance, sample_rows=sample_rows, image_rotary_emb=image_rotary_emb,
            attention_kwargs=attention_kwargs, model_kwargs=model_kwargs, reference=reference,
            reference_steps=checked.reference_window, reference_embeds=reference_embeds,
            reference_kwargs=reference_kwargs, image_latents=model_image_latents,
            reference_image_latents=model_reference_image_latents, on_window_call=progress.window_call,
        )

        # 9. Denoising loop
        num_warmup_steps = max(len(timesteps) - num_inference_steps * scheduler.order, 0)

        processors = checked.processors  # the reference attention processors, installed for the loop
        with progress.bar_of(self, num_inference_steps, "Editing"), processors_swapped(self.transformer, processors):
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
                noise_pred = predict(latents, t, i, prompt_embeds)  # per step: a callback's new `prompt_embeds` too

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

                if latent_mask is not None and i in checked.mask_window:
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
                    progress.end_step()

        self._current_timestep = None

        # 10. Decode. Padding frames added for CogVideoX 1.5 are discarded (from latent outputs too, unlike diffusers)
        latents = check_finite_latents(latents[:, latents.shape[1] - latent_frames :])
        video = latents
        if not output_type == "latent":
            paste_mask = pixel_mask if paste_back else None
            video = decode_with_paste_back(
                self, latents, output_type, paste_mask=paste_mask, source_pixels=checked.source_pixels,
                source_latents=source_latents,
            )

        # Offload all models
        self.maybe_free_model_hooks()

        if not return_dict:
            return (video,)

        return CogVideoXPipelineOutput(frames=video)
