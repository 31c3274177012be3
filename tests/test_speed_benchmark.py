"""benchmarks/speed.py: FLOPs counted on the meta device equal those of real runs; its GPU code path runs on a CPU."""

import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, SHARED, TEXT_LENGTH
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from cogvideox_ddim_inversion import CogVideoXRefAttnProcessor
from cogvideox_ddim_inversion.testing.tiny_checkpoint import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, VARIANTS


SCRIPT = REPO_ROOT / "benchmarks" / "speed.py"
_spec = importlib.util.spec_from_file_location("speed_benchmark", SCRIPT)
speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(speed)

LATENT_SHAPE = (1, (TINY_FRAMES - 1) // 4 + 1, 16, TINY_HEIGHT // 8, TINY_WIDTH // 8)


def counted_on_cpu(function) -> int:
    """FLOPs of the transformer calls of a real run on the CPU. CPU's fused attention kernel is invisible to
    FlopCounterMode; the math backend computes the same attention as matrix products that it counts."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        function()
    counts = {name: sum(by_op.values()) for name, by_op in counter.get_flop_counts().items()}
    # Outside the transformer the pipeline does only elementwise work, and Anderson mixing's small products.
    assert counts["Global"] - counts["CogVideoXTransformer3DModel"] < 1e-3 * counts["Global"]
    return counts["CogVideoXTransformer3DModel"]


def random_inputs(pipe, steps, prompts=1):
    generator = torch.Generator().manual_seed(0)
    embeds = [torch.randn(n, TEXT_LENGTH, 32, generator=generator) for n in (prompts, 1)]
    latents = torch.randn(*LATENT_SHAPE, generator=generator)
    trajectory = torch.randn(steps, *LATENT_SHAPE, generator=generator)
    image = {"image_latents": torch.randn(*LATENT_SHAPE, generator=generator)} if pipe.is_image_to_video else {}
    return embeds, latents, trajectory, image


def run_config(pipe, key, steps, prompts=4, iterations=2):
    """Configuration `key` of the benchmark through the pipeline's own entry points, as a user calls them."""
    prompts = prompts if speed.CONFIGS[key].get("prompts") else 1  # N prompts editing one inverted video
    (text, empty), latents, trajectory, image = random_inputs(pipe, steps, prompts)
    config = speed.CONFIGS[key]
    if config["kind"] == "invert":
        fixed_point = iterations if config.get("fixed_point") else 0
        return lambda: pipe.invert(
            latents=latents,
            prompt_embeds=empty,
            negative_prompt_embeds=empty,
            guidance_scale=config["guidance_scale"],
            num_inference_steps=steps,
            fixed_point_iterations=fixed_point,
            fixed_point_tolerance=None,
            **image,
        )
    extra = {}
    if config["kind"] == "edit":
        extra = {
            "reference_latents": trajectory,
            "reference_prompt_embeds": empty,
            "reference_mode": config["reference_mode"],
            "reference_steps": config.get("reference_steps", 1.0),
        }
    if config.get("idle_processor"):
        pipe.transformer.set_attn_processor(CogVideoXRefAttnProcessor())
    return lambda: pipe(
        prompt_embeds=text,
        negative_prompt_embeds=empty.expand(prompts, -1, -1),
        latents=None,  # from noise, as a user generates (and as the published edit starts)
        generator=torch.Generator().manual_seed(0),
        guidance_scale=6.0,
        num_inference_steps=steps,
        output_type="latent",
        **image,
        **extra,
    )


def meta_count(pipe, key, steps, prompts=4, iterations=2):
    return speed.count_config_flops("tiny", key, steps, prompts, iterations, config=dict(pipe.transformer.config))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_meta_count_of_plain_generation_equals_a_real_cpu_run(load_pipe, variant):
    """Same configuration, real weights and data on the CPU through the real pipeline, versus shapes on meta."""
    pipe = load_pipe(variant)
    counted = counted_on_cpu(run_config(pipe, "plain", steps=2))
    assert counted > 0
    assert meta_count(pipe, "plain", steps=2)["flops_per_step"] * 2 == counted


@pytest.mark.parametrize(
    "variant,key",
    [("cogvideox1.5-5b-i2v", key) for key in speed.CONFIGS if key != "batch"]  # padding, image latents, ofs
    + [("cogvideox1.5-5b", "batch"), ("cogvideox1.5-5b-i2v", "batch")],
)
def test_meta_count_of_every_pipeline_configuration_equals_a_real_cpu_run(load_pipe, variant, key):
    pipe = load_pipe(variant)
    rows = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].shape[0]), with_kwargs=True
    )
    counted = counted_on_cpu(run_config(pipe, key, steps=2, prompts=3))
    expected = meta_count(pipe, key, steps=2, prompts=3)
    assert expected["flops_per_step"] * 2 == counted
    assert expected["rows_per_step"] * 2 == sum(rows)


