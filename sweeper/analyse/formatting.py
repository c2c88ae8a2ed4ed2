"""Human-readable lines of metrics, shared by the CLI and the runs it starts."""

from __future__ import annotations

from trainers import names


def format_metrics(m: dict[str, float]) -> str:
    """One human-readable line of the headline metrics."""
    parts = [f"step {int(m.get(names.STEP, 0))}"]
    if names.SEED_SUCCESS in m:
        parts.append("success" if m[names.SEED_SUCCESS] >= 1 else "FAIL")
    if names.MODES_COVERED in m:
        parts.append(f"modes {int(m[names.MODES_COVERED])}/{int(m[names.NUM_MODES])}")
    if names.MODES_HELD in m:
        parts.append(f"held {int(m[names.MODES_HELD])}")
    for key, fmt in ((names.HQ_FRACTION, ".3f"), (names.SEED_SCORE, ".3f"),
                     (names.MODE_KL, ".3f"), (names.PRECISION, ".3f"), (names.COVERAGE, ".3f"),
                     (names.FID, ".4g"),
                     (names.KID, ".4g"), (names.W_DISTANCE, ".4g"), (names.GRAD_NORM, ".3g")):
        if key in m:
            parts.append(f"{key} {m[key]:{fmt}}")
    if m.get(names.DIVERGED):
        parts.append("DIVERGED")
    return "  ".join(parts)
