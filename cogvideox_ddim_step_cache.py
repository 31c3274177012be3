"""Step caches around inversion, and measuring them: the decorator that keeps a step cache enabled for the edits away
from `invert()` (whose fixed-point refinement calls the transformer repeatedly at one timestep with inputs that barely
change, exactly what a cache would skip), MagCache re-targeted to an edit's steps, and the counting and calibration
that tests and benchmarks use. `cogvideox_ddim_memory` re-exports these names.

Imports only modules the pipeline file also imports directly (diffusers' `custom_pipeline` loader ships only the
pipeline file's direct relative imports).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

from .cogvideox_ddim_sampling import cut_timesteps


@contextlib.contextmanager
def cache_disabled(transformer) -> Iterator[None]:
    """Run the block with the transformer's cache hooks removed; they come back afterwards with fresh state."""
    config = getattr(transformer, "_cache_config", None)
    if config is None:
        yield
        return
    transformer.disable_cache()
    try:
        yield
    finally:
        transformer.enable_cache(config)


@contextlib.contextmanager
def cache_context(transformer, name: str) -> Iterator[None]:
    """Run the block in the named cache context with fresh cache state (no-op without a cache), so inversion and
    regeneration never compare against each other's steps."""
    if getattr(transformer, "_cache_config", None) is None:
        yield
        return
    transformer._reset_stateful_cache()
    try:
        with transformer.cache_context(name):
            yield
    finally:
        transformer._reset_stateful_cache()


def inversion_cache(transformer, allowed: bool = False):
    """The context `invert()` runs in: the cache removed, or with `allowed` the named context "inversion"."""
    return cache_context(transformer, "inversion") if allowed else cache_disabled(transformer)


def without_step_cache(invert):
    """`invert()`'s decorator: the inversion runs in `inversion_cache(pipe.transformer, pipe.cache_inversion)`, so
    a step cache enabled for the edits (`apply_memory_options`, or diffusers' own `transformer.enable_cache`) never
    touches the inversion unless `pipe.cache_inversion` is set (`MemoryOptions.cache_inversion`)."""

    @functools.wraps(invert)
    def wrapper(pipe, *args, **kwargs):
        with inversion_cache(pipe.transformer, allowed=getattr(pipe, "cache_inversion", False)):
            return invert(pipe, *args, **kwargs)

    return wrapper


def match_cache_to_steps(transformer, num_inference_steps: int, strength: float = 1.0):
    """MagCache counts the transformer calls of one denoising run against its `num_inference_steps`: re-target it to
    the calls an edit makes (`num_inference_steps` cut to `strength`). Other caches need nothing."""
    num_steps = len(cut_timesteps(range(num_inference_steps), strength))
    config = getattr(transformer, "_cache_config", None)
    if type(config).__name__ != "MagCacheConfig" or config.num_inference_steps == num_steps:
        return
    transformer.disable_cache()
    ratios = getattr(config, "source_mag_ratios", None) or [float(r) for r in config.mag_ratios]
    retargeted = dataclasses.replace(config, num_inference_steps=num_steps, mag_ratios=list(ratios))
    retargeted.source_mag_ratios = ratios  # interpolated from the calibrated ratios each time, not from the last
    transformer.enable_cache(retargeted)


# Counting block evaluations (tests and benchmarks) ----------------------------------------------------------------

class BlockEvaluationCounter:
    """Counts the transformer blocks that really ran (`evaluations`, a forward hook on each block's first norm: a
    block a cache skips never reaches it) and the attention layers that really ran (`attention_evaluations`, on each
    attention's query projection: TaylorSeer predicts attention outputs inside blocks that run). Use as a context
    manager around the calls to count."""

    def __init__(self, transformer):
        self.blocks = list(transformer.transformer_blocks)
        self.evaluations = 0
        self.attention_evaluations = 0
        self._handles = []

    def _count_block(self, *_):
        self.evaluations += 1

    def _count_attention(self, *_):
        self.attention_evaluations += 1

    def __enter__(self):
        for block in self.blocks:
            self._handles.append(block.norm1.register_forward_hook(self._count_block))
            self._handles.append(block.attn1.to_q.register_forward_hook(self._count_attention))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        return False


def calibrate_mag_ratios(pipe, num_inference_steps: int, **call_kwargs: Any) -> list[float]:
    """MagCache's magnitude ratios for this checkpoint, from one calibration run of `pipe(...)` in which no block is
    skipped (diffusers' calibration mode; it prints them, this returns them)."""
    from diffusers import MagCacheConfig
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.mag_cache import _MAG_CACHE_BLOCK_HOOK

    pipe.transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=num_inference_steps))
    ratios = []
    try:
        for block in pipe.transformer.transformer_blocks:
            hook = HookRegistry.check_if_exists_or_initialize(block).hooks.get(_MAG_CACHE_BLOCK_HOOK)
            if hook is None or not hasattr(hook, "_perform_calibration_step"):
                continue
            step = hook._perform_calibration_step

            def recording_step(state, residual, step=step):
                step(state, residual)
                ratios[:] = list(state.calibration_ratios)

            hook._perform_calibration_step = recording_step
        pipe(num_inference_steps=num_inference_steps, **call_kwargs)
    finally:
        pipe.transformer.disable_cache()
    return ratios