def test_counts_obey_the_exact_relations_between_configurations(load_pipe):
    config = dict(load_pipe("cogvideox-5b").transformer.config)

    def flops(key, steps=4, prompts=4, iterations=2):
        return speed.count_config_flops("tiny", key, steps, prompts, iterations, config=config)["flops_per_step"]

    plain, invert, shared, paired = flops("plain"), flops("invert"), flops("shared"), flops("paired")
    assert invert == plain / 2 and flops("invert-published") == plain and flops("plain-idle") == plain
    assert flops("invert-fixed-point", iterations=3) == 4 * invert
    assert paired - shared == invert  # one more reference row, which attends only to itself
    assert flops("shared-window") == (shared + plain) / 2
    assert flops("batch", prompts=5) == 5 * shared - 4 * invert  # the reference row is computed once, not 5 times
    # The two sample rows attend to the reference's keys too: 4 L^2 x head_dim per head, layer and row (QK^T and AV).
    tokens = speed.video_tokens(config, TINY_HEIGHT, TINY_WIDTH, TINY_FRAMES) + config["max_text_seq_length"]
    extra_attention = 2 * config["num_layers"] * config["num_attention_heads"] * 4 * tokens**2
    assert shared - plain - invert == extra_attention * config["attention_head_dim"]
    # ... as many as plain generation's two rows attending to their own keys.
    counted = speed.count_config_flops("tiny", "plain", 4, 4, 2, config=config)
    assert counted["attention_flops_per_step"] == extra_attention * config["attention_head_dim"]


def test_long_clip_count_equals_a_real_windowed_cpu_run(load_pipe):
    """A 33-frame clip (9 latent frames) on the tiny 5B, whose window is 3 latent frames: 4 windows overlapping by 1.
    The counted windows x one window's layout equals the counter's count of a real windowed inversion and shared
    edit through the pipeline, to the FLOP, and so do the rows per step."""
    pipe = load_pipe("cogvideox-5b")
    config = dict(pipe.transformer.config)
    frames, steps = 33, 2
    schedule = speed.long_clip_windows("tiny", frames, config)
    assert (schedule.latent_frames, schedule.window, schedule.overlap, schedule.num_windows) == (9, 3, 1, 4)
    assert schedule.num_windows == math.ceil((9 - 1) / (3 - 1))  # the formula the docs give
    rows = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].shape[:2]), with_kwargs=True
    )
    generator = torch.Generator().manual_seed(0)
    text, empty = (torch.randn(1, TEXT_LENGTH, 32, generator=generator) for _ in range(2))
    shape = (1, schedule.latent_frames, *LATENT_SHAPE[2:])
    latents, trajectory = torch.randn(*shape, generator=generator), torch.randn(steps, *shape, generator=generator)
    runs = {
        "invert": lambda: pipe.invert(latents=latents, prompt_embeds=empty, negative_prompt_embeds=empty,
                                      guidance_scale=1.0, num_inference_steps=steps, fixed_point_iterations=0),
        "shared": lambda: pipe(prompt_embeds=text, negative_prompt_embeds=empty, num_frames=frames, latents=None,
                               generator=torch.Generator().manual_seed(0), guidance_scale=6.0,
                               num_inference_steps=steps, output_type="latent", reference_latents=trajectory,
                               reference_prompt_embeds=empty, reference_mode="shared"),
    }
    for key, run in runs.items():
        rows.clear()
        counted = counted_on_cpu(run)
        expected = speed.count_long_clip_flops("tiny", key, frames, steps, 4, 2, config=config)
        assert expected["windows"] == 4 and expected["latent_frames"] == 9
        assert expected["flops_per_step"] * steps == counted, key
        assert expected["rows_per_step"] * steps == sum(batch for batch, _ in rows), key
        assert {window for _, window in rows} == {3}, key  # every call is one native window
        one_window = speed.count_config_flops("tiny", key, steps, 4, 2, config=config)["flops_per_step"]
        assert expected["flops_per_step"] == 4 * one_window


