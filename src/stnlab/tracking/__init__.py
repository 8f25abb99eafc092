"""Tracking a run: its identity, the W&B and CSV loggers, checkpoint files, reading and uploading offline W&B runs."""
