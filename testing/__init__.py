"""Stand-ins for real weights and real videos, for tests, benchmarks and demos (no download needed).

- `tiny_checkpoint`: tiny randomly initialised checkpoints with the structure of each public CogVideoX family.
- `analytic_denoiser`: a Bayes-optimal denoiser for Gaussian latents, to measure inversion error exactly.
- `sample_clip`: a generated clip (a red disc moving over a gradient).
"""