def test_image_to_video_long_clips_are_counted_as_refused():
    assert speed.long_clip_windows("5b-i2v", 241) is None and speed.count_long_clip_flops("5b-i2v", "shared", 241,
                                                                                          50, 4, 2) is None
    assert speed.long_clip_windows("1.5-5b", 241).starts == (0, 16, 32, 40)  # windows of 21 latent frames by 5


def test_window_cost_benchmark_compares_three_windows_with_one():
    """benchmarks/window_cost.py's clips: one native window, and the longest clip that takes 3 windows with the
    default overlap (F = O + 3 (W - O) latent frames)."""
    spec = importlib.util.spec_from_file_location("window_cost", REPO_ROOT / "benchmarks" / "window_cost.py")
    window_cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(window_cost)
    faithful = speed.transformer_config("faithful")
    assert window_cost.clip_frames(faithful, 1) == (49, 13)
    assert window_cost.clip_frames(faithful, 3) == (129, 33)
    assert speed.long_clip_windows("faithful", 129).starts == (0, 10, 20)
    assert window_cost.clip_frames(speed.transformer_config("1.5-5b"), 3) == (209, 53)
    assert speed.long_clip_windows("1.5-5b", 209).starts == (0, 16, 32)


def test_real_configurations_are_the_published_ones():
    """The configurations the benchmark counts keep the tiny checkpoints' structural flags (and the reference facts
    in ../shared, where present)."""
    for size, spec in speed.REAL_SIZES.items():
        structure = VARIANTS[spec["variant"]]["transformer"]
        for key, value in structure.items():
            if key != "ofs_embed_dim":  # shrunk in the tiny 1.5-I2V
                assert spec["transformer"][key] == value, (size, key)
        assert (spec["transformer"]["ofs_embed_dim"] is None) == (structure["ofs_embed_dim"] is None)
    reference = SHARED / "reference" / "cogvideox_family.json"
    if not reference.exists():
        pytest.skip("../shared/reference/cogvideox_family.json is absent")
    family = json.loads(reference.read_text())
    for size, spec in speed.REAL_SIZES.items():
        published = family["models"][VARIANTS[spec["variant"]]["hub_id"]]["transformer"]
        shared = family["common"]["transformer_shared"]
        for key, value in {**shared, **published}.items():
            assert spec["transformer"].get(key) == value, (size, key)


