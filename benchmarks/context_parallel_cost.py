"""Cost model of context parallelism (cogvideox_ddim_context_parallel) at the public checkpoints' native sizes.

Counted, per step and per process, for N = 1, 2, 4, 8 processes:

- FLOPs: `torch.utils.flop_counter.FlopCounterMode` over the real transformer configuration built on the meta device
  (as benchmarks/speed.py counts), with the context-parallel hooks installed as process 0 of N and the collectives
  replaced by shape-preserving stand-ins: the same code as a real run, on 1/N of the video tokens (padded) and
  `heads / N` heads in attention. Every process does the same work (the padding sits on the last one's shard, but
  shards are equal in size).
- Bytes: what each all-to-all and all-gather hands over, in bf16, from the tensors the stand-ins receive. A process
  keeps 1/N of each all-to-all buffer and sends the rest; an all-gather sends its part to N - 1 others.

The step time is a model, not a measurement: compute = counted FLOPs / (utilisation x 989 TFLOPS, the H100 SXM dense
bf16 peak) plus communication = bytes sent per process / 900 GB/s (NVLink 4's total per GPU, as the issue states; 450
GB/s per direction would double the communication column), with no overlap of the two.

Usage:
  python benchmarks/context_parallel_cost.py                  # markdown table; --json FILE for the numbers
  python benchmarks/context_parallel_cost.py --sizes 5b --degrees 1 2 --utilisation 0.5
"""

import argparse
import json
import sys
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402  (benchmarks/speed.py: the real configurations and the meta-device FLOP check)


H100_BF16_DENSE_PEAK = 989e12  # FLOP/s, NVIDIA H100 SXM datasheet (1,979 with sparsity)
NVLINK_BYTES_PER_S = 900e9
LAYOUTS = {  # name: (sample rows, reference rows) per transformer call, one call per step
    "invert, guidance 1": (1, 0),
    "edit, shared": (2, 1),
    "edit, paired": (2, 2),
}


class CountingCollectives:
    """Stand-ins for torch.distributed's collectives on the meta device: they return tensors of the right shape and
    add up what a real process would send."""

    def __init__(self, degree: int):
        self.degree = degree
        self.calls = []  # (kind, bytes of the whole buffer on this process)

    def all_to_all(self, tensor):
        self.calls.append(("all_to_all", tensor.numel() * tensor.element_size()))
        return torch.empty_like(tensor.contiguous())

    def all_gather(self, tensor):
        self.calls.append(("all_gather", tensor.numel() * tensor.element_size()))
        return [torch.empty_like(tensor.contiguous()) for _ in range(self.degree)]

    @staticmethod
    def all_reduce_mean(tensor):
        return tensor

    def sent_bytes(self) -> float:
        """Bytes this process sends: (N-1)/N of each all-to-all buffer, N-1 copies of each all-gather part."""
        degree = self.degree
        return sum(size * (degree - 1) / degree if kind == "all_to_all" else size * (degree - 1)
                   for kind, size in self.calls)


_meta_transformers = {}


