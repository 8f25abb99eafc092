"""Evaluation of trained checkpoints: classification reports, geometric robustness, run comparison."""

from stnlab.evaluation.callback import TestReport
from stnlab.evaluation.metrics import Report, ReportBuilder, evaluate

__all__ = ["Report", "ReportBuilder", "TestReport", "evaluate"]
