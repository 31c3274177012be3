"""CogVideoXRefAttnProcessor: identity when idle, and the attention math against a naive re-implementation."""

import math

import pytest
import torch
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0

from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline, CogVideoXRefAttnProcessor
from cogvideox_ddim_inversion.testing.tiny_checkpoint import TINY_HEIGHT, TINY_WIDTH, build_components


TEXT, FRAMES, HEIGHT, WIDTH = 16, 3, 4, 6  # text tokens; latent frames and patch grid of the tiny models
IMAGE = FRAMES * HEIGHT * WIDTH


@pytest.fixture(scope="module")
def parts():
    components = build_components("cogvideox-5b", seed=3)
    pipe = CogVideoXDDIMInversionPipeline(**components)
    rope = pipe._prepare_rotary_positional_embeddings(TINY_HEIGHT, TINY_WIDTH, FRAMES, torch.device("cpu"))
    attn = pipe.transformer.transformer_blocks[0].attn1
    return pipe, attn, rope


def random_rows(rows, dim=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, IMAGE, dim, generator=generator), torch.randn(rows, TEXT, dim, generator=generator)


def naive_rope(x, rope):
    """Rotate each (even, odd) channel pair by its position's angle, written with complex numbers."""
    cos, sin = rope
    pairs = torch.complex(x[..., 0::2].double(), x[..., 1::2].double())
    rotated = pairs * torch.complex(cos[:, 0::2].double(), sin[:, 0::2].double())
    return torch.stack([rotated.real, rotated.imag], dim=-1).flatten(-2).to(x.dtype)


def naive_reference_attention(attn, image, text, rope, reference_rows, weight=1.0):
    """Row by row: sample j reads [own ; reference j % R] keys, reference rows read their own; softmax by hand."""
    heads = attn.heads
    sample_rows = image.shape[0] - reference_rows

    def project(row):
        tokens = torch.cat([text[row], image[row]])
        q, k, v = attn.to_q(tokens), attn.to_k(tokens), attn.to_v(tokens)
        q, k, v = (x.view(len(tokens), heads, -1).transpose(0, 1) for x in (q, k, v))  # [heads, L, d]
        q, k = attn.norm_q(q), attn.norm_k(k)
        if rope is not None:
            q = torch.cat([q[:, :TEXT], naive_rope(q[:, TEXT:], rope)], dim=1)
            k = torch.cat([k[:, :TEXT], naive_rope(k[:, TEXT:], rope)], dim=1)
        return q, k, v

    projected = [project(row) for row in range(image.shape[0])]
    outputs = []
    for row in range(image.shape[0]):
        q, k, v = projected[row]
        logits = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
        if row < sample_rows:
            _, k_ref, v_ref = projected[sample_rows + row % reference_rows]
            logits_ref = q @ k_ref.transpose(1, 2) / math.sqrt(q.shape[-1]) + math.log(weight)
            logits = torch.cat([logits, logits_ref], dim=-1)
            v = torch.cat([v, v_ref], dim=1)
        out = torch.softmax(logits, dim=-1) @ v
        out = attn.to_out[0](out.transpose(0, 1).reshape(len(out[0]), -1))
        outputs.append(out)
    out = torch.stack(outputs)
    return out[:, TEXT:], out[:, :TEXT]


@pytest.mark.parametrize("use_rope", [True, False])
def test_identical_to_cogvideox_processor_without_reference_rows(parts, use_rope):
    _, attn, rope = parts
    rope = rope if use_rope else None
    image, text = random_rows(3)
    expected = CogVideoXAttnProcessor2_0()(attn, image.clone(), text.clone(), image_rotary_emb=rope)
    got = CogVideoXRefAttnProcessor()(attn, image.clone(), text.clone(), image_rotary_emb=rope)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize(
    "rows,reference_rows,use_rope,weight",
    [
        (2, 1, True, 1.0),
        (3, 1, True, 1.0),
        (4, 2, True, 1.0),
        (4, 2, False, 1.0),
        (6, 2, True, 1.0),
        (9, 3, True, 0.5),
        (3, 1, True, 0.3),
        (3, 1, True, 2.0),
    ],
    ids=["one-sample", "shared-cfg", "paired-cfg", "paired-no-rope", "shared-cfg-2-videos", "3-rows-per-reference",
         "weight-0.3", "weight-2"],
)
def test_matches_naive_attention(parts, rows, reference_rows, use_rope, weight):
    _, attn, rope = parts
    rope = rope if use_rope else None
    image, text = random_rows(rows, seed=rows)
    with torch.no_grad():
        got = CogVideoXRefAttnProcessor()(
            attn, image, text, image_rotary_emb=rope, reference_rows=reference_rows, reference_weight=weight
        )
        expected = naive_reference_attention(attn, image, text, rope, reference_rows, weight)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-4, atol=1e-5)


def test_reference_rows_attend_only_to_themselves(parts):
    _, attn, rope = parts
    image, text = random_rows(3, seed=7)
    with torch.no_grad():
        got = CogVideoXRefAttnProcessor()(attn, image, text, image_rotary_emb=rope, reference_rows=1)
        alone = CogVideoXAttnProcessor2_0()(attn, image[2:], text[2:], image_rotary_emb=rope)
    torch.testing.assert_close(got[0][2:], alone[0], rtol=1e-5, atol=1e-6)
    # ... while the sample rows do read the reference
    with torch.no_grad():
        samples_alone = CogVideoXAttnProcessor2_0()(attn, image[:2], text[:2], image_rotary_emb=rope)
    assert (got[0][:2] - samples_alone[0]).abs().max() > 1e-3


def test_zero_weight_ignores_the_reference(parts):
    _, attn, rope = parts
    image, text = random_rows(3, seed=8)
    with torch.no_grad():
        got = CogVideoXRefAttnProcessor()(
            attn, image, text, image_rotary_emb=rope, reference_rows=1, reference_weight=0.0
        )
        samples_alone = CogVideoXAttnProcessor2_0()(attn, image[:2], text[:2], image_rotary_emb=rope)
    torch.testing.assert_close(got[0][:2], samples_alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reference_rows", [3, -1, 2])
def test_rejects_a_layout_that_does_not_fit(parts, reference_rows):
    _, attn, rope = parts
    image, text = random_rows(3)
    with pytest.raises(ValueError, match="sample rows followed by R reference rows"):
        CogVideoXRefAttnProcessor()(attn, image, text, image_rotary_emb=rope, reference_rows=reference_rows)


def test_installed_processor_is_idle_without_reference_rows(parts):
    """Installed in every block with set_attn_processor, the transformer's output does not change."""
    pipe, _, rope = parts
    transformer = pipe.transformer
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, FRAMES, 16, 8, 12, generator=generator)
    text = torch.randn(2, TEXT, 32, generator=generator)
    kwargs = dict(
        hidden_states=latents,
        encoder_hidden_states=text,
        timestep=torch.tensor([500, 500]),
        image_rotary_emb=rope,
        return_dict=False,
    )
    with torch.no_grad():
        expected = transformer(**kwargs)[0]
        processors = transformer.attn_processors
        transformer.set_attn_processor(CogVideoXRefAttnProcessor())
        try:
            got = transformer(**kwargs)[0]
        finally:
            transformer.set_attn_processor(processors)
    assert torch.equal(got, expected)
