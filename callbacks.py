"""Pipeline callbacks for editing with `CogVideoXDDIMInversionPipeline`, in the form of diffusers' `PipelineCallback`s."""

from typing import Any

from diffusers.callbacks import PipelineCallback
from diffusers.configuration_utils import register_to_config


class GuidanceScaleCallback(PipelineCallback):
    r"""
    Changes the classifier-free guidance scale part-way through sampling: from the step after `cutoff_step_ratio` of
    the steps (or after step `cutoff_step_index`) on, guidance is `guidance_scale`.

    Pass it as `callback_on_step_end`, like diffusers' `SDCFGCutoffCallback`. It mutates the pipeline's
    `_guidance_scale`, so the call must start with guidance (`guidance_scale > 1`, which lays out the guidance rows)
    and without `use_dynamic_cfg` (which sets the scale at every step).

    For colour-like edits with reference attention, low guidance first and high guidance late keeps the shape where
    the source has it and still changes the attribute, which the toy model decides in the last, low-noise steps:

    ```py
    >>> from cogvideox_ddim_inversion.callbacks import GuidanceScaleCallback

    >>> raise_guidance = GuidanceScaleCallback(guidance_scale=10.0, cutoff_step_ratio=0.5)
    >>> video = pipe(prompt=edit_prompt, negative_prompt=source_prompt, guidance_scale=2.0,
    ...              latents=inv.trajectory[0], reference_latents=inv.trajectory, reference_prompt=source_prompt,
    ...              callback_on_step_end=raise_guidance).frames[0]
    ```

    Args:
        guidance_scale (`float`):
            The guidance scale from the cutoff on; must be > 1 (1 would still run, and pay for, the guidance rows).
        cutoff_step_ratio (`float`, defaults to 0.5):
            Fraction of the steps after which the new scale applies (`int(num_steps * ratio)`, as diffusers' cutoff
            callbacks count).
        cutoff_step_index (`int`, *optional*):
            The step after which the new scale applies; overrides `cutoff_step_ratio`.
    """

    tensor_inputs = []

    @register_to_config
    def __init__(self, guidance_scale: float, cutoff_step_ratio: float | None = 0.5, cutoff_step_index: int | None = None):
        if cutoff_step_index is not None:
            cutoff_step_ratio = None
        super().__init__(cutoff_step_ratio=cutoff_step_ratio, cutoff_step_index=cutoff_step_index)
        if not guidance_scale > 1:
            raise ValueError(
                f"`guidance_scale` must be > 1, got {guidance_scale}: to turn guidance off part-way, use diffusers' "
                "CFG cutoff callbacks instead."
            )

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs) -> dict[str, Any]:
        if step_index == 0 and not pipeline.guidance_scale > 1:
            raise ValueError(
                f"GuidanceScaleCallback needs a call that starts with guidance: pass `guidance_scale` > 1 (got "
                f"{pipeline.guidance_scale}); without it the pipeline runs no unconditional rows to guide with."
            )
        cutoff_step = (
            self.config.cutoff_step_index
            if self.config.cutoff_step_index is not None
            else int(pipeline.num_timesteps * self.config.cutoff_step_ratio)
        )
        if step_index == cutoff_step:
            pipeline._guidance_scale = self.config.guidance_scale
        return callback_kwargs
