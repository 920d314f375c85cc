"""Batch scoring: a CSV or Parquet file of feature rows in, the same rows with level, score and
class probabilities out, read and written chunk by chunk (bounded memory), recorded in MLflow.

``future-skills score`` (``app.cli.scoring``) is the entry point; the model is the one the service
serves, loaded through the container's slot.
"""
