"""Edit masks: reading and shaping a mask, putting it on the latent grid, and making one from the attention that
the video gives to words of the prompt (recorded during inversion), snapped to the frames' edges.

Imports only modules the pipeline file also imports directly (diffusers' `custom_pipeline` loader ships only the
pipeline file's direct relative imports).
"""

import os
import re

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from .cogvideox_ddim_checkpoint import pixel_frame_count
from .cogvideox_ddim_latents import load_source_video, source_size
from .cogvideox_ddim_reference import text_attention_recorders
from .cogvideox_ddim_sampling import step_window
from .cogvideox_ddim_video_io import check_resize_mode, count_frames, frames_to_tensor, read_mask_video, resize_frames


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
    running sums: the cost does not grow with the radius.

    Computed in `x`'s dtype. Running sums in float32 lose the small differences of large totals, so each image's mean
    is taken out first and added back at the end: the sums then stay near 0 (float32 is within 1e-5 of float64 on
    720x480 frames, see tests/test_masks.py)."""

    def window_sums(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[dim]
        sums = torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), x.cumsum(dim)], dim)  # sums[i] = x[:i].sum()
        positions = torch.arange(size, device=x.device)
        end, start = (positions + radius + 1).clamp(max=size), (positions - radius).clamp(min=0)
        return sums.index_select(dim, end) - sums.index_select(dim, start), (end - start).to(x.dtype)

    mean = x.mean(dim=(-2, -1), keepdim=True)
    rows, row_counts = window_sums(x - mean, -2)
    total, column_counts = window_sums(rows, -1)
    return total / (row_counts[:, None] * column_counts[None, :]) + mean


def guided_filter(guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float = 1e-3) -> torch.Tensor:
    """The guided filter of He, Sun and Tang (ECCV 2010) with a colour guide: `source` `[N, H, W]` filtered so that
    its edges follow those of `guide` `[N, 3, H, W]` (colours in [0, 1]). In every window the output is an affine
    function of the guide's colour fitted to the source (ridge `eps`), so a coarse map snaps to the frame's edges.
    Runs where the tensors are, in float32 (float64 inputs stay float64: the reference the tests compare with)."""
    dtype = torch.float64 if guide.dtype == torch.float64 else torch.float32
    guide, source = guide.to(dtype), source.to(dtype)
    mean_guide, mean_source = box_filter(guide, radius), box_filter(source, radius)
    covariance = box_filter(guide * source[:, None], radius) - mean_guide * mean_source[:, None]  # [N, 3, H, W]
    variance = (
        torch.stack(
            [torch.stack([box_filter(guide[:, i] * guide[:, j], radius) for j in range(3)], dim=-1) for i in range(3)],
            dim=-2,
        )
        - mean_guide.permute(0, 2, 3, 1)[..., :, None] * mean_guide.permute(0, 2, 3, 1)[..., None, :]
    )  # [N, H, W, 3, 3]
    variance = variance + eps * torch.eye(3, device=guide.device, dtype=dtype)
    slope = torch.linalg.solve(variance, covariance.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # [N, 3, H, W]
    offset = mean_source - (slope * mean_guide).sum(dim=1)
    return (box_filter(slope, radius) * guide).sum(dim=1) + box_filter(offset, radius)



def prepare_mask(
    mask,
    num_frames: int,
    height: int,
    width: int,
    batch_size: int = 1,
    *,
    dilation: int = 0,
    feather: int = 0,
    resize_mode: str | None = None,
    temporal_compression: int = 4,
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
            mask, max_num_frames=num_frames, temporal_compression=temporal_compression
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
    if (mask_height, mask_width) != (height, width) and not check_aspect_or_resize_mode(
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


def check_aspect_or_resize_mode(
    name: str, source_height: int, source_width: int, height: int, width: int, resize_mode
) -> bool:
    """Whether frames of `name` have the video's aspect ratio (to a pixel). When they do not, refuse unless
    `resize_mode` says how the source was brought to the video's size (guessing would misplace the region)."""
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


def word_pattern(word: str) -> re.Pattern:
    """`word` (or phrase) as a whole word in any case: not inside a longer word ("red" is not in "reddish")."""
    return re.compile(rf"(?<!\w){re.escape(word.strip())}(?!\w)", re.IGNORECASE)


def find_word(word: str, text: str) -> list[tuple[int, int]]:
    """The character spans where `word` occurs in `text` as `word_pattern` finds it."""
    return [match.span() for match in word_pattern(word).finditer(text)]


