"""The rows the transformer runs at each step: sample rows, reference rows (an inverted trajectory's latent at the
step's noise level) and image-to-video conditioning; the attention processors that let the sample read the reference
(or record attention on words); and the one transformer call with classifier-free guidance that `invert()` and
`__call__` share.

Imports only modules the pipeline file also imports directly (diffusers' `custom_pipeline` loader ships only the
pipeline file's direct relative imports).
"""

import contextlib

import torch

from .cogvideox_ddim_sampling import step_window
from .cogvideox_ddim_windows import split_windows, window_rows, windowed
from .processors.reference_attention import CogVideoXRefAttnProcessor
from .processors.text_attention import CogVideoXTextAttentionRecorder


from .cogvideox_ddim_choices import REFERENCE_MODES  # noqa: E402  (torch-free, shared with the front ends)


def check_blocks(blocks, num_blocks: int, name: str, allow_empty: bool = False) -> list[int]:
    """`blocks` as a list, refused (naming the range) when holding an index outside the transformer, or when empty
    unless `allow_empty` (no block reads the reference: the rows still run, a control experiment)."""
    blocks = list(blocks)
    unknown = [block for block in blocks if not (isinstance(block, int) and 0 <= block < num_blocks)]
    if unknown or not (blocks or allow_empty):
        raise ValueError(
            f"`{name}` {blocks} must be blocks of the transformer, which has blocks 0..{num_blocks - 1}"
            + (f" ({unknown} out of range)." if unknown else " (at least one).")
        )
    return blocks


def reference_processors(layer_names: list[str], reference_blocks: list[int] | None) -> dict:
    """One `CogVideoXRefAttnProcessor` per attention layer; layers outside `reference_blocks` (default: all) pass the
    reference rows through without reading them."""
    blocks = range(len(layer_names)) if reference_blocks is None else check_blocks(
        reference_blocks, len(layer_names), "reference_blocks", allow_empty=True
    )
    return {
        name: CogVideoXRefAttnProcessor(attend_to_reference=index in blocks) for index, name in enumerate(layer_names)
    }


def text_attention_recorders(layer_names: list[str], blocks: list[int] | None, text_token_weights: torch.Tensor):
    """Recording processors for the attention layers of `blocks` (default: the last block)."""
    blocks = [len(layer_names) - 1] if blocks is None else check_blocks(blocks, len(layer_names), "mask_blocks")
    return {layer_names[b]: CogVideoXTextAttentionRecorder(text_token_weights) for b in sorted(set(blocks))}


@contextlib.contextmanager
def processors_swapped(transformer, processors: dict):
    """Install `processors` (by attention layer name) on `transformer` for the duration of a `with` block, then put
    back what was installed before, also on an error. Nothing happens for an empty dict."""
    if not processors:
        yield
        return
    installed = transformer.attn_processors
    transformer.set_attn_processor({**installed, **processors})
    try:
        yield
    finally:
        transformer.set_attn_processor(installed)


def check_reference_inputs(reference, timesteps: torch.Tensor, latents_shape: tuple[int, ...]):
    """The reference trajectory (`ReferenceOptions`) against this call's timesteps and sample latents' shape."""
    reference_latents, reference_timesteps, reference_mode = reference.latents, reference.timesteps, reference.mode
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



