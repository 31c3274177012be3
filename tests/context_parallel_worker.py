"""One torchrun process of tests/test_context_parallel.py: computes each case in this process alone, then again with
the video tokens spread over all processes, and (rank 0) writes the relative differences as JSON.

  torchrun --nproc_per_node N tests/context_parallel_worker.py CHECKPOINTS_DIR OUT.json [--heads H] [--pipeline]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.attention_processor import AttnProcessor2_0, CogVideoXAttnProcessor2_0

from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion.cogvideox_ddim_context_parallel import (
    disable_context_parallel,
    enable_context_parallel,
    init_process_group_from_env,
)
from cogvideox_ddim_inversion.processors.reference_attention import CogVideoXRefAttnProcessor
from cogvideox_ddim_inversion.processors.text_attention import CogVideoXTextAttentionRecorder
from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames
from cogvideox_ddim_inversion.testing.tiny_checkpoint import VARIANTS


TEXT_LENGTH = 16


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


def layouts(variant: str):
    """(name, latent frames, latent height, latent width, sample rows, reference rows, reference weight)."""
    frames = 4 if variant.startswith("cogvideox1.5") else 3  # 1.5 pads 3 latent frames to 4 (temporal patches of 2)
    cases = [
        ("plain", frames, 8, 12, 2, 0, 1.0),
        ("one sample + one reference row", frames, 8, 12, 1, 1, 1.0),
        ("shared", frames, 8, 12, 2, 1, 1.0),
        ("paired, reference_weight 0.5", frames, 8, 12, 2, 2, 0.5),
    ]
    if variant != "cogvideox-5b-i2v":  # learned positions fix the size; elsewhere an odd token count pads
        cases.append(("shared, padded (odd token count)", frames // 2 if frames == 4 else 3, 6, 10, 2, 1, 1.0))
    return cases


def transformer_cases(pipe, transformer, variant: str, degree: int, results: dict):
    config = transformer.config
    patch, patch_t = config.patch_size, config.patch_size_t or 1
    names = list(transformer.attn_processors)
    for name, frames, height, width, sample_rows, reference_rows, weight in layouts(variant):
        rows = sample_rows + reference_rows
        generator = torch.Generator().manual_seed(len(name))
        inputs = dict(
            hidden_states=torch.randn(rows, frames, config.in_channels, height, width, generator=generator),
            encoder_hidden_states=torch.randn(rows, TEXT_LENGTH, config.text_embed_dim, generator=generator),
            timestep=torch.tensor([500] * rows),
            return_dict=False,
        )
        if config.ofs_embed_dim is not None:
            inputs["ofs"] = torch.full((rows,), 2.0)
        if config.use_rotary_positional_embeddings:
            inputs["image_rotary_emb"] = pipe._prepare_rotary_positional_embeddings(
                height * 8, width * 8, frames, torch.device("cpu")
            )
        if reference_rows:
            # block 0 passes the reference rows through, the others read them
            transformer.set_attn_processor(
                {n: CogVideoXRefAttnProcessor(attend_to_reference=i > 0) for i, n in enumerate(names)}
            )
            inputs["attention_kwargs"] = {"reference_rows": reference_rows, "reference_weight": weight}
        else:
            recorder = CogVideoXTextAttentionRecorder(torch.rand(1, TEXT_LENGTH, generator=generator))
            transformer.set_attn_processor({**{n: CogVideoXAttnProcessor2_0() for n in names}, names[-1]: recorder})

        expected = transformer(**inputs)[0]
        expected_map = None if reference_rows else recorder.attention.clone()
        if not reference_rows:
            recorder.attention, recorder.calls = None, 0
        state = enable_context_parallel(transformer, degree)
        try:
            got = transformer(**inputs)[0]
            got_map = None if reference_rows else recorder.attention.clone()
        finally:
            disable_context_parallel(transformer)
        again = transformer(**inputs)[0]
        tokens = frames // patch_t * (height // patch) * (width // patch)
        entry = {
            "relative_error": relative_error(got, expected),
            "video_tokens": tokens,
            "local_tokens": state.local_tokens,
            "exchanges": state.exchanges,
            "disabled_equal": bool(torch.equal(again, expected)),
        }
        if expected_map is not None:
            entry["map_relative_error"] = relative_error(got_map, expected_map)
        results[f"{variant} | {name}"] = entry


def refusals(transformer, degree: int, rank: int) -> dict:
    """What enabling refuses once a process group exists: a degree that is not the group's size, enabling twice, an
    attention processor it does not know and inputs that differ between processes (both refused at the call, on
    every process, before any exchange)."""
    messages = {}
    try:
        enable_context_parallel(transformer, degree + 1)
    except ValueError as error:
        messages["degree"] = str(error)
    enable_context_parallel(transformer, degree)
    try:
        enable_context_parallel(transformer, degree)
    except RuntimeError as error:
        messages["twice"] = str(error)
    transformer.set_attn_processor(AttnProcessor2_0())
    config = transformer.config
    try:
        transformer(
            hidden_states=torch.randn(1, 3, config.in_channels, 8, 12, generator=torch.Generator().manual_seed(0)),
            encoder_hidden_states=torch.zeros(1, TEXT_LENGTH, config.text_embed_dim),
            timestep=torch.tensor([500]),
        )
    except TypeError as error:
        messages["processor"] = str(error)
    finally:
        transformer.set_attn_processor(CogVideoXAttnProcessor2_0())
    try:  # each process draws its own noise: refused on every process, before any exchange
        transformer(
            hidden_states=torch.randn(1, 3, config.in_channels, 8, 12, generator=torch.Generator().manual_seed(rank)),
            encoder_hidden_states=torch.zeros(1, TEXT_LENGTH, config.text_embed_dim),
            timestep=torch.tensor([500]),
        )
    except ValueError as error:
        messages["inputs"] = str(error)
    finally:
        disable_context_parallel(transformer)
    return messages


def pipeline_cases(pipe, variant: str, degree: int, results: dict):
    """`invert` with `mask_words` and a shared and a paired edit, alone and with context parallelism."""
    frames = np.stack(sample_clip_frames(num_frames=9))
    call = dict(num_inference_steps=2, max_sequence_length=TEXT_LENGTH)
    image = {"image": frames[0]} if variant.endswith("i2v") else {}

    def run():
        inv = pipe.invert(video=frames, prompt="a red circle", mask_words="circle", **call, **image)
        condition = {"image_latents": inv.image_latents} if inv.image_latents is not None else {}
        edits = [
            pipe(prompt="a blue circle", latents=inv.trajectory[0], reference_latents=inv.trajectory,
                 reference_mode=mode, guidance_scale=6.0, output_type="latent", **call, **condition).frames
            for mode in ("shared", "paired")
        ]
        return inv, edits

    inv, edits = run()
    state = pipe.enable_context_parallel()  # the pipeline's method: every process of the launch
    try:
        inv_cp, edits_cp = run()
    finally:
        pipe.disable_context_parallel()
    results[f"{variant} | pipeline"] = {
        "trajectory": relative_error(inv_cp.trajectory, inv.trajectory),
        "attention_map": relative_error(inv_cp.attention_map, inv.attention_map),
        "mask_equal": bool(torch.equal(inv_cp.mask, inv.mask)),
        "shared_edit": relative_error(edits_cp[0], edits[0]),
        "paired_edit": relative_error(edits_cp[1], edits[1]),
        "exchanges": state.exchanges,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoints", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--heads", type=int, default=None, help="fresh transformer weights with this many heads")
    parser.add_argument("--pipeline", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(1)
    rank, degree, _ = init_process_group_from_env()
    results = {}
    for variant in args.variants:
        pipe = CogVideoXDDIMInversionPipeline.from_pretrained(args.checkpoints / variant)
        pipe.set_progress_bar_config(disable=True)
        transformer = pipe.transformer
        if args.heads:
            try:
                enable_context_parallel(transformer, degree)
            except ValueError as error:
                results[f"{variant} | refusal"] = str(error)
            config = dict(transformer.config)
            config["num_attention_heads"] = args.heads  # head size kept: RoPE splits it over time, height, width
            torch.manual_seed(0)  # the same weights on every process
            transformer = CogVideoXTransformer3DModel.from_config(config).eval()
            pipe.transformer = transformer
        with torch.no_grad():
            transformer_cases(pipe, transformer, variant, degree, results)
        if args.pipeline:
            pipeline_cases(pipe, variant, degree, results)
        if "refusals" not in results and transformer.config.patch_size_t is None:  # 3 latent frames fit
            with torch.no_grad():
                results["refusals"] = refusals(transformer, degree, rank)
    if rank == 0:
        args.out.write_text(json.dumps(results, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
