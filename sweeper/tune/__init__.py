"""Ray Tune and Optuna: the sweep driver, trials, spaces, recovery, callbacks."""
