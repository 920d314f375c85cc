"""Explanations: exact path-dependent TreeSHAP of the version that made a prediction, per HR
feature, stored once computed (docs/explanations.md)."""
