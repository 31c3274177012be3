"""`python -m cogvideox_ddim_inversion.app [flags]`: the app alone, as `cogvideox-ddim-inversion app [flags]`."""

from .server import main


main()
