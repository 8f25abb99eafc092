"""The one place that knows ``conf/``: composing it (``compose``), the run config's shape and checks (``schema``)
and the checks of single values that every command line shares (``checks``)."""

from stnlab.config.compose import CONF_DIR, compose, compose_train, config_files, group_options, message_line  # noqa: F401
