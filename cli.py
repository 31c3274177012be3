"""Command line: invert a video with CogVideoX and write its reconstruction and an edit as MP4."""

import argparse
import os
import sys
import warnings

import torch


DEFAULT_MODEL = "THUDM/CogVideoX-5b"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _resolve_device_and_dtype(device: str, dtype: str) -> tuple[str, torch.dtype]:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    return device, DTYPES[dtype]


def load_pipeline(model: str, device: str = "auto", dtype: str = "auto"):
    """Load `model` (a Hub id or a local folder) into `CogVideoXDDIMInversionPipeline`."""
    from .pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    device, torch_dtype = _resolve_device_and_dtype(device, dtype)
    with warnings.catch_warnings():
        # newer diffusers rename `torch_dtype` to `dtype`; the old name works across the supported range
        warnings.simplefilter("ignore", FutureWarning)
        pipe = CogVideoXDDIMInversionPipeline.from_pretrained(model, torch_dtype=torch_dtype)
    return pipe.to(device)


def run_edit(args) -> dict:
    """Invert `args.video`, then write `reconstruction.mp4` and `edit.mp4` into `args.output_dir`."""
    from .video_io import read_video, write_video

    if not os.path.isfile(args.video):
        raise FileNotFoundError(f"Video file not found: {args.video!r}. Check the path.")
    pipe = load_pipeline(args.model, args.device, args.dtype)
    text_length = pipe.transformer.config.max_text_seq_length
    num_frames = args.num_frames or pipe.transformer.config.sample_frames
    frames, fps = read_video(
        args.video,
        skip_frames_start=args.skip_frames_start,
        skip_frames_end=args.skip_frames_end,
        frame_stride=args.frame_stride,
        max_num_frames=num_frames,
    )
    generator = torch.Generator(device="cpu").manual_seed(args.seed)

    print(f"Inverting {len(frames)} frames with {args.steps} steps...", file=sys.stderr)
    inv = pipe.invert(
        video=frames,
        prompt=args.source_prompt,
        num_inference_steps=args.steps,
        height=args.height,
        width=args.width,
        max_sequence_length=text_length,
    )
    start = inv.trajectory[0] if args.start == "inverted" else None
    common = dict(
        reference_latents=inv.trajectory,
        reference_timesteps=inv.timesteps,
        reference_prompt=args.source_prompt,
        reference_mode=args.reference_mode,
        num_inference_steps=args.steps,
        max_sequence_length=text_length,
        output_type="pil",
    )
    print("Reconstructing with the source prompt...", file=sys.stderr)
    reconstruction = pipe(
        prompt=args.source_prompt, guidance_scale=1.0, latents=start, generator=generator, **common
    ).frames[0]
    print("Editing...", file=sys.stderr)
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    edit = pipe(prompt=args.prompt, guidance_scale=args.guidance, latents=start, generator=generator, **common).frames[0]

    fps = args.fps or fps
    outputs = {
        "reconstruction": write_video(reconstruction, os.path.join(args.output_dir, "reconstruction.mp4"), fps),
        "edit": write_video(edit, os.path.join(args.output_dir, "edit.mp4"), fps),
    }
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return outputs


def run_demo(args) -> dict:
    """Write a tiny random checkpoint and a sample clip, then run `edit` on them."""
    from .sample_clip import write_sample_clip
    from .tiny_checkpoint import write_tiny_checkpoint

    checkpoint = os.path.join(args.output_dir, "tiny-checkpoint")
    if not os.path.isfile(os.path.join(checkpoint, "model_index.json")):
        write_tiny_checkpoint(checkpoint, variant=args.variant)
    clip = write_sample_clip(os.path.join(args.output_dir, "sample.mp4"))
    print(
        "Demo with a tiny, randomly initialised CogVideoX: the outputs are noise. This shows the pipeline runs end to "
        f"end; real edits need a real checkpoint (e.g. --model {DEFAULT_MODEL} on a GPU).",
        file=sys.stderr,
    )
    edit_args = argparse.Namespace(
        video=clip, prompt="a blue circle moving right", source_prompt="a red circle moving right",
        model=checkpoint, output_dir=args.output_dir, steps=args.steps, guidance=6.0, seed=0, device="cpu",
        dtype="fp32", height=None, width=None, num_frames=None, skip_frames_start=0, skip_frames_end=0,
        frame_stride=1, reference_mode="shared", start="inverted", fps=None,
    )
    outputs = run_edit(edit_args)
    return {"sample": clip, **outputs}


def run_tiny_checkpoint(args) -> str:
    from .tiny_checkpoint import write_tiny_checkpoint

    path = write_tiny_checkpoint(args.path, args.variant, args.seed)
    print(path)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cogvideox-ddim-inversion",
        description="DDIM-invert a video with CogVideoX and regenerate it under a new prompt.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    edit = commands.add_parser("edit", help="invert a video, write its reconstruction and an edit as MP4")
    edit.add_argument("video", help="input video file (any format ffmpeg reads)")
    edit.add_argument("--prompt", required=True, help="prompt of the edited video")
    edit.add_argument("--source-prompt", default="", help="prompt the video is inverted and reconstructed with")
    edit.add_argument("--model", default=DEFAULT_MODEL, help="Hub id or local folder of a CogVideoX checkpoint")
    edit.add_argument("--output-dir", default="output", help="folder for reconstruction.mp4 and edit.mp4")
    edit.add_argument("--steps", type=int, default=50, help="DDIM steps, for inversion and regeneration")
    edit.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance scale of the edit")
    edit.add_argument("--seed", type=int, default=42)
    edit.add_argument("--device", default="auto", help="cuda, cpu, ... (default: cuda when available)")
    edit.add_argument("--dtype", default="auto", choices=["auto", *DTYPES], help="default: bf16 on GPU, fp32 on CPU")
    edit.add_argument("--height", type=int, default=None, help="default: the model's native height")
    edit.add_argument("--width", type=int, default=None, help="default: the model's native width")
    edit.add_argument("--num-frames", type=int, default=None, help="most frames to use (default: the model's native count)")
    edit.add_argument("--skip-frames-start", type=int, default=0)
    edit.add_argument("--skip-frames-end", type=int, default=0)
    edit.add_argument("--frame-stride", type=int, default=1, help="take every N-th frame")
    edit.add_argument("--reference-mode", default="shared", choices=["shared", "paired"])
    edit.add_argument(
        "--start", default="inverted", choices=["inverted", "noise"],
        help="start from the inverted noise (closer to the source) or fresh noise (the published method)",
    )
    edit.add_argument("--fps", type=float, default=None, help="output frame rate (default: the source's)")
    edit.set_defaults(func=run_edit)

    demo = commands.add_parser("demo", help="run edit end to end on a generated clip with a tiny random model")
    demo.add_argument("--output-dir", default="demo_output")
    demo.add_argument("--steps", type=int, default=10)
    demo.add_argument("--variant", default="cogvideox-5b", help="tiny model structure to mirror")
    demo.set_defaults(func=run_demo)

    tiny = commands.add_parser("tiny-checkpoint", help="write a tiny random CogVideoX checkpoint (tests, demos)")
    tiny.add_argument("path")
    tiny.add_argument("--variant", default="cogvideox-5b")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=run_tiny_checkpoint)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, TypeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