def word_token_weights(
    tokenizer, prompt: str | list[str], words: str | list[str] | list[list[str]], max_sequence_length: int
) -> torch.Tensor:
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
    encoding = tokenizer(
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
            spans = find_word(word, text)
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


def word_attention_map(
    recorders: list, latents_shape: tuple[int, ...], patch_size: int, patch_size_t: int | None, padding: int
) -> torch.Tensor:
    """The recorders' attention summed, laid out per latent frame and token `[B, F, H / p, W / p]` (1.5's
    temporal patches spread over their frames, padding frames dropped) and scaled to [0, 1] per video."""
    if any(recorder.attention is None for recorder in recorders):
        raise ValueError("No attention was recorded: `mask_steps` selects no step of this inversion.")
    attention = sum(recorder.attention.to(recorders[0].attention.device) for recorder in recorders)
    batch_size, latent_frames, _, latent_height, latent_width = latents_shape
    patch_size_t = patch_size_t or 1
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
    attention_map: torch.Tensor,
    threshold: float,
    *,
    num_frames: int,
    height: int,
    width: int,
    temporal_compression: int,
    radius: int,
    source_frames: torch.Tensor | None = None,
) -> torch.Tensor:
    """The edit mask `[B, F, H, W]` (bool) of an attention map `[B, F_latent, h, w]`: upsampled to the video's
    frames and pixels, snapped to the edges of `source_frames` (`[B, C, F, H, W]` in [-1, 1]) with a guided
    filter of `radius` when they are given, and thresholded. The filter runs where `source_frames` are (pass them
    on the execution device), in float32; the mask is returned on the CPU."""
    device = attention_map.device if source_frames is None else source_frames.device
    soft = attention_map_to_video(attention_map.to(device), num_frames, height, width, temporal_compression)
    if source_frames is not None:
        guide = ((source_frames.float() + 1) / 2).clamp(0, 1).transpose(1, 2)  # [B, F, C, H, W]
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
    return (soft > threshold).cpu()



def word_mask_recorders(transformer, tokenizer, word_masks, *, prompt, video, num_steps: int,
                        max_sequence_length: int) -> tuple[dict, range]:
    """`invert()`'s attention recorders for `word_masks.words` (none without) and the steps they record, checked
    (`word_masks`: `WordMaskOptions`; `video`: the source, which `refine` needs)."""
    if word_masks.words is None:
        return {}, range(0)
    if prompt is None:
        raise ValueError("`mask_words` are found in the prompt's text: pass `prompt`, not `prompt_embeds`.")
    if not 0 < word_masks.threshold < 1:
        raise ValueError(f"`mask_threshold` must be in (0, 1), got {word_masks.threshold}.")
    if word_masks.refine and video is None:
        raise ValueError(
            "`mask_refine=True` snaps the mask to the source frames' edges: pass `video`, not `latents` (or "
            "leave `mask_refine` unset)."
        )
    mask_window = step_window(word_masks.steps, num_steps, "mask_steps")
    weights = word_token_weights(tokenizer, prompt, word_masks.words, max_sequence_length)
    layer_names = list(transformer.attn_processors)
    return text_attention_recorders(layer_names, word_masks.blocks, weights), mask_window


def word_mask(pipe, recorders: dict, latents_shape, threshold: float, source_frames, device):
    """The recorded attention map and the edit mask thresholded from it (snapped to `source_frames`' edges with
    a guided filter of one token's radius, on the execution device, when they are given)."""
    config = pipe.transformer.config
    latent_frames = latents_shape[1]
    height, width = (n * pipe.vae_scale_factor_spatial for n in latents_shape[3:])
    attention_map = word_attention_map(
        list(recorders.values()), latents_shape, config.patch_size, config.patch_size_t,
        pipe.padding_frames(latent_frames),
    )
    mask = mask_from_attention_map(
        attention_map,
        threshold,
        num_frames=pixel_frame_count(latent_frames, pipe.vae_scale_factor_temporal),
        height=height,
        width=width,
        temporal_compression=pipe.vae_scale_factor_temporal,
        radius=pipe.vae_scale_factor_spatial * config.patch_size,  # one token
        source_frames=None if source_frames is None else source_frames.to(device),
    )
    return attention_map, mask


def check_local_edit(pipe, masks, reference_latents, *, output_type, num_frames, height, width,
                     batch_size) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A local edit's pixel mask and paste-back source pixels (`masks`: `__call__`'s `MaskOptions`), read and
    checked before any model work."""
    mask, source_latents, source_video = masks.mask, masks.source_latents, masks.source_video
    pixel_mask = source_pixels = None
    if mask is not None:
        if reference_latents is None:
            raise ValueError(
                "`mask` keeps the source outside it by following the inverted trajectory: pass "
                "`reference_latents=inv.trajectory` (and `source_latents=inv.latents`)."
            )
        pixel_mask = pipe.prepare_mask(
            mask, num_frames, height, width, batch_size, dilation=masks.dilation, feather=masks.feather,
            resize_mode=masks.resize_mode,
        )
        if masks.latent_dilation < 0:
            raise ValueError(
                f"`mask_latent_dilation` is a number of latent cells >= 0, got {masks.latent_dilation}."
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
    if not masks.paste_back:
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
        check_aspect_or_resize_mode("source video", *source_size(source_video), height, width, masks.resize_mode)
        source_pixels, _ = load_source_video(
            pipe, source_video, height=height, width=width, num_frames=num_frames,
            resize_mode=masks.resize_mode or "crop",
        )
        if source_pixels.shape[2] != num_frames or source_pixels.shape[0] not in (1, batch_size):
            raise ValueError(
                f"`source_video` gives {source_pixels.shape[0]} video(s) of {source_pixels.shape[2]} frames; "
                f"expected one (or {batch_size}) of {num_frames} frames, the frames the source was inverted from."
            )
    return pixel_mask, source_pixels


def latent_edit_mask(pixel_mask, *, spatial: int, temporal: int, latent_dilation: int, device, dtype) -> torch.Tensor:
    """The pixel mask on the latent grid (each cell takes the largest value of its pixels), grown by
    `latent_dilation` cells."""
    latent_mask = mask_to_latent_grid(pixel_mask, spatial, temporal)
    return grow_mask(latent_mask, latent_dilation).to(device=device, dtype=dtype)
