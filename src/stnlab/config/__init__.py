"""The one place that knows the configs of ``conf/``: composing them (:mod:`.compose`), the run config's shape
and checks (:mod:`.schema`) and the checks of single values that every app's command line shares (:mod:`.checks`)."""

from stnlab.config.compose import CONF_DIR, compose, compose_train, config_files, group_options, message_line

__all__ = ["CONF_DIR", "compose", "compose_train", "config_files", "group_options", "message_line"]
