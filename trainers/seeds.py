"""Fixed seeds of the evaluation side, in a leaf module (data and images both need them)."""

# Real evaluation samples are drawn with this fixed seed, so every run and every seed of a
# sweep is scored against the same real set (less noise when comparing settings).
REAL_EVAL_SEED = 1234
