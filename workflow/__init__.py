"""The edit workflow every entry point runs: the options table, checks, saved inversions, loading and the edit run.

Layers: the shipped pipeline (`pipeline_cogvideox_ddim_inversion.py` and the `cogvideox_ddim_*` modules it imports)
knows nothing of this package; `workflow` turns an entry point's input into settings (`settings`, `flags`, `jobs`),
checks them before any weights load (`checks`, `sources`, `window_plan`, `inversions`), loads the pipeline once
(`loading`) and runs each edit (`run`); the front ends (`cli.py`, `batch.py`, `app/`) only read their input and show
the results. Modules import torch only inside the functions that need it.
"""

from .settings import EDIT_OPTIONS, MODEL_OPTIONS, EditSettings, ModelSettings, SettingsError


__all__ = ["EDIT_OPTIONS", "MODEL_OPTIONS", "EditSettings", "ModelSettings", "SettingsError"]
