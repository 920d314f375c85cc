"""Monitoring: drift reports (native engine and Evidently), performance from feedback, model health."""
