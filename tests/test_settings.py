"""The options table (`workflow.settings`): one description of every option, from which the command line, batch, the
page, run.json and the pipeline calls are derived, and errors that carry their field."""

import json
import subprocess
import sys

import pytest

from cogvideox_ddim_inversion.cli import build_parser
from cogvideox_ddim_inversion.cogvideox_ddim_errors import ParameterError, parameters_of
from cogvideox_ddim_inversion.workflow.checks import check_edit_settings
from cogvideox_ddim_inversion.workflow.flags import settings_from_args
from cogvideox_ddim_inversion.workflow.jobs import Job, job_settings, read_jobs
from cogvideox_ddim_inversion.workflow.settings import (
    DESTINATIONS,
    EDIT_OPTIONS,
    INVERSION,
    MODEL_OPTIONS,
    OPTIONAL_FLOAT,
    STYLES,
    EditSettings,
    Option,
    SettingsError,
    find_option,
    pipeline_arguments,
    render_error,
)


# An option the table does not have, feeding a parameter `invert()` has: the test adds it to a copy of the table.
NEW_OPTION = Option(
    "fixed_point_tolerance", OPTIONAL_FLOAT, 1e-5, "with {fixed_point_iterations}: stop refining a step once the "
    "latent's relative change is below this (default: %(default)s)", INVERSION, feeds=("invert",),
    label="Refinement tolerance", inversion="always",
)


def test_a_new_option_reaches_the_command_line_batch_and_the_pipeline_call_with_no_other_edit(tmp_path):
    table = EDIT_OPTIONS.with_options(NEW_OPTION)
    assert "fixed_point_tolerance" not in EDIT_OPTIONS  # the shipped table is untouched

    # the command line: the flag, its help (naming the other option by its flag) and its value read back
    parser = build_parser(table)
    edit = parser._subparsers._group_actions[0].choices["edit"]
    help_text = edit.format_help()
    assert "--fixed-point-tolerance" in help_text and "with --fixed-point-iterations: stop refining" in help_text
    args = parser.parse_args(["edit", "clip.mp4", "--prompt", "x", "--fixed-point-tolerance", "0.001"])
    settings = settings_from_args(args, table)
    assert settings.fixed_point_tolerance == 0.001
    batch_args = parser.parse_args(["batch", "jobs.jsonl", "--output-dir", "out", "--fixed-point-tolerance", "0.5"])
    assert settings_from_args(batch_args, table).fixed_point_tolerance == 0.5

    # batch: a job may set it by its key, read with the option's type
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text(json.dumps({"video": "clip.mp4", "prompts": ["x"], "fixed_point_tolerance": "0.01"}) + "\n")
    job = read_jobs(str(jobs_file), table)[0]
    assert job_settings(job, table.settings_class(), str(tmp_path)).fixed_point_tolerance == 0.01
    with pytest.raises(ValueError, match="unknown option 'fixed_point_tolerance'"):
        read_jobs(str(jobs_file))  # the shipped table does not have it

    # the pipeline call it feeds, by the parameter's name, and what an inversion depends on
    assert pipeline_arguments(settings, "invert")["fixed_point_tolerance"] == 0.001
    assert "fixed_point_tolerance" not in pipeline_arguments(settings, "call")
    from cogvideox_ddim_inversion.workflow.inversions import inversion_dependencies

    assert "fixed_point_tolerance" in inversion_dependencies(settings.replace(video=None))


def test_a_new_option_reaches_invert_in_a_real_run(tiny_checkpoint, tmp_path, monkeypatch):
    """Through `edit_video` with a loaded tiny pipeline: `invert()` receives the new option's value, and run.json
    records it."""
    from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
    from cogvideox_ddim_inversion.workflow.loading import load_pipeline
    from cogvideox_ddim_inversion.workflow.run import edit_video
    from cogvideox_ddim_inversion.workflow.settings import ModelSettings

    table = EDIT_OPTIONS.with_options(NEW_OPTION)
    pipe, load_info = load_pipeline(ModelSettings(model=tiny_checkpoint(), device="cpu", dtype="fp32"))
    pipe.set_progress_bar_config(disable=True)
    received = {}
    invert = pipe.invert

    def spy(**kwargs):
        received.update(kwargs)
        return invert(**kwargs)

    monkeypatch.setattr(pipe, "invert", spy)
    clip = write_sample_clip(tmp_path / "clip.mp4")
    settings = table.settings_class(video=str(clip), prompts=["a blue circle"], steps=2, fixed_point_iterations=1,
                                    fixed_point_tolerance=0.25)
    record = edit_video(pipe, settings, str(tmp_path / "out"), load_info)
    assert received["fixed_point_tolerance"] == 0.25
    assert json.loads((tmp_path / "out" / "run.json").read_text())["settings"]["fixed_point_tolerance"] == 0.25
    assert record["inversion"]["depends_on"]["fixed_point_tolerance"] == 0.25


