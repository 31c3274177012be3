"""Deprecated: the edit workflow moved to the `workflow` package (`workflow.settings`, `workflow.checks`,
`workflow.run`, ...). These names stay importable from here for one release."""

import warnings

from .workflow.checks import check_edit_settings, prepare_edit  # noqa: F401
from .workflow.flags import settings_from_args  # noqa: F401
from .workflow.inversions import inversion_dependencies  # noqa: F401
from .workflow.loading import load_pipeline, resolve_device, resolve_device_and_dtype  # noqa: F401
from .workflow.run import edit_video, invert_source, print_log, regenerate  # noqa: F401
from .workflow.settings import DTYPES, MIN_STEPS, EditSettings, ModelSettings, SettingsError  # noqa: F401
from .workflow.sources import read_source  # noqa: F401


warnings.warn("cogvideox_ddim_inversion.editing is deprecated: import from cogvideox_ddim_inversion.workflow.",
              DeprecationWarning, stacklevel=2)