def count_shard(size: str, degree: int, sample_rows: int, reference_rows: int) -> dict:
    """One transformer call of process 0 of `degree`, at `size`'s native resolution, counted on the meta device."""
    from diffusers import CogVideoXTransformer3DModel
    from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0
    from torch.utils.flop_counter import FlopCounterMode

    from cogvideox_ddim_inversion.cogvideox_ddim_context_parallel import (
        ContextParallelState,
        disable_context_parallel,
        install_context_parallel_hooks,
    )
    from cogvideox_ddim_inversion.processors.reference_attention import CogVideoXRefAttnProcessor

    spec, config = speed.SIZES[size], speed.transformer_config(size)
    if size not in _meta_transformers:
        with torch.device("meta"):
            _meta_transformers[size] = CogVideoXTransformer3DModel.from_config(config).to(torch.bfloat16).eval()
    transformer = _meta_transformers[size]
    transformer.set_attn_processor(CogVideoXRefAttnProcessor() if reference_rows else CogVideoXAttnProcessor2_0())
    collectives = CountingCollectives(degree)
    state = ContextParallelState(
        degree=degree,
        rank=0,
        all_to_all=collectives.all_to_all,
        all_gather=collectives.all_gather,
        all_reduce_mean=collectives.all_reduce_mean,
    )
    if degree > 1:
        install_context_parallel_hooks(transformer, state)
        transformer._context_parallel_state = state

    rows = sample_rows + reference_rows
    meta = dict(device="meta", dtype=torch.bfloat16)
    height, width, frames = spec["height"], spec["width"], spec["num_frames"]
    tokens = speed.video_tokens(config, height, width, frames)
    kwargs = {}
    if config.get("use_rotary_positional_embeddings"):
        kwargs["image_rotary_emb"] = tuple(torch.empty(tokens, config["attention_head_dim"], **meta) for _ in "cs")
    if reference_rows:
        kwargs["attention_kwargs"] = {"reference_rows": reference_rows}
    hidden_states = torch.empty(
        rows, speed.latent_frames(config, frames), config["in_channels"], height // 8, width // 8, **meta
    )
    text = torch.empty(rows, config["max_text_seq_length"], config["text_embed_dim"], **meta)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            transformer(
                hidden_states=hidden_states,
                encoder_hidden_states=text,
                timestep=torch.empty(rows, dtype=torch.long, device="meta"),
                return_dict=False,
                **kwargs,
            )
    finally:
        disable_context_parallel(transformer)
    by_op = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    layers = config["num_layers"]
    per_block = [nbytes for _, nbytes in collectives.calls[: 3 * layers]]  # q/k/v, output, text per block
    return {
        "video_tokens": tokens,
        "local_tokens": state.local_tokens if degree > 1 else tokens,
        "flops": counter.get_total_flops(),
        "attention_flops": by_op.get("aten.bmm", 0),
        "qkv_all_to_all_bytes": per_block[0] if degree > 1 else 0,
        "output_all_to_all_bytes": per_block[1] if degree > 1 else 0,
        "text_all_gather_bytes": per_block[2] if degree > 1 else 0,
        "collectives_per_call": len(collectives.calls),
        "sent_bytes": collectives.sent_bytes(),
    }


def predicted_seconds(flops: float, sent_bytes: float, utilisation: float) -> dict:
    compute = flops / (utilisation * H100_BF16_DENSE_PEAK)
    communication = sent_bytes / NVLINK_BYTES_PER_S
    return {"compute_s": compute, "communication_s": communication, "step_s": compute + communication}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["5b", "1.5-5b"], choices=list(speed.REAL_SIZES))
    parser.add_argument("--degrees", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--utilisation", type=float, default=0.4, help="of the H100's dense bf16 peak, for compute")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    speed.check_counter_sees_attention()
    rows = []
    for size in args.sizes:
        heads = speed.transformer_config(size)["num_attention_heads"]
        for layout in args.layouts:
            single = None
            for degree in args.degrees:
                if heads % degree:
                    print(f"# {size}: {heads} heads do not split over {degree} processes; skipped", file=sys.stderr)
                    continue
                counted = count_shard(size, degree, *LAYOUTS[layout])
                model = predicted_seconds(counted["flops"], counted["sent_bytes"], args.utilisation)
                single = single or (model["step_s"] if degree == 1 else None)
                rows.append({"size": size, "layout": layout, "degree": degree, **counted, **model,
                             "speed_up": single / model["step_s"] if single else None})
                print(f"# {size} {layout} N={degree}: {counted['flops'] / 1e12:.1f} TFLOP", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))

    print(f"Per step and per process; predicted time = compute at {args.utilisation:.0%} of 989 TFLOPS + bytes sent "
          f"/ 900 GB/s (a model, not a measurement).\n")
    print("| checkpoint, size | layout (rows) | N | video tokens per process | TFLOP per process | attention share "
          "| q/k/v all-to-all per block (MB) | output all-to-all per block (MB) | text all-gather per block (MB) "
          "| GB sent per process | compute s | communication s | predicted step s | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        spec = speed.SIZES[row["size"]]
        label = f"{spec['label']}, {spec['num_frames']}x{spec['width']}x{spec['height']}"
        sample_rows, reference_rows = LAYOUTS[row["layout"]]
        speed_up = f"{row['speed_up']:.2f}x" if row["speed_up"] else ""
        print(
            f"| {label} | {row['layout']} ({sample_rows + reference_rows}) | {row['degree']} | {row['local_tokens']} "
            f"| {row['flops'] / 1e12:.1f} | {row['attention_flops'] / row['flops']:.2f} "
            f"| {row['qkv_all_to_all_bytes'] / 1e6:.1f} | {row['output_all_to_all_bytes'] / 1e6:.1f} "
            f"| {row['text_all_gather_bytes'] / 1e6:.2f} | {row['sent_bytes'] / 1e9:.2f} | {row['compute_s']:.3f} "
            f"| {row['communication_s']:.3f} | {row['step_s']:.3f} | {speed_up} |"
        )


if __name__ == "__main__":
    main()
