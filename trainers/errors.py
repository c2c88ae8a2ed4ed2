"""The trainer's one error type, in a leaf module so that every other module can raise it."""


class ConfigError(ValueError):
    """A user error in a config: the message is one line that names the problem and the fix."""
