"""The option groups of `__call__` and `invert()`, gathered once in their step 1 from the flat keyword arguments
(which keep diffusers' names, defaults and order) and checked together by the pipeline's `check_inputs` before any
model work. The helpers take a group rather than long lists of same-typed positional arguments.

Imports only modules the pipeline file also imports directly (diffusers' `custom_pipeline` loader ships only the
pipeline file's direct relative imports).
"""

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True, eq=False)
class ReferenceOptions:
    """`__call__`'s `reference_*` arguments: the inverted trajectory the sample reads, and how it is read."""

    latents: torch.Tensor | None = None  # `reference_latents`: [T, B, F, C, H, W]
    timesteps: torch.Tensor | None = None  # `reference_timesteps`
    prompt: str | list[str] = ""  # `reference_prompt`
    prompt_embeds: torch.Tensor | None = None  # `reference_prompt_embeds`
    mode: str = "shared"  # `reference_mode`
    steps: float | tuple[float, float] = 1.0  # `reference_steps`
    blocks: list[int] | None = None  # `reference_blocks`
    weight: float = 1.0  # `reference_weight`
    image_latents: torch.Tensor | None = None  # `reference_image_latents`

    @property
    def active(self) -> bool:
        return self.latents is not None


@dataclass(frozen=True, eq=False)
class MaskOptions:
    """`__call__`'s local-edit arguments: `mask` and its `mask_*` shaping, the source it keeps and `paste_back`."""

    mask: object = None  # `mask`: a file, PIL masks, an array or a tensor
    steps: float | tuple[float, float] = 1.0  # `mask_steps`
    dilation: int = 0  # `mask_dilation`
    feather: int = 0  # `mask_feather`
    latent_dilation: int = 1  # `mask_latent_dilation`
    resize_mode: str | None = None  # `mask_resize_mode`
    source_latents: torch.Tensor | None = None  # `source_latents`
    paste_back: bool = False  # `paste_back`
    source_video: object = None  # `source_video`


@dataclass(frozen=True, eq=False)
class WindowOptions:
    """The `window_*` arguments of `invert()` and `__call__` (and `__call__`'s `reference_windows`)."""

    overlap: int | None = None  # `window_overlap`
    batch_size: int = 1  # `window_batch_size`
    weighting: str | None = None  # `window_weighting`
    reference_windows: object = None  # `reference_windows`: a `WindowSchedule` or its dict


@dataclass(frozen=True, eq=False)
class WordMaskOptions:
    """`invert()`'s `mask_*` arguments: the words whose attention makes the edit mask."""

    words: str | list[str] | list[list[str]] | None = None  # `mask_words`
    threshold: float = 0.5  # `mask_threshold`
    blocks: list[int] | None = None  # `mask_blocks`
    steps: float | tuple[float, float] = 1.0  # `mask_steps`
    refine: bool | None = None  # `mask_refine`


@dataclass(frozen=True, eq=False)
class CheckedInputs:
    """What `check_inputs` derives while checking, handed down so nothing is checked or built twice: the steps that
    run reference rows and the processors that read them, the steps that blend the mask, the window schedule
    (`__call__`; `invert()` builds its own once the latents are known), the local edit's pixel mask and paste-back
    source pixels, and `invert()`'s word-attention recorders."""

    reference_window: range = range(0)
    processors: dict = field(default_factory=dict)
    mask_window: range = range(0)
    schedule: object = None
    pixel_mask: torch.Tensor | None = None
    source_pixels: torch.Tensor | None = None
    recorders: dict = field(default_factory=dict)
