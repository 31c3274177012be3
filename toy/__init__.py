"""The toy world: generated clips with exact ground truth, a small CogVideoX trained on them on a CPU, and the demo.

- `world`: the clips, captions and exact detectors (colour, centroids, direction), PSNR/SSIM.
- `train`: trains `checkpoint/` (`python -m cogvideox_ddim_inversion.toy.train --output toy/checkpoint`).
- `demo`: inverts a held-out clip with `checkpoint/` and edits its colour (`cogvideox-ddim-inversion demo`).
"""
