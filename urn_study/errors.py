"""The one error for bad input: a config, study or data file (or a key in one) that is wrong. Its message names
what is wrong and where; the CLI prints it as one line. Its own module so that every module of the core can raise it
without importing another (``config`` builds on ``data``, and both refuse bad input)."""


class ConfigError(ValueError):
    """A configuration or study file is wrong; the message names the key and, if any, the file."""
