"""Where the shared reference material is (DESIGN section 8): read at test
time, never copied into the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def reference_root() -> Path:
    """$MH_REFERENCE_DIR, else ../shared/reference next to the repository,
    else the workplace's /work/shared/reference (for clones made elsewhere)."""
    candidates = [Path(p) for p in (os.environ.get("MH_REFERENCE_DIR"),) if p]
    candidates += [REPO.parent / "shared" / "reference", Path("/work/shared/reference")]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]
