"""Source videos and latents: reading a source at the pipeline's size, encoding it, the image-to-video conditioning,
`__call__`'s start latents, and decoding with paste-back of the source.

Functions take the pipeline (for its VAE, transformer config and diffusers' own latent preparation). Imports only
modules the pipeline file also imports directly (diffusers' `custom_pipeline` loader ships only those).
"""

import os

import torch
from diffusers import CogVideoXImageToVideoPipeline

from .cogvideox_ddim_checkpoint import latent_frame_count, pixel_frame_count
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


def source_size(video) -> tuple[int, int]:
    """The display `(height, width)` of a source: a file's header (square pixels), or in-memory frames' size."""
    if isinstance(video, (str, os.PathLike)):
        return probe_video(video).display_size  # the header only: a broken file fails before any model work
    return tuple(frames_to_tensor(video).shape[-2:])


def read_source_video(pipe, path, *, height=None, width=None, resize_mode="crop", num_frames=None, sampling="first",
                      skip_frames_start=0, skip_frames_end=0, frame_stride=1) -> VideoFrames:
    """`CogVideoXDDIMInversionPipeline.read_source_video`: a file's frames at the size `invert()` uses."""
    check_resize_mode(resize_mode)
    if height is None or width is None:
        default = pipe.default_video_size(*source_size(path))
        height, width = height or default[0], width or default[1]
    pipe.check_size_for_positional_embeddings(height, width)
    return read_video_frames(
        path,
        skip_frames_start=skip_frames_start,
        skip_frames_end=skip_frames_end,
        frame_stride=frame_stride,
        max_num_frames=None if num_frames == "all" else num_frames or pipe.transformer.config.sample_frames,
        temporal_compression=pipe.vae_scale_factor_temporal,
        sampling=sampling,
        height=height,
        width=width,
        resize_mode=resize_mode,
    )


def load_source_video(pipe, video, *, height: int, width: int, num_frames: int | None, resize_mode: str = "crop"):
    """`CogVideoXDDIMInversionPipeline.load_source_video`: `[B, C, F, H, W]` in [-1, 1] (8k + 1 frames), the fps."""
    fps = None
    if isinstance(video, (str, os.PathLike)):
        source = read_source_video(
            pipe, video, height=height, width=width, resize_mode=resize_mode, num_frames=num_frames
        )
        video, fps = source.frames, source.fps
    frames = resize_frames(frames_to_tensor(video), height, width, resize_mode)
    video = (frames * 2 - 1).permute(0, 2, 1, 3, 4)  # [B, F, C, H, W] in [0, 1] -> [B, C, F, H, W] in [-1, 1]
    frames = video.shape[2]
    if frames < MIN_NUM_FRAMES or (frames - 1) % (2 * pipe.vae_scale_factor_temporal) != 0:
        valid = frame_count_for_vae(frames, pipe.vae_scale_factor_temporal)
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


def source_video_size(pipe, video, latents, height, width, resize_mode):
    """`invert()`'s source checked and its size: the latents' size, else `height`/`width` or the default for the
    source (a file's header, or in-memory frames, returned as a tensor). Returns `(video, height, width)`."""
    if (video is None) == (latents is None):
        raise ValueError("Pass exactly one of `video` (frames or a file path) or `latents` (clean video latents).")
    if latents is not None and latents.ndim != 5:
        raise ValueError(f"`latents` must be [B, F, C, H, W] clean video latents, got shape {tuple(latents.shape)}.")
    check_resize_mode(resize_mode)
    if latents is not None:  # the latents fix the size
        return video, *(size * pipe.vae_scale_factor_spatial for size in latents.shape[3:])
    video = video if isinstance(video, (str, os.PathLike)) else frames_to_tensor(video)
    default_height, default_width = pipe.default_video_size(*source_size(video))
    return video, height or default_height, width or default_width