def test_end_to_end_components_have_the_real_parameter_counts():
    """T5-XXL, VAE and transformer of the end-to-end run, built on the meta device: CogVideoX-5B's parameter counts
    (the README's memory table, tests/test_editing.py)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        components = {
            "transformer": CogVideoXTransformer3DModel.from_config(speed.transformer_config("5b")),
            "text_encoder": T5EncoderModel(T5Config(**speed.T5_XXL)),
            "vae": AutoencoderKLCogVideoX(**speed.COGVIDEOX_VAE),
        }
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in components.items()}
    assert counts == {"transformer": 5_570_283_072, "text_encoder": 4_762_310_656, "vae": 215_583_907}


def test_counted_real_sizes_are_those_of_the_readme():
    """The plain CogVideoX-2b step: 240 TFLOP with guidance (30 layers, 17776 tokens per row)."""
    counted = speed.count_config_flops("2b", "plain", 50, 4, 2)
    assert counted["video_tokens"] == 17550 and counted["text_tokens"] == 226
    assert round(counted["flops_per_step"] / 1e12) == 240
    assert speed.count_config_flops("1.5-5b", "invert", 50, 4, 2)["video_tokens"] == 11 * 48 * 85  # 21 + 1 frames


def run_script(*args, tmp_path=None):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=tmp_path or REPO_ROOT
    )


@pytest.fixture
def run_child_here(monkeypatch, capsys):
    """`run(*argv)` -> the JSON line benchmarks/speed.py prints for one of the runs it starts in a child process
    (`--one SIZE CONFIG COMPILE`, `--e2e-one SIZE OFFLOAD`), run in this process instead (its thread count restored)."""
    threads = torch.get_num_threads()

    def run(*argv, steps=2):
        monkeypatch.setattr(sys, "argv", [str(SCRIPT), *map(str, argv), "--device", "cpu", "--steps", str(steps),
                                          "--compile-backend", "eager"])
        capsys.readouterr()
        speed.main()
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    yield run
    torch.set_num_threads(threads)


def test_the_gpu_code_path_of_each_child_run_runs_on_a_cpu(run_child_here):
    """In process, what each child of the slow run below measures: CUDA events, peak GPU memory, torch.compile, the
    end-to-end edit and model offload fall back to perf_counter and peak RSS on a CPU."""
    for key, rows, compiled in [("shared", 3, True), ("batch", 9, False)]:
        result = run_child_here("--one", "tiny", key, "on" if compiled else "off")
        assert result["compiled"] == compiled, key
        assert not compiled or result["graphs_compiled_in_measured_call"] == 0  # no recompilation while measured
        assert result["timer"] == "perf_counter" and result["memory_kind"] == "peak RSS of the process"
        assert result["rows_per_step"] == rows and result["seconds_per_step"] > 0 and result["peak_memory_mib"] > 100
    result = run_child_here("--e2e-one", "tiny", "model")
    assert "error" not in result, result
    assert result["steps"] == 2  # --offload-steps
    assert list(result["seconds"]) == ["text encoding", "VAE encoding", "inversion", "edit", "tiled VAE decoding"]
    assert all(seconds > 0 for seconds in result["seconds"].values()) and result["frames"] == TINY_FRAMES


def test_memory_rungs_and_caches_of_each_child_run_on_a_cpu(run_child_here):
    """In process, the children of test_memory.py's slow run of `--configs group-offload taylorseer-cache
    fp8-quantized`: the tiny rows run (group offload onto the CPU), and fp8 compute is refused with the memory
    module's message (which the parent writes into that row)."""
    measured = {key: run_child_here("--one", "tiny", key, "off", steps=4)
                for key in ("group-offload", "taylorseer-cache")}
    for key in ("group-offload", "taylorseer-cache"):
        assert "error" not in measured[key] and measured[key]["rows_per_step"] == 3
    assert measured["group-offload"]["blocks_run_fraction"] == 1
    assert measured["taylorseer-cache"]["blocks_run_fraction"] < 1  # predicted between full steps
    assert "% of block evaluations run)" in measured["taylorseer-cache"]["label"]
    with pytest.raises(ValueError, match="--quantize fp8 computes in fp8 on a GPU"):
        run_child_here("--one", "tiny", "fp8-quantized", "off", steps=4)


@pytest.mark.slow
def test_the_gpu_code_path_runs_on_a_cpu_at_tiny_size(tmp_path):
    """As a user runs it: CUDA events, peak GPU memory, torch.compile, the end-to-end edit and model offload fall
    back to perf_counter and peak RSS on a CPU, and the JSON carries every measurement."""
    out = tmp_path / "speed.json"
    table = tmp_path / "speed.md"
    completed = run_script(
        *("--device", "cpu", "--sizes", "tiny", "--configs", "shared", "batch", "--steps", "2", "--repeats", "1"),
        *("--compile", "on", "--compile-backend", "eager", "--e2e", "tiny", "--offload", "model"),
        *("--count-sizes", "tiny", "--peak-tflops", "1", "--json", str(out), "--markdown", str(table)),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["environment"]["peak_tflops"] == 1
    measured = {r["config"]: r for r in results["measured"]}
    assert set(measured) == {"shared", "batch"}
    counted = {r["config"]: r for r in results["counted"]}
    for key, rows in [("shared", 3), ("batch", 9)]:
        result = measured[key]
        assert result["compiled"] and result["graphs_compiled_in_measured_call"] == 0
        assert result["timer"] == "perf_counter" and result["memory_kind"] == "peak RSS of the process"
        assert result["rows_per_step"] == rows and result["seconds_per_step"] > 0 and result["peak_memory_mib"] > 100
        assert result["flops_per_step"] == counted[key]["flops_per_step"]  # 2 steps or 50: no window here
        assert result["tflops"] == pytest.approx(result["flops_per_step"] / result["seconds_per_step"] / 1e12)
        assert result["utilisation"] == pytest.approx(result["tflops"])
    assert set(counted) == set(speed.CONFIGS)
    end_to_end = {r["offload"]: r for r in results["end_to_end"]}
    assert set(end_to_end) == {"model"} and end_to_end["model"]["steps"] == 2  # --offload-steps
    for result in end_to_end.values():
        assert "error" not in result, result
        assert list(result["seconds"]) == ["text encoding", "VAE encoding", "inversion", "edit", "tiled VAE decoding"]
        assert all(seconds > 0 for seconds in result["seconds"].values()) and result["frames"] == TINY_FRAMES
    printed = table.read_text()
    assert printed in completed.stdout and "| tiny | edit, shared | yes | 3 |" in printed
    assert "ratio: 4 prompts batched / 4 shared edits" in printed
    # the default long clip, 241 frames = 61 latent frames in windows of the tiny model's 3, overlapping by 1: 30
    long_clip = {r["config"]: r for r in results["long_clip"]}
    assert set(long_clip) == {"invert", "shared"} and long_clip["shared"]["windows"] == 30
    assert long_clip["shared"]["flops_per_step"] == 30 * counted["shared"]["flops_per_step"]
    assert "| 241 frames (30 s at 8 fps) in windows: latent frames, windows of W overlapping by O" in printed
    assert "| 61: 30 of 3 by 1 |" in printed
    assert "| ratio: 241 frames / native clip (= windows) | | 30.000 |" in printed


@pytest.mark.parametrize(
    "args,message",
    [
        (["--device", "cpu", "--sizes", "5b"], "the real sizes need a GPU"),
        (["--steps", "3"], "pass an even number"),
        (["--long-clip-frames", "240", "--flops-only"], "pass 4k + 1 frames"),
    ],
)
def test_bad_arguments_fail_before_any_work(args, message):
    completed = run_script(*args)
    assert completed.returncode == 2 and message in completed.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
def test_cuda_without_a_gpu_names_the_fix():
    completed = run_script("--device", "cuda", "--sizes", "tiny")
    assert completed.returncode == 2 and "use --device cpu" in completed.stderr


def test_device_peaks_match_device_names():
    def peak(name):
        return next((p for pattern, p, _ in speed.BF16_DENSE_PEAK_TFLOPS if speed.re.search(pattern, name)), None)

    assert peak("NVIDIA H100 80GB HBM3") == 989 and peak("NVIDIA H100 PCIe") == 756 and peak("NVIDIA H200") == 989
    assert peak("NVIDIA A100-SXM4-80GB") == 312 and peak("NVIDIA A100 80GB PCIe") == 312
    assert peak("NVIDIA L40S") == 362 and peak("NVIDIA L4") == 121 and peak("NVIDIA GeForce RTX 4090") == 165
    assert peak("NVIDIA H100 NVL") is None and peak("NVIDIA RTX A1000") is None