def with_reference_rows(sample_input: torch.Tensor, reference: torch.Tensor, reference_rows: int) -> torch.Tensor:
    """The sample rows followed by `reference_rows` rows of the step's reference latents (one per reference video,
    repeated for the paired layout's two guidance branches)."""
    reference = reference.to(device=sample_input.device, dtype=sample_input.dtype, non_blocking=True)
    return torch.cat([sample_input, reference.repeat(reference_rows // reference.shape[0], 1, 1, 1, 1)])


def with_image_rows(
    model_input: torch.Tensor,
    sample_rows: int,
    image_latents: torch.Tensor,
    reference_image_latents: torch.Tensor | None = None,
    reference_videos: int = 1,
) -> torch.Tensor:
    """Image-to-video: every row gets its video's conditioning on the channel axis; reference rows the reference
    videos' own (`reference_image_latents`) or else that of the first `reference_videos` sample videos."""
    image_rows = image_latents.repeat(sample_rows // image_latents.shape[0], 1, 1, 1, 1)
    extra_rows = model_input.shape[0] - sample_rows
    if extra_rows:
        reference_image = reference_image_latents
        if reference_image is None:
            reference_image = image_latents[:reference_videos]
        repeats = extra_rows // reference_image.shape[0]
        image_rows = torch.cat([image_rows, reference_image.repeat(repeats, 1, 1, 1, 1)])
    return torch.cat([model_input, image_rows], dim=2)


def guided_prediction(
    transformer,
    model_input: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    timestep: torch.Tensor,
    sample_rows: int,
    *,
    padding: int = 0,
    guidance_scale: float | None = None,
    image_rotary_emb=None,
    attention_kwargs: dict | None = None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    """The transformer on `model_input`, then classifier-free guidance: the prediction for the first `sample_rows`
    rows (`[uncond ; cond]` when `guidance_scale` is given), the `padding` front frames dropped, in float32."""
    with transformer.cache_context("cond_uncond"):
        prediction = transformer(
            hidden_states=model_input,
            encoder_hidden_states=encoder_hidden_states,
            timestep=timestep.expand(model_input.shape[0]),  # broadcast in a way compatible with ONNX/Core ML
            image_rotary_emb=image_rotary_emb,
            attention_kwargs=attention_kwargs,
            return_dict=False,
            **(model_kwargs or {}),
        )[0]
    prediction = prediction[:sample_rows, padding:].float()  # the reference rows' and padding frames' are not used
    if guidance_scale is not None:
        uncond, text = prediction.chunk(2)
        prediction = uncond + guidance_scale * (text - uncond)
    return prediction


def check_reference_controls(transformer, reference, num_steps: int) -> tuple[range, dict]:
    """The steps that run reference rows and the processors that read them (none without a reference), checked
    before any model work. `reference` is `__call__`'s `ReferenceOptions`."""
    if reference.latents is None:
        return range(0), {}
    reference_window = step_window(reference.steps, num_steps, "reference_steps")
    if reference.mode not in REFERENCE_MODES:
        raise ValueError(f"`reference_mode` must be 'shared' or 'paired', got {reference.mode!r}.")
    if reference.weight < 0:
        raise ValueError(f"`reference_weight` must be >= 0, got {reference.weight}.")
    return reference_window, reference_processors(list(transformer.attn_processors), reference.blocks)


def reference_row_embeds(encode_prompt, reference, prompt_embeds, device) -> torch.Tensor:
    """The text embeddings of the reference rows (`reference`: `ReferenceOptions`): in paired mode the sample's (one
    per guidance branch), in shared mode the reference prompt's (encoded with `encode_prompt`, the pipeline's), one
    row per reference video."""
    if reference.mode == "paired":
        return prompt_embeds
    reference_prompt_embeds = reference.prompt_embeds
    if reference_prompt_embeds is None:
        reference_prompt_embeds, _ = encode_prompt(
            reference.prompt,
            do_classifier_free_guidance=False,
            max_sequence_length=prompt_embeds.shape[1],
            device=device,
            dtype=prompt_embeds.dtype,
        )
    # one shared row per reference video: several prompts editing one video share a single row
    reference_videos = reference.latents.shape[1]
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


def embeds_per_video(prompt_embeds, negative_prompt_embeds, batch_size: int):
    """Text embeddings with one row per video: one prompt serves every video; otherwise one prompt per video."""
    if prompt_embeds.shape[0] == batch_size:
        return prompt_embeds, negative_prompt_embeds
    if prompt_embeds.shape[0] != 1:
        raise ValueError(
            f"{prompt_embeds.shape[0]} prompts for {batch_size} videos: pass one prompt, or one per video."
        )
    if negative_prompt_embeds is not None:
        negative_prompt_embeds = negative_prompt_embeds.expand(batch_size, -1, -1)
    return prompt_embeds.expand(batch_size, -1, -1), negative_prompt_embeds


def reference_attention_kwargs(attention_kwargs: dict | None, reference_rows: int, reference_weight: float) -> dict:
    """The attention kwargs of a step with reference rows: how many rows are the reference's (after the sample's),
    and the reference weight when it is not 1."""
    reference_kwargs = {**(attention_kwargs or {}), "reference_rows": reference_rows}
    return reference_kwargs if reference_weight == 1.0 else {**reference_kwargs, "reference_weight": reference_weight}


def window_reference_rows(
    reference: torch.Tensor,
    reference_embeds: torch.Tensor,
    schedule,
    windows: tuple[int, ...],
    sample_videos: int,
    text_branches: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference latents and text embeddings of the reference rows for `windows` of a `WindowSchedule`: each
    window's rows hold the same window of the trajectory's step `reference` `[R, F, C, H, W]`, so that its keys,
    values and RoPE positions line up with the sample window that reads them.

    The sample rows of a call are `[branch, window, video]` (`windowed`'s window-major batches within each guidance
    branch) and sample row j reads reference row j % rows (`CogVideoXRefAttnProcessor`). `reference_embeds` has
    `text_branches` branches (paired mode with guidance: 2; shared: 1). With several windows in one call, one reference
    video shared by several prompts gets a row per prompt, so that every sample row reads its own window. One window
    returns the step's latents and the embeddings as they are."""
    if schedule.num_windows == 1:
        return reference, reference_embeds
    count = len(windows)
    if count > 1 and reference.shape[0] < sample_videos:
        reference = reference.expand(sample_videos, *reference.shape[1:])
        if text_branches == 1 and reference_embeds.shape[0] < sample_videos:
            reference_embeds = reference_embeds.expand(sample_videos, *reference_embeds.shape[1:])
    return split_windows(reference, schedule, windows), window_rows(reference_embeds, count, text_branches)


def windowed_step_prediction(
    pipe,
    schedule,
    scheduler,
    *,
    window_batch_size: int,
    padding: int,
    guidance: bool,
    sample_rows: int,
    image_rotary_emb,
    attention_kwargs: dict | None,
    model_kwargs: dict,
    reference=None,
    reference_steps: range = range(0),
    reference_embeds: torch.Tensor | None = None,
    reference_kwargs: dict | None = None,
    image_latents: torch.Tensor | None = None,
    reference_image_latents: torch.Tensor | None = None,
    on_window_call=None,
):
    """`__call__`'s guided prediction at a step, `predict(latents, t, i, prompt_embeds)`, run on `schedule`'s windows
    of the latents (`windowed`) and combined; for a one-window schedule one call on the whole clip, as without
    windows. Every window is padded (`padding`: 1.5's frames, `pipe.pad_frames`) and positioned (`image_rotary_emb`,
    for one window) as a native clip; step `i` in `reference_steps` adds the reference rows of the same windows of
    `reference.latents[i]` (`reference`: `ReferenceOptions`; `window_reference_rows`). `sample_rows` are one window's
    (`prompt_embeds` rows); `pipe.guidance_scale` is read at every call (dynamic guidance); `on_window_call` runs
    after every model call (progress). `image_latents`/`reference_image_latents` are the padded conditioning."""
    reference_latents = None if reference is None else reference.latents
    branches = 2 if guidance else 1

    def predict_window(window_latents, windows, t, i, prompt_embeds):
        count = len(windows)
        model_latents = pipe.pad_frames(window_latents, padding)
        model_input = torch.cat([model_latents] * branches)
        encoder_hidden_states, step_attention_kwargs = window_rows(prompt_embeds, count, branches), attention_kwargs
        if reference_latents is not None and i in reference_steps:
            step_reference = reference_latents[i].to(model_input.device, model_input.dtype, non_blocking=True)
            text_branches = reference_embeds.shape[0] // (sample_rows // branches) if reference.mode == "paired" else 1
            step_reference, embeds = window_reference_rows(
                step_reference, reference_embeds, schedule, windows, sample_rows // branches, text_branches
            )
            model_input = with_reference_rows(model_input, pipe.pad_frames(step_reference, padding), embeds.shape[0])
            encoder_hidden_states = torch.cat([encoder_hidden_states, embeds])
            step_attention_kwargs = {**reference_kwargs, "reference_rows": embeds.shape[0]}
        model_input = scheduler.scale_model_input(model_input, t)
        if image_latents is not None:  # image-to-video (one window): each row gets its video's conditioning
            model_input = with_image_rows(
                model_input, sample_rows, image_latents, reference_image_latents,
                reference_latents.shape[1] if reference_latents is not None else 1,
            )
        return guided_prediction(
            pipe.transformer, model_input, encoder_hidden_states, t, count * sample_rows, padding=padding,
            guidance_scale=pipe.guidance_scale if guidance else None, image_rotary_emb=image_rotary_emb,
            attention_kwargs=step_attention_kwargs, model_kwargs=model_kwargs,
        )

    return windowed(predict_window, schedule, window_batch_size, on_window_call)


def windowed_inversion_prediction(
    pipe,
    schedule,
    prompt_embeds: torch.Tensor,
    *,
    window_batch_size: int,
    padding: int,
    guidance_scale: float | None,
    image_latents: torch.Tensor | None,
    image_rotary_emb,
    attention_kwargs: dict | None,
    model_kwargs: dict,
    on_window_call=None,
):
    """`invert()`'s guided prediction `predict(latents, t)` on `schedule`'s windows of the latents (`windowed`),
    combined: every window padded (`padding`, `pipe.pad_frames`) and positioned as a native clip, one row per video
    (two with `guidance_scale`: `[uncond ; cond]` of `prompt_embeds`), each with its conditioning `image_latents`."""
    rows = 1 if guidance_scale is None else 2
    image_input = None if image_latents is None else torch.cat([pipe.pad_frames(image_latents, padding)] * rows)

    def predict_window(sample: torch.Tensor, windows: tuple[int, ...], t: torch.Tensor) -> torch.Tensor:
        model_input = torch.cat([pipe.pad_frames(sample, padding)] * rows)
        if image_input is not None:
            model_input = torch.cat([model_input, image_input], dim=2)
        return guided_prediction(
            pipe.transformer, model_input, window_rows(prompt_embeds, len(windows), rows), t, model_input.shape[0],
            padding=padding, guidance_scale=guidance_scale, image_rotary_emb=image_rotary_emb,
            attention_kwargs=attention_kwargs, model_kwargs=model_kwargs,
        )

    return windowed(predict_window, schedule, window_batch_size, on_window_call)
