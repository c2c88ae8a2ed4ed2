"""Metric names, defined once and shared by the trainer, Tune, MLflow and the CLI."""

STEP = "step"
MODES_COVERED = "modes_covered"  # modes that are the nearest centre/class of >= 1 HQ sample
MODES_HELD = "modes_held"  # modes holding a real share of the HQ samples (trainers/quality.py)
NUM_MODES = "num_modes"  # how many modes the dataset has (K)
HQ_FRACTION = "hq_fraction"  # fraction of samples that are high quality
MODE_KL = "mode_kl"  # KL(p_hat || p_real) over the mode histogram of HQ samples
FID = "fid"  # Frechet distance between Gaussian fits of real and generated features
FID_N = "fid_n"  # number of samples behind FID (FID is biased in 1/N: compare at equal N)
KID = "kid"  # unbiased kernel distance on the same features (images)
# Mode coverage without labelled modes (trainers/prdc.py), k = 5, in the dataset's feature space.
PRECISION = "precision"  # fraction of samples inside the real k-NN balls (realism)
RECALL = "recall"  # fraction of real samples inside the generated k-NN balls (diversity)
DENSITY = "density"  # real balls holding a sample, per sample and k (about 1 for real data)
COVERAGE = "coverage"  # fraction of real k-NN balls that hold a sample (about 0.97 for real data)
CLASSIFIER_ACC = "classifier_acc"  # held-out accuracy of the classifier behind image metrics
W_DISTANCE = "w_distance"  # critic estimate E[c(x)] - E[c(G(z))] on a held-out batch
GRAD_NORM = "grad_norm"  # mean ||grad_x c(x_hat)||_2 at random interpolates, for every loss
SEED_SCORE = "seed_score"  # distance of the mode histogram to the real one, in [0, 1], lower better
SEED_SUCCESS = "seed_success"  # 1 if the seed passes the success rule (trainers/quality.py), else 0
DIVERGED = "diverged"  # 1 if a loss became NaN/inf or weights exploded, else 0
LOSS_D = "loss_d"  # critic/discriminator loss, mean over the steps since the last evaluation
LOSS_G = "loss_g"  # generator loss, mean over the steps since the last evaluation
TRAIN_SECONDS = "train_seconds"  # wall time spent in training steps (excludes evaluation)
EVAL_SECONDS = "eval_seconds"  # wall time spent in evaluation

# Sweep-level names (computed by sweeper/ from several seeds of one setting).
OBJECTIVE = "objective"  # what the sweep minimises; present only in a trial's final result
RUNNING_OBJECTIVE = "running_objective"  # the same, at every evaluation; drives early stopping
SUCCESS_RATE = "success_rate"  # fraction of seeds that neither diverged nor collapsed
STEPS_TRAINED = "steps_trained"  # generator steps trained, summed over a trial's seeds
FAILED_SEEDS = "failed_seeds"  # number of seeds that fail the success rule (or diverged)
