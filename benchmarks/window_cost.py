"""Seconds per step of a long clip in overlapping windows against one window, measured in one run on a CPU or a GPU.

At the *faithful* size of benchmarks/speed.py (CogVideoX-5B's structure and head size with 8 heads and 2 layers,
160x240, random weights), one process times the same configuration on a one-window clip (13 latent frames = 49
frames) and on a clip of `--windows` windows with the default overlap (3 latent frames: F = O + n (W - O), 33 latent
frames = 129 frames for 3 windows), alternating the two clips `--repeats` times and keeping the fastest run of each.
The expected ratio is the windows formula, windows = ceil((F - O) / (W - O)) in latent frames: every window is a
native clip, and what windows add besides (slicing the windows, the weighted sum of their predictions) is elementwise.
The counted FLOPs (speed.py's meta-device count, windows x one window's layout) give the same ratio. Besides wall
seconds the script reports the process's CPU seconds (`time.process_time`, all threads), whose ratio other processes
on a shared CPU disturb far less than the wall clock's.

Usage:
  python benchmarks/window_cost.py                                   # invert and shared edit, 3 windows, 4 steps
  python benchmarks/window_cost.py --configs shared --steps 2 --repeats 1 --json window_cost.json
  python benchmarks/window_cost.py --device cuda --dtype bf16 --size 5b --steps 2
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402  (benchmarks/speed.py: the sizes, the pipeline builder, timers and FLOP counts)


CONFIGS = ("invert", "shared")  # what a long-clip edit runs: inversion at guidance 1, then the shared edit


def clip_frames(config: dict, windows: int) -> tuple[int, int]:
    """(video frames, latent frames) of the longest clip that runs in `windows` windows with the default overlap."""
    from cogvideox_ddim_inversion.cogvideox_ddim_windows import default_window_overlap

    temporal_compression = config["temporal_compression_ratio"]
    window = (config["sample_frames"] - 1) // temporal_compression + 1
    overlap = default_window_overlap(window, temporal_compression) // temporal_compression
    latent_frames = window if windows == 1 else overlap + windows * (window - overlap)
    return (latent_frames - 1) * temporal_compression + 1, latent_frames


def time_config(pipe, key: str, latent_frames: int, steps: int, timer, device, dtype) -> tuple[float, float, list]:
    """Seconds of `steps` steps of configuration `key` on a clip of `latent_frames`, after a 2-step warm-up: wall
    (the device timer) and this process's CPU time (all threads; what other processes on a shared CPU disturb least);
    and the frames of every transformer call (to check that each one is a native window)."""
    spec = speed.SIZES[pipe.size]
    generator = torch.Generator().manual_seed(0)

    def random(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    shape = (1, latent_frames, 16, spec["height"] // 8, spec["width"] // 8)
    text = (1, pipe.transformer.config.max_text_seq_length, pipe.transformer.config.text_embed_dim)
    latents, empty, prompt, trajectory = random(*shape), random(*text), random(*text), random(steps, *shape)
    frames = (latent_frames - 1) * pipe.vae_scale_factor_temporal + 1

    def call(num_steps):
        if key == "invert":
            pipe.invert(latents=latents, prompt_embeds=empty, negative_prompt_embeds=empty, guidance_scale=1.0,
                        num_inference_steps=num_steps, fixed_point_iterations=0)
        else:
            pipe(prompt_embeds=prompt, negative_prompt_embeds=empty, latents=latents, num_frames=frames,
                 guidance_scale=speed.GUIDANCE, num_inference_steps=num_steps, output_type="latent",
                 reference_latents=trajectory[:num_steps], reference_prompt_embeds=empty, reference_mode="shared")

    calls = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(tuple(kwargs["hidden_states"].shape[:2])), with_kwargs=True
    )
    try:
        with torch.no_grad():
            call(2)  # warm-up (an inversion needs 2 steps)
            calls.clear()
            cpu_started = time.process_time()
            timer.start()
            call(steps)
            return timer.stop(), time.process_time() - cpu_started, calls
    finally:
        hook.remove()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="faithful", choices=list(speed.SIZES), help="default: %(default)s")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--windows", type=int, default=3, help="windows of the long clip (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=4, help="measured steps per clip (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per clip, alternating, fastest kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=list(speed.DTYPES), help="default: bf16 on CUDA, else fp32")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.windows < 2 or args.steps < 2 or args.repeats < 1:
        parser.error("--windows and --steps must be >= 2 (an inversion needs 2 steps), --repeats >= 1.")
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device; use --device cpu.")
    if not cuda and args.size in speed.REAL_SIZES:
        parser.error("the real sizes need a GPU: pass --device cuda, or --size tiny or faithful on a CPU.")
    config = speed.transformer_config(args.size)
    if speed.long_clip_windows(args.size, clip_frames(config, args.windows)[0], config) is None:
        parser.error(f"--size {args.size} is image-to-video, which refuses long clips: choose a text-to-video size.")
    device, dtype = torch.device(args.device), speed.DTYPES[args.dtype or ("bf16" if cuda else "fp32")]
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))

    pipe = speed.build_pipeline(args.size, device, dtype)
    pipe.size = args.size
    timer = speed.DeviceTimer(device)
    clips = {1: clip_frames(config, 1), args.windows: clip_frames(config, args.windows)}
    results = []
    for key in args.configs:
        seconds = {windows: float("inf") for windows in clips}
        cpu_seconds = dict(seconds)
        for _ in range(args.repeats):
            for windows, (frames, latent_frames) in clips.items():
                elapsed, cpu, calls = time_config(pipe, key, latent_frames, args.steps, timer, device, dtype)
                seconds[windows] = min(seconds[windows], elapsed / args.steps)
                cpu_seconds[windows] = min(cpu_seconds[windows], cpu / args.steps)
                native = clips[1][1] + pipe.padding_frames(clips[1][1])
                if {frames for _, frames in calls} != {native} or len(calls) != args.steps * windows:
                    sys.exit(f"{key}, {windows} windows: the transformer calls were {calls}, not {args.steps} x "
                             f"{windows} native windows of {native} latent frames.")
        counted = {windows: speed.count_long_clip_flops(args.size, key, frames, args.steps, 1, 0, config)
                   for windows, (frames, _) in clips.items()}
        schedule = speed.long_clip_windows(args.size, clips[args.windows][0], config)
        results.append({
            "size": args.size, "config": key, "steps": args.steps, "repeats": args.repeats,
            "frames": {windows: frames for windows, (frames, _) in clips.items()},
            "latent_frames": {windows: latent for windows, (_, latent) in clips.items()},
            "window_starts": list(schedule.starts),
            "seconds_per_step": seconds,
            "ratio": seconds[args.windows] / seconds[1],
            "cpu_seconds_per_step": cpu_seconds,
            "cpu_ratio": cpu_seconds[args.windows] / cpu_seconds[1],
            "expected_ratio": schedule.num_windows,
            "counted_flops_ratio": counted[args.windows]["flops_per_step"] / counted[1]["flops_per_step"],
        })
        print(f"[{key}] done", file=sys.stderr, flush=True)

    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    label = speed.SIZES[args.size]["label"]
    print(f"{label} on {name} ({str(dtype).removeprefix('torch.')}), {args.steps} steps per clip after a 2-step "
          f"warm-up, fastest of {args.repeats} alternating run(s), seconds from {timer.kind}:\n")
    print(f"| configuration | 1 window: s/step | {args.windows} windows: s/step | ratio | CPU time ratio "
          "| expected (windows) | counted FLOP ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        one, many = (f"{r['seconds_per_step'][w]:.3f} ({r['frames'][w]} frames, {r['latent_frames'][w]} latent)"
                     for w in (1, args.windows))
        cpu = (f"{r['cpu_ratio']:.2f} ({r['cpu_seconds_per_step'][1]:.3f} / "
               f"{r['cpu_seconds_per_step'][args.windows]:.3f} s)")
        print(f"| {speed.config_label(r['config'], 1, 0)} | {one} | {many} | {r['ratio']:.2f} | {cpu} | "
              f"{r['expected_ratio']} | {r['counted_flops_ratio']:.3f} |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"device": name, "dtype": str(dtype), "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