def encode_video(pipe, video: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`CogVideoXDDIMInversionPipeline.prepare_video_latents`: encode a video `[B, C, F, H, W]` in [-1, 1] to scaled
    latents `[B, F, C, H, W]` (the posterior's mode, one video at a time: inversion is deterministic)."""
    video = video.to(device=device, dtype=pipe.vae.dtype)
    posteriors = [pipe.vae.encode(video[index : index + 1]).latent_dist for index in range(len(video))]
    latents = torch.cat([posterior.mode() for posterior in posteriors])
    latents = latents * pipe.vae_scaling_factor_image
    return latents.permute(0, 2, 1, 3, 4).to(dtype=dtype)  # [B, F, C, H, W]


def image_pixels(image, height: int, width: int, resize_mode: str = "crop") -> torch.Tensor:
    """A conditioning image (PIL, `[H, W, 3]` array, `[3, H, W]` or `[B, 3, H, W]` tensor; uint8 or floats in
    [0, 1]) as `[B, 3, H, W]` in [-1, 1] at `height` x `width`, resized with `resize_mode` as source frames are."""
    if isinstance(image, torch.Tensor) and image.ndim == 4:
        pixels = frames_to_tensor(image)[0]  # a batch of images, read as frames
    else:
        pixels = frames_to_tensor([image])[:, 0]
    return resize_frames(pixels, height, width, resize_mode) * 2 - 1


def prepare_image_latents(
    pipe, image: torch.Tensor, latent_frames: int, dtype: torch.dtype, device: torch.device,
    generator: torch.Generator | list[torch.Generator] | None = None, sample_posterior: bool = False,
) -> torch.Tensor:
    """`CogVideoXDDIMInversionPipeline.prepare_image_latents`: image-to-video conditioning `[B, F, C, H, W]` of pixels
    `[B, 3, H, W]` in [-1, 1] (`image_pixels`): the encoded image, then zeros, as `CogVideoXImageToVideoPipeline`
    builds it (before the 1.5 padding). The posterior's mode; `sample_posterior` samples it as diffusers does (to
    compare with diffusers)."""
    posterior = pipe.vae.encode(image.unsqueeze(2).to(device=device, dtype=pipe.vae.dtype)).latent_dist
    image_latents = posterior.sample(generator) if sample_posterior else posterior.mode()
    image_latents = image_latents.to(dtype).permute(0, 2, 1, 3, 4)  # [B, 1, C, H, W]
    if pipe.vae.config.get("invert_scale_latents", False):
        image_latents = image_latents / pipe.vae_scaling_factor_image  # as diffusers does for 1.5-I2V
    else:
        image_latents = image_latents * pipe.vae_scaling_factor_image
    padding = image_latents.new_zeros(image_latents.shape[0], latent_frames - 1, *image_latents.shape[2:])
    return torch.cat([image_latents, padding], dim=1)


def conditioning_latents(pipe, image, image_latents, latents, *, height, width, resize_mode, dtype, device):
    """Image-to-video conditioning for `latents` by the one path `invert()` and a referenced `__call__` share:
    `image_latents` as given, or `image` resized with `resize_mode` and encoded with the posterior's mode."""
    if not pipe.is_image_to_video:
        if image is not None or image_latents is not None:
            raise ValueError("`image`/`image_latents` are for image-to-video checkpoints; this one is text-to-video.")
        return None
    if image_latents is None:
        if image is None:
            raise ValueError(
                "This is an image-to-video checkpoint: pass `image` (e.g. the first frame of the video) or "
                "`image_latents` (e.g. `inv.image_latents`)."
            )
        pixels = image_pixels(image, height, width, resize_mode)
        image_latents = prepare_image_latents(pipe, pixels, latents.shape[1], dtype, device)
    return image_latents.to(device=device, dtype=dtype)


def prepare_source_latents(pipe, video, latents, *, image, image_latents, height, width, num_frames, resize_mode,
                           keep_source_frames: bool, dtype, device):
    """`invert()`'s clean latents and image-to-video conditioning: `latents` as given, or `video` read, resized and
    encoded (its first frame the default conditioning image). Returns the latents, the conditioning, the source fps
    and, with `keep_source_frames`, the source pixels (to snap a word mask to their edges)."""
    fps = source_frames = None
    if latents is None:
        video, fps = load_source_video(
            pipe, video, height=height, width=width, num_frames=num_frames, resize_mode=resize_mode
        )
        source_frames = video if keep_source_frames else None
        latents = encode_video(pipe, video, dtype, device)
        if image is None and image_latents is None and pipe.is_image_to_video:
            # the first source frame, already resized and in [-1, 1]
            image_latents = prepare_image_latents(pipe, video[:, :, 0], latents.shape[1], dtype, device)
    latents = latents.to(device=device, dtype=dtype)
    if pipe.is_image_to_video and image is None and image_latents is None:
        raise ValueError(
            "This is an image-to-video checkpoint: with `latents`, also pass `image` (the first frame) or "
            "`image_latents`."
        )
    image_latents = conditioning_latents(
        pipe, image, image_latents, latents, height=height, width=width, resize_mode=resize_mode, dtype=dtype,
        device=device,
    )
    if image_latents is not None and image_latents.shape != latents.shape:
        raise ValueError(
            f"`image_latents` has shape {tuple(image_latents.shape)}, the video latents {tuple(latents.shape)}: "
            "they must match."
        )
    return latents, image_latents, fps, source_frames


def call_size(pipe, height, width, num_frames, reference_latents) -> tuple[int, int, int]:
    """`__call__`'s video size: as given, else the reference's (it fixes the latent size), else the config's."""
    spatial, config = pipe.vae_scale_factor_spatial, pipe.transformer.config
    if reference_latents is not None and reference_latents.ndim == 6:
        _, _, ref_frames, _, ref_height, ref_width = reference_latents.shape
        height, width = height or ref_height * spatial, width or ref_width * spatial
        num_frames = num_frames or pixel_frame_count(ref_frames, pipe.vae_scale_factor_temporal)
    height = height or config.sample_height * spatial
    width = width or config.sample_width * spatial
    return height, width, num_frames or config.sample_frames


def prepare_call_latents(pipe, latents, *, image, image_latents, reference, batch_size, num_frames, height, width,
                         resize_mode, dtype, device, generator, windowed: bool = False):
    """`__call__`'s start latents and image-to-video conditioning (the sample's and the reference rows', padded as
    the model sees them; `reference`: `ReferenceOptions`). Returns them with the video's latent frame count and the
    padding made at every step. `windowed`: a long clip in temporal windows, which pad themselves (none here)."""
    reference_latents, reference_image_latents = reference.latents, reference.image_latents
    latent_frames = latent_frame_count(num_frames, pipe.vae_scale_factor_temporal)

    # For CogVideoX 1.5, the latent frames should be padded to make it divisible by patch_size_t. Generating from
    # scratch, the padding frames are sampled and denoised as diffusers does; following an inversion (a
    # reference, or unpadded start latents) they are re-made at every step as copies of the first frame, as
    # `invert()` makes them, so both directions see the same padding.
    additional_frames = 0 if windowed else pipe.padding_frames(latent_frames)
    stepwise_padding = additional_frames > 0 and (
        reference_latents is not None or (latents is not None and latents.shape[1] == latent_frames)
    )
    if additional_frames > 0 and not stepwise_padding:
        num_frames += additional_frames * pipe.vae_scale_factor_temporal

    latent_channels = pipe.transformer.config.in_channels // (2 if pipe.is_image_to_video else 1)
    if reference_latents is not None:
        # Conditioned as `invert()` conditions (one preparation path): resized with `resize_mode`, the mode.
        image_latents = conditioning_latents(
            pipe, image, image_latents, reference_latents[0], height=height, width=width, resize_mode=resize_mode,
            dtype=dtype, device=device,
        )
        if batch_size > 1:
            # One inverted video edited under several prompts: its start latents and conditioning serve them all.
            if latents is not None and latents.shape[0] == 1:
                latents = latents.expand(batch_size, *latents.shape[1:])
            if image_latents is not None and image_latents.shape[0] == 1:
                image_latents = image_latents.expand(batch_size, *image_latents.shape[1:])
    elif not pipe.is_image_to_video and (image is not None or image_latents is not None):
        raise ValueError("`image`/`image_latents` are for image-to-video checkpoints; this one is text-to-video.")
    elif pipe.is_image_to_video and image_latents is None and image is None:
        raise ValueError(
            "This is an image-to-video checkpoint: pass `image` (e.g. the first frame of the video) or "
            "`image_latents` (e.g. `inv.image_latents`)."
        )

    if pipe.is_image_to_video and image_latents is None:
        # Without a reference: diffusers' own preparation (no crop, a posterior sample), for bit-for-bit parity
        image = pipe.video_processor.preprocess(image, height=height, width=width).to(device, dtype=dtype)
        latents, image_latents = CogVideoXImageToVideoPipeline.prepare_latents(
            pipe, image, batch_size=batch_size, num_channels_latents=latent_channels, num_frames=num_frames,
            height=height, width=width, dtype=dtype, device=device, generator=generator, latents=latents,
        )
        if stepwise_padding:  # diffusers pads by itself here; the padding is re-made at every step instead
            latents, image_latents = latents[:, -latent_frames:], image_latents[:, -latent_frames:]
    else:
        latents = pipe.prepare_latents(
            batch_size, latent_channels, num_frames, height, width, dtype=dtype, device=device, generator=generator,
            latents=latents,
        )
        if image_latents is not None:
            image_latents = image_latents.to(device=device, dtype=dtype)
            if not stepwise_padding:
                image_latents = pipe.pad_frames(image_latents, latents.shape[1] - image_latents.shape[1])
            if image_latents.shape != latents.shape:
                raise ValueError(
                    f"`image_latents` has shape {tuple(image_latents.shape)} but the latents are "
                    f"{tuple(latents.shape)}: pass the `image_latents` of the inversion these latents come from."
                )
    model_padding = additional_frames if stepwise_padding else 0
    # the image-to-video conditioning is the same at every step: pad it once
    model_image_latents = None if image_latents is None else pipe.pad_frames(image_latents, model_padding)
    model_reference_image_latents = None
    if reference_image_latents is not None:
        if reference_latents is None or not pipe.is_image_to_video:
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
        model_reference_image_latents = pipe.pad_frames(reference_image_latents, model_padding)
    return latents, model_image_latents, model_reference_image_latents, latent_frames, model_padding


def decode_with_paste_back(pipe, latents, output_type, paste_mask=None, source_pixels=None, source_latents=None):
    """Decode and postprocess; with `paste_mask`, composite the source outside it first: `source_pixels`, or
    else the decoded `source_latents`."""
    video = pipe.decode_latents(latents)
    if paste_mask is not None:
        if source_pixels is None:
            source_pixels = pipe.decode_latents(source_latents.to(device=latents.device, dtype=latents.dtype))
        source_pixels = source_pixels.to(device=video.device, dtype=video.dtype)
        video = torch.lerp(source_pixels, video, paste_mask.to(video.device, video.dtype).unsqueeze(1))
    return pipe.video_processor.postprocess_video(video=video, output_type=output_type)
