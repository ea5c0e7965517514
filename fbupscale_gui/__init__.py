"""fbupscale: reconstruct tiny football broadcast cutouts into clean 1024 px frames."""

from __future__ import annotations

import os

__all__ = ["__version__"]

__version__ = "0.1.0"

# CPU matrix products in MKL round differently with the weights' memory alignment, which
# depends on how they were loaded (memory-mapped from a folder at the file's offsets, or
# fresh from a single-file checkpoint). Strict conditional numerical reproducibility keeps
# the fastest code path but makes results alignment-independent, so a candidate rendered on
# the CPU reproduces pixel-identically whichever file held the weights. Read by MKL when it
# starts, so it is set here, before anything imports torch; a user's own setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
