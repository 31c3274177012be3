"""Bytes of weights resident on the GPU per offload rung, counted from the real configurations on the meta device.

    python benchmarks/memory_table.py            # markdown tables: CogVideoX-5B and CogVideoX1.5-5B
    python benchmarks/memory_table.py --json /tmp/memory_table.json

For each family and each way of storing the weights (bf16; fp8 transformer by layerwise casting; torchao int8
weight-only transformer, and transformer + T5), every rung of `cogvideox_ddim_memory.OFFLOAD_RUNGS`: the weights on
the GPU at once (`counted_bytes`), plus the activation headroom (`ACTIVATION_HEADROOM_BYTES`, 10 GiB: the
CogVideoX-5b model card's 20.7 GB peak with model offload and VAE tiling less the transformer's weights), and which
cards it fits. 1.5-5B at 1360x768, 81 frames attends over 2.56x the tokens of 5B at 720x480, 49 frames; its headroom
is 5B's scaled by that ratio: an estimate, no peak is documented. A card of N GiB fits a rung when weights + headroom
leave the CUDA context's `--context-gib` (0.5). Deterministic: no weights, no GPU, no timings.
"""

from __future__ import annotations

import argparse
import json
import sys

from cogvideox_ddim_inversion.cogvideox_ddim_memory import (
    ACTIVATION_HEADROOM_BYTES,
    FAMILY_TRANSFORMERS,
    NATIVE_TOKENS,
    OFFLOAD_RUNGS,
    T5_XXL_CONFIG,
    GiB,
    MemoryOptions,
    choose_offload,
    counted_bytes,
)


FAMILIES = {"cogvideox-5b": "CogVideoX-5B (720x480, 49 frames)",
            "cogvideox1.5-5b": "CogVideoX1.5-5B (1360x768, 81 frames)"}
STORAGE = {
    "bf16": MemoryOptions(),
    "fp8 transformer (--weights fp8)": MemoryOptions(weights="fp8"),
    "int8 transformer (--quantize int8)": MemoryOptions(quantize="int8"),
    "int8 transformer + T5 (--quantize int8 --quantize-text-encoder)": MemoryOptions(quantize="int8",
                                                                                      quantize_text_encoder=True),
}
CARDS_GIB = (8, 12, 16, 24, 32, 40, 48, 80)


def headroom(family: str) -> int:
    return round(ACTIVATION_HEADROOM_BYTES * NATIVE_TOKENS[family] / NATIVE_TOKENS["cogvideox-5b"])


def table(context_gib: float) -> dict:
    report = {}
    for family in FAMILIES:
        configs = {"transformer": FAMILY_TRANSFORMERS[family], "text_encoder": T5_XXL_CONFIG}
        rows = {}
        for storage, options in STORAGE.items():
            counted = counted_bytes(configs, options)
            for rung in OFFLOAD_RUNGS:
                peak = counted.resident[rung] + headroom(family)
                fits = [card for card in CARDS_GIB if peak <= (card - context_gib) * GiB]
                rows[f"{storage} | {rung}"] = {
                    "weights_gb": counted.resident[rung] / 1e9, "peak_gib": peak / GiB,
                    "smallest_card_gib": fits[0] if fits else None, "stored_gb": sum(counted.stored.values()) / 1e9}
            auto = {card: choose_offload(int((card - context_gib) * GiB), counted, headroom(family))
                    for card in CARDS_GIB}
            rows[f"{storage} | auto"] = {"auto_by_card": auto}
        report[family] = {"headroom_gib": headroom(family) / GiB, "rows": rows}
    return report


def markdown(report: dict) -> str:
    lines = []
    for family, data in report.items():
        lines += [f"**{FAMILIES[family]}**, activation headroom {data['headroom_gib']:.1f} GiB"
                  + (" (estimate)" if family != "cogvideox-5b" else ""), "",
                  "| weights | offload | weights on the GPU (GB) | + headroom (GiB) | smallest card (GiB) |",
                  "|---|---|---|---|---|"]
        for name, row in data["rows"].items():
            if "auto_by_card" in row:
                continue
            storage, rung = name.split(" | ")
            card = "none of them" if row["smallest_card_gib"] is None else str(row["smallest_card_gib"])
            lines.append(f"| {storage} | {rung} | {row['weights_gb']:.2f} | {row['peak_gib']:.1f} | {card} |")
        lines += ["", "`--offload auto` per card (GiB): " + "; ".join(
            f"{name.split(' | ')[0]}: " + ", ".join(f"{card} {rung}" for card, rung in row["auto_by_card"].items())
            for name, row in data["rows"].items() if "auto_by_card" in row), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context-gib", type=float, default=0.5, help="GPU memory the CUDA context takes")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    report = table(args.context_gib)
    print(markdown(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
