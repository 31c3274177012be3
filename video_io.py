"""`cogvideox_ddim_inversion.video_io`: the package's name for `cogvideox_ddim_video_io` (the same module object).

The module itself has a prefixed name because diffusers copies every local `custom_pipeline`'s modules into one shared
folder, where a plain `video_io.py` would collide with another pipeline's."""

import sys

from . import cogvideox_ddim_video_io


sys.modules[__name__] = cogvideox_ddim_video_io
