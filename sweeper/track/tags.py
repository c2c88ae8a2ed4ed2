"""Every tag gan-sweeper writes on MLflow runs and experiments, in one place.

A run's identity and place in a sweep live in tags, so that a resumed sweep finds its runs
again (`gan_sweeper.key`) and `sweeper stable` can read a sweep back without Ray.
"""

# ------------------------------------------------------------------------- every run
TAG_KEY = "gan_sweeper.key"  # stable identity: sweep/<name>, trial/<sweep>/<id>, seed/.../<n>
TAG_KIND = "gan_sweeper.kind"  # sweep | trial | seed | train | confirm
TAG_SWEEP = "gan_sweeper.sweep"  # the sweep (experiment) a run belongs to
TAG_TRIAL = "gan_sweeper.trial_id"  # Ray Tune trial id
TAG_SEED = "gan_sweeper.seed"
TAG_NODE = "gan_sweeper.node"  # Ray node IP (or hostname) the run trained on
TAG_NODE_ID = "gan_sweeper.node_id"  # Ray node id (nodes on one host share an IP)
TAG_STATUS = "gan_sweeper.status"  # finished | diverged | stopped_early | error | incomplete
# | interrupted | abandoned | running
TAG_LAST_STEP = "gan_sweeper.last_step"  # last step whose metrics reached MLflow

# ----------------------------------------------------------------- sweep parent runs
TAG_SPACE = "gan_sweeper.space"  # the search space's name
TAG_COMMAND = "gan_sweeper.command"  # the command line that started the sweep
TAG_GIT_COMMIT = "gan_sweeper.git_commit"  # the code it ran (when a git checkout)
TAG_RESUMED_WITH = "gan_sweeper.resumed_with"  # the command line of the latest resume

# --------------------------------------------------------------------- trial runs
TAG_RESTORED_FROM = "gan_sweeper.restored_from_step"  # restarted from a checkpoint here
# The step at which the scheduler (ASHA) stopped the trial: its runs end FINISHED (they did
# all the scheduler gave them), not KILLED, which MLflow's UI draws as a crash.
TAG_STOPPED_AT = "gan_sweeper.stopped_at_step"

# ------------------------------------------------------------------- confirm runs
KIND_CONFIRM = "confirm"
TAG_CONFIRM_OF = "gan_sweeper.confirm_of"  # run id of the trial a confirm run re-trains
TAG_SMOKE = "gan_sweeper.smoke"  # "1" on confirm runs made with --smoke-test (never ranked)

# ---------------------------------------------------------------- MLflow's own tags
PARENT_TAG = "mlflow.parentRunId"  # MLflow's nesting tag (the UI shows the tree)
# MLflow 3.17's UI opens an experiment in its GenAI view unless it is marked as model
# development; the note tag is a run's description, shown on its page.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
TAG_NOTE = "mlflow.note.content"
