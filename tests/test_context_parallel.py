"""Context parallelism (cogvideox_ddim_context_parallel): real `torchrun` processes on the gloo backend compute the
transformer, the inversion and reference-guided edits of every family's tiny checkpoint exactly as one process does.

One launch per degree runs every case (tests/context_parallel_worker.py); the tests read its JSON. 4 processes use a
transformer with 4 heads (fresh weights, the same on every process): the tiny checkpoints have 2, which the 4-process
launch checks is refused with the degrees that work.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cogvideox_ddim_inversion.cogvideox_ddim_context_parallel import (
    enable_context_parallel,
    init_process_group_from_env,
    working_degrees,
)
from cogvideox_ddim_inversion.testing.tiny_checkpoint import VARIANTS, write_tiny_checkpoint


FAMILIES = list(VARIANTS)
WORKER = Path(__file__).with_name("context_parallel_worker.py")
TOLERANCE = 1e-5
LAYERS = 2  # attention layers of the tiny transformers
# the 4-process launch is the slow one (four processes on a machine that may have two cores)
DEGREES = [2, pytest.param(4, marks=pytest.mark.slow)]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("context-parallel-checkpoints")
    for variant in FAMILIES:
        write_tiny_checkpoint(root / variant, variant=variant)
    return root


@pytest.fixture(scope="module")
def launched(checkpoints, tmp_path_factory):
    """`launched(degree)` -> the worker's results for `degree` torchrun processes (one launch per degree)."""
    results = {}

    def get(degree: int) -> dict:
        if degree not in results:
            out = tmp_path_factory.mktemp(f"cp{degree}") / "results.json"
            torchrun = Path(sys.executable).with_name("torchrun")
            command = [str(torchrun), "--nproc_per_node", str(degree), "--master_port", str(free_port()),
                       str(WORKER), str(checkpoints), str(out), "--pipeline"]
            if degree > 2:
                command += ["--heads", str(degree)]
            run = subprocess.run(command, capture_output=True, text=True, timeout=900)
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
            results[degree] = json.loads(out.read_text())
        return results[degree]

    return get


@pytest.mark.parametrize("degree", DEGREES)
@pytest.mark.parametrize("variant", FAMILIES)
def test_transformer_matches_one_process(launched, variant, degree):
    results = {key: value for key, value in launched(degree).items() if key.startswith(f"{variant} | ")}
    layouts = {key.split(" | ")[1] for key in results}
    expected_layouts = {"plain", "one sample + one reference row", "shared", "paired, reference_weight 0.5"}
    if variant != "cogvideox-5b-i2v":
        expected_layouts.add("shared, padded (odd token count)")
    assert expected_layouts <= layouts
    for key, entry in results.items():
        if key.endswith(("pipeline", "refusal")):
            continue
        assert entry["relative_error"] <= TOLERANCE, (key, entry)
        # Each process really held its share of the tokens, and every attention layer exchanged them.
        assert entry["local_tokens"] == math.ceil(entry["video_tokens"] / degree), (key, entry)
        assert entry["exchanges"] == LAYERS, (key, entry)
        assert entry["disabled_equal"], key
        if "map_relative_error" in entry:
            assert entry["map_relative_error"] <= TOLERANCE, (key, entry)
    padded = [entry for key, entry in results.items() if "padded" in key]
    assert all(entry["video_tokens"] % degree for entry in padded)  # the padded layouts really need padding


@pytest.mark.parametrize("degree", DEGREES)
@pytest.mark.parametrize("variant", FAMILIES)
def test_inversion_mask_and_edits_match_one_process(launched, variant, degree):
    entry = launched(degree)[f"{variant} | pipeline"]
    for name in ("trajectory", "attention_map", "shared_edit", "paired_edit"):
        assert entry[name] <= TOLERANCE, (name, entry)
    assert entry["mask_equal"]
    # 2 inversion steps + 2 shared + 2 paired edit steps, one transformer call each, 2 layers
    assert entry["exchanges"] == 6 * LAYERS


@pytest.mark.slow
def test_head_counts_that_do_not_divide_are_refused_with_the_degrees_that_work(launched):
    refusals = {key: value for key, value in launched(4).items() if key.endswith("refusal")}
    assert len(refusals) == len(FAMILIES)
    for message in refusals.values():
        assert "splits the 2 attention heads evenly" in message and "[1, 2]" in message


def test_the_degrees_that_work_divide_the_head_count():
    assert working_degrees(30, limit=8) == [1, 2, 3, 5, 6]  # CogVideoX-2B
    assert working_degrees(48, limit=8) == [1, 2, 3, 4, 6, 8]  # the 5B models


@pytest.mark.parametrize("degree", DEGREES)
def test_wrong_degree_enabling_twice_unknown_processors_and_different_inputs_are_refused(launched, degree):
    messages = launched(degree)["refusals"]
    assert f"`degree={degree + 1}` but the process group has {degree} processes" in messages["degree"]
    assert "already on for this transformer" in messages["twice"]
    assert "this layer has AttnProcessor2_0" in messages["processor"]
    assert "same inputs on every process; hidden_states differ" in messages["inputs"]


def test_without_a_process_group_enabling_names_torchrun(monkeypatch):
    from diffusers import CogVideoXTransformer3DModel

    assert not torch.distributed.is_initialized()
    transformer = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=8, num_layers=1)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node N"):
        enable_context_parallel(transformer, 2)
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set"):
        init_process_group_from_env()


def test_cost_model_counts_one_shard_and_the_bytes_each_exchange_moves():
    """benchmarks/context_parallel_cost.py on the faithful size (CogVideoX-5B's structure, 8 heads, 2 layers, 1950
    video tokens): process 0 of 2 holds half the tokens, and the buffers are those of the exchange's shapes."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "context_parallel_cost.py"
    spec = importlib.util.spec_from_file_location("context_parallel_cost", path)
    cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cost)

    one, two = cost.count_shard("faithful", 1, 2, 1), cost.count_shard("faithful", 2, 2, 1)
    rows, heads, head_dim, bf16 = 3, 8, 64, 2
    assert one["video_tokens"] == two["video_tokens"] == 1950 and two["local_tokens"] == 975
    assert two["qkv_all_to_all_bytes"] == 3 * rows * heads * 975 * head_dim * bf16
    assert two["output_all_to_all_bytes"] == rows * heads * 975 * head_dim * bf16
    assert two["text_all_gather_bytes"] == rows * heads // 2 * 226 * head_dim * bf16
    assert two["collectives_per_call"] == 3 * 2 + 1  # per block: two all-to-alls and the text; the output gather
    # Half the video work, the text's projections and feed-forward on both processes: a little over half.
    assert 0.5 < two["flops"] / one["flops"] < 0.56
    assert one["sent_bytes"] == 0 and one["collectives_per_call"] == 0
