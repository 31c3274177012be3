"""Command line: invert a video with CogVideoX and write its reconstruction and an edit as MP4."""

import argparse
import os
import sys


DEFAULT_MODEL = "THUDM/CogVideoX-5b"
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # torch loads only when a command runs


def _resolve_device_and_dtype(device: str, dtype: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    return device, getattr(torch, DTYPES[dtype])


def load_pipeline(model: str, device: str = "auto", dtype: str = "auto"):
    """Load `model` (a Hub id or a local folder) into `CogVideoXDDIMInversionPipeline`."""
    from .pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    device, torch_dtype = _resolve_device_and_dtype(device, dtype)
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(model, dtype=torch_dtype)
    return pipe.to(device)


def run_edit(args) -> dict:
    """Invert `args.video`, then write `reconstruction.mp4` and `edit.mp4` into `args.output_dir`."""
    import torch

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
    """Edit a toy-world clip with the committed, trained toy checkpoint; `--random-tiny` runs the old noise demo."""
    if not getattr(args, "random_tiny", False):
        from .toy.demo import run_toy_demo

        metrics = run_toy_demo(args.output_dir, steps=args.steps, checkpoint=getattr(args, "model", None),
                               seed=getattr(args, "seed", 0))
        print(
            f"edit {metrics['source_prompt']!r} -> {metrics['edit_prompt']!r}: detected colour "
            f"{metrics['detected_colour']['edit']} (target {metrics['detected_colour']['target']}), centroid error "
            f"{metrics['centroid_error_px']['edit']:.2f} px, reconstruction PSNR "
            f"{metrics['psnr_db']['reconstruction']:.2f} dB (VAE ceiling {metrics['psnr_db']['vae_ceiling']:.2f} dB)",
            file=sys.stderr,
        )
        for name, path in metrics["files"].items():
            print(f"{name}: {path}")
        return metrics["files"]
    return _run_random_tiny_demo(args)


def _run_random_tiny_demo(args) -> dict:
    """Write a tiny random checkpoint and a sample clip, then run `edit` on them."""
    from .testing.sample_clip import write_sample_clip
    from .testing.tiny_checkpoint import write_tiny_checkpoint

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
    from .testing.tiny_checkpoint import write_tiny_checkpoint

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

    demo = commands.add_parser(
        "demo", help="invert and colour-edit a toy-world clip with the committed toy model (trained on CPU)"
    )
    demo.add_argument("--output-dir", default="demo_output")
    demo.add_argument("--steps", type=int, default=50, help="DDIM steps (with --random-tiny: 10 is plenty)")
    demo.add_argument("--model", default=None, help="toy checkpoint folder (default: the one shipped in the package)")
    demo.add_argument("--seed", type=int, default=0, help="which held-out toy clip to edit")
    demo.add_argument(
        "--random-tiny", action="store_true",
        help="instead: write a tiny randomly initialised checkpoint and run edit on a sample clip (outputs are noise)",
    )
    demo.add_argument("--variant", default="cogvideox-5b", help="with --random-tiny: tiny model structure to mirror")
    demo.set_defaults(func=run_demo)

    tiny = commands.add_parser("tiny-checkpoint", help="write a tiny random CogVideoX checkpoint (tests, demos)")
    tiny.add_argument("path")
    tiny.add_argument("--variant", default="cogvideox-5b")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=run_tiny_checkpoint)

    from .publish import run_publish  # stdlib only at import time: huggingface_hub loads when publishing

    publish = commands.add_parser(
        "publish", help="upload the pipeline code as a Hub repo that custom_pipeline='<namespace>/<name>' loads"
    )
    publish.add_argument("repo_id", help="model repo to create or update, as namespace/name")
    publish.add_argument("--folder", default=None, help="write the Hub folder here (default: a temporary folder)")
    publish.add_argument("--token", default=None, help="Hub token with write access (default: HF_TOKEN, `hf auth login`)")
    publish.add_argument("--private", action="store_true", help="create the repo as private")
    publish.add_argument("--dry-run", action="store_true", help="only write the folder; upload nothing")
    publish.add_argument("--revision", default=None, help="branch to commit to (created if missing; default: main)")
    publish.add_argument("--commit-message", default=None)
    publish.set_defaults(func=run_publish)
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
