"""A Bayes-optimal v-prediction denoiser for Gaussian data, standing in for the CogVideoX transformer.

For data x0 ~ N(mean, std^2) (per latent channel) and x_t = sqrt(a) x0 + sqrt(1 - a) noise, the posterior means are
    E[noise | x_t] = sqrt(1 - a) (x_t - sqrt(a) mean) / (a std^2 + 1 - a)
    E[x0 | x_t]    = mean + sqrt(a) std^2 (x_t - sqrt(a) mean) / (a std^2 + 1 - a)
and v = sqrt(a) noise - sqrt(1 - a) x0. The deterministic DDIM sampler with this model is the exact probability-flow
map, so inversion followed by regeneration should return the data up to discretisation error. Tests and
benchmarks/roundtrip.py put it in place of the transformer to measure inversion error with a known exact answer.
"""

import contextlib

import torch


class GaussianVDenoiser(torch.nn.Module):
    def __init__(self, transformer_config, alphas_cumprod: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.config = transformer_config
        self.register_buffer("alphas_cumprod", alphas_cumprod.double().clone())
        self.register_buffer("mean", mean.double().view(1, 1, -1, 1, 1))
        self.register_buffer("std", std.double().view(1, 1, -1, 1, 1))
        self.calls = []  # (batch rows, timestep) per forward, to count model evaluations

    @property
    def dtype(self):
        return torch.float32

    @property
    def device(self):
        return self.mean.device

    # Attention-processor hooks, so reference-guided calls run (the rows are denoised independently here).
    attn_processors = {}

    def set_attn_processor(self, processor):
        pass

    def cache_context(self, name):
        return contextlib.nullcontext()

    @classmethod
    def for_pipeline_components(cls, components: dict, seed: int = 0) -> "GaussianVDenoiser":
        """A denoiser for per-channel Gaussian latents (means in [-0.5, 0.5), stds in [0.5, 1.5)) matching the
        transformer config and scheduler in `components`."""
        generator = torch.Generator().manual_seed(seed)
        mean = torch.rand(16, generator=generator) - 0.5
        std = 0.5 + torch.rand(16, generator=generator)
        return cls(components["transformer"].config, components["scheduler"].alphas_cumprod, mean, std)

    def sample_data(self, shape, generator):
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        return (self.mean + self.std * noise).float()

    def forward(self, hidden_states, encoder_hidden_states=None, timestep=None, return_dict=True, **kwargs):
        self.calls.append((hidden_states.shape[0], int(timestep[0])))
        a = self.alphas_cumprod[timestep.long()].view(-1, 1, 1, 1, 1)
        x = hidden_states.double()
        variance = a * self.std**2 + 1 - a
        centred = x - a.sqrt() * self.mean
        noise = (1 - a).sqrt() * centred / variance
        original = self.mean + a.sqrt() * self.std**2 * centred / variance
        v = a.sqrt() * noise - (1 - a).sqrt() * original
        return (v.to(hidden_states.dtype),)