def test_errors_name_their_field_in_each_front_ends_words():
    with pytest.raises(SettingsError) as caught:
        check_edit_settings(EditSettings(video=None, prompts=["x"], inversion=None))
    assert caught.value.field == "video"
    with pytest.raises(SettingsError) as caught:
        check_edit_settings(EditSettings(video=__file__, prompts=["x"], steps=1))
    error = caught.value
    assert error.field == "steps"
    assert error.render("cli").startswith("--steps must be at least 2, got 1")
    assert error.render("page").startswith('"Steps" must be at least 2, got 1')
    assert error.render("batch").startswith("steps must be at least 2, got 1")
    assert str(error).startswith("`num_inference_steps` must be at least 2, got 1")  # Python: the parameter

    with pytest.raises(SettingsError) as caught:
        check_edit_settings(EditSettings(video=__file__, prompts=["x"], paste_back=True))
    assert caught.value.render("cli") == "--paste-back puts the source back outside a mask: give --mask or " \
        "--mask-words too."
    assert caught.value.render("page") == '"Paste back" puts the source back outside a mask: give "Mask video" or ' \
        '"Mask words" too.'
    assert caught.value.fields == ["paste_back", "mask", "mask_words"]


def test_a_shipped_modules_parameter_error_is_rendered_by_the_field_feeding_it():
    error = ParameterError("num_inference_steps", "{num_inference_steps} must be >= 2 (with {window_overlap}); {{x}}")
    assert str(error) == "`num_inference_steps` must be >= 2 (with `window_overlap`); {x}"
    assert render_error(error, "cli") == "--steps must be >= 2 (with --window-overlap); {x}"
    assert render_error(error, "page") == '"Steps" must be >= 2 (with "Window overlap"); {x}'
    assert render_error(ValueError("plain {steps}"), "cli") == "plain {steps}"  # other errors stay as they are


def test_every_option_is_complete_and_its_texts_name_known_options():
    names = {option.name for table in (EDIT_OPTIONS, MODEL_OPTIONS) for option in table}
    for table in (EDIT_OPTIONS, MODEL_OPTIONS):
        for option in table:
            assert option.help and option.group, option.name
            assert option.kind.annotation == EditSettings.__dataclass_fields__[option.name].type if (
                table is EDIT_OPTIONS) else True
            for mentioned in parameters_of(option.help):
                assert mentioned in names or mentioned in DESTINATIONS, (option.name, mentioned)
            if option.choices is not None and option.default is not None:
                assert option.default in option.choices, option.name
            for style in STYLES:  # every option can be named in every front end's words
                assert SettingsError(option.name, "{" + option.name + "}").render(style)
    assert find_option("num_inference_steps").name == "steps"
    assert find_option("guidance_scale").name == "guidance"


def test_reading_values_as_batch_and_the_page_send_them():
    steps, frames, words = EDIT_OPTIONS["steps"], EDIT_OPTIONS["num_frames"], EDIT_OPTIONS["mask_words"]
    assert steps.read("30") == 30 and steps.read(30.0) == 30
    for bad in ("2.5", 2.5, True, [1, 2], None):
        with pytest.raises(ValueError):
            steps.read(bad)
    assert frames.read("all") == "all" and frames.read("") is None and frames.read(17) == 17
    assert words.read("horse, brown dog") == ["horse", "brown dog"] and words.read(["horse"]) == ["horse"]
    assert EDIT_OPTIONS["reference_steps"].read("0.2,0.6") == (0.2, 0.6)
    assert EDIT_OPTIONS["mask_refine"].read("off") is False and EDIT_OPTIONS["mask_refine"].read("auto") is None
    with pytest.raises(ValueError, match="choose one of shared, paired"):
        EDIT_OPTIONS["reference_mode"].read("both")


@pytest.mark.parametrize("command", [["--help"], ["edit", "--help"], ["batch", "--help"], ["app", "--help"]])
def test_help_imports_neither_torch_nor_diffusers(command):
    code = ("import sys\nfrom cogvideox_ddim_inversion.cli import main\n"
            f"try:\n    main({command!r})\nexcept SystemExit:\n    pass\n"
            "loaded = [name for name in ('torch', 'diffusers', 'gradio') if name in sys.modules]\n"
            "print('LOADED', loaded)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr == ""  # no third-party warning on the way
