"""The promotion policy: may this candidate version replace Production?

A candidate passes only if it loads, predicts the reference sample sensibly, keeps a compatible
signature (or MAJOR changes are explicitly allowed) and beats Production on the chosen metric by
at least both thresholds (absolute gain and gain relative to Production's value). Blocking.

``judge`` takes the candidate already loaded (or the error loading it raised), so a promotion
loads it once and hands that same checked model to the serving slot; ``evaluate`` loads it itself.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.config import LifecycleSettings
from app.lifecycle.versioning import VersionRecord, detect_change, read_record
from app.ml.synthetic import generate
from app.registry.client import ModelRegistry, VersionRef
from app.serving.loaded_model import LoadedModel, load_from_path, to_frame

log = logging.getLogger(__name__)

SAMPLE_ROWS = 200


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class PolicyDecision:
    candidate: str
    production: str | None
    promote: bool
    reason: str
    metric: str
    candidate_value: float | None = None
    production_value: float | None = None
    change_type: str | None = None
    checks: list[Check] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Scores(Protocol):
    """Accuracy and macro-F1 of one model on live rows with feedback."""

    @property
    def accuracy(self) -> float: ...

    @property
    def f1_macro(self) -> float: ...


class LiveEvidence(Protocol):
    """Production (the champion) and the candidate on the same rows: those the candidate scored
    in Production's shadow that have feedback (``app.monitoring.challenger`` provides it; the
    container wires it in, monitoring sits beside lifecycle, not below it)."""

    @property
    def rows_with_feedback(self) -> int: ...

    @property
    def champion(self) -> Scores | None: ...

    @property
    def candidate(self) -> Scores | None: ...


def _predicts_sample(model: LoadedModel) -> str | None:
    """None when the model predicts its reference sample sensibly, else what went wrong."""
    sample = model.reference if model.reference is not None else generate(SAMPLE_ROWS, seed=0)
    frame = to_frame(sample.head(SAMPLE_ROWS).to_dict("records"))
    proba = model.predict_proba(frame)
    if proba.shape != (len(frame), 3):
        return f"probabilities have shape {proba.shape}, expected ({len(frame)}, 3)"
    if not np.isfinite(proba).all() or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-6):
        return "probabilities are not finite or do not sum to 1"
    return None


class PromotionPolicy:
    def __init__(self, *, registry: ModelRegistry, settings: LifecycleSettings) -> None:
        self.registry = registry
        self.settings = settings

    def load(self, candidate: VersionRef, model_path: Path | None = None) -> LoadedModel:
        """``model_path``: the candidate's saved model directory when it is not registered (a
        training dry run); else the registered version is downloaded."""
        return load_from_path(candidate, model_path or self.registry.download(candidate))

    def evaluate(self, candidate: VersionRef, production: VersionRef | None,
                 model_path: Path | None = None, live: LiveEvidence | None = None
                 ) -> PolicyDecision:
        """Load the candidate, then ``judge`` it."""
        try:
            loaded: LoadedModel | Exception = self.load(candidate, model_path)
        except Exception as exc:  # judged: the "loads" check fails with its type
            loaded = exc
        return self.judge(candidate, production, loaded, live)

    @property
    def wants_live_evidence(self) -> bool:
        s = self.settings
        return s.min_shadow_feedback_rows > 0 or s.challenger_not_worse

    def judge(self, candidate: VersionRef, production: VersionRef | None,
              loaded: LoadedModel | Exception, live: LiveEvidence | None = None) -> PolicyDecision:
        """The verdict on a candidate loaded by the caller (``loaded``: the model, or what its
        loading raised); ``live``: its shadow evidence, checked when the settings ask for it."""
        s = self.settings
        decision = PolicyDecision(candidate.version, production.version if production else None,
                                  promote=False, reason="", metric=s.metric)
        checks = decision.checks

        if isinstance(loaded, Exception):
            checks.append(Check("loads", False, f"the model does not load ({type(loaded).__name__})"))
            return self._finish(decision)
        checks.append(Check("loads", True, "the model loads"))
        try:
            problem = _predicts_sample(loaded)
        except Exception as exc:
            problem = f"predicting the reference sample raised {type(exc).__name__}"
        checks.append(Check("predicts_reference", problem is None, problem or "reference sample predicted"))
        if problem:
            return self._finish(decision)

        record = read_record(self.registry, candidate)
        if record is None:
            checks.append(Check("record", False, "the version has no readable metadata record"))
            return self._finish(decision)
        prod_record = read_record(self.registry, production) if production else None
        decision.change_type = detect_change(record, prod_record)
        compatible = decision.change_type != "major" or s.allow_major
        detail = ("signature unchanged" if decision.change_type != "major" else
                  "signature changed (MAJOR)" + (", allowed by setting" if s.allow_major else
                                                 "; set FS_LIFECYCLE_ALLOW_MAJOR to allow it"))
        checks.append(Check("signature", compatible, detail))
        checks.append(self._metric_check(decision, record, prod_record))
        if self.wants_live_evidence and production is not None:
            checks.extend(self._live_checks(live))
        return self._finish(decision)

    def _live_checks(self, live: LiveEvidence | None) -> list[Check]:
        """Minimums on live traffic: enough shadow-scored rows with feedback, and (optionally)
        the candidate not worse than Production on them."""
        s = self.settings
        rows = live.rows_with_feedback if live is not None else 0
        checks = []
        if s.min_shadow_feedback_rows:
            checks.append(Check(
                "live_rows", rows >= s.min_shadow_feedback_rows,
                f"{rows} shadow-scored rows with feedback (FS_LIFECYCLE_MIN_SHADOW_FEEDBACK_ROWS "
                f"asks for {s.min_shadow_feedback_rows})"))
        if s.challenger_not_worse:
            if live is None or live.champion is None or live.candidate is None:
                checks.append(Check("live_not_worse", False,
                                    "no shadow-scored rows with feedback to compare on"))
            else:
                mine, theirs, slack = live.candidate, live.champion, s.challenger_tolerance
                passed = (mine.accuracy >= theirs.accuracy - slack
                          and mine.f1_macro >= theirs.f1_macro - slack)
                checks.append(Check(
                    "live_not_worse", passed,
                    f"on {rows} live rows: accuracy {mine.accuracy:.4f} vs Production "
                    f"{theirs.accuracy:.4f}, macro-F1 {mine.f1_macro:.4f} vs {theirs.f1_macro:.4f} "
                    f"(tolerance {slack:g})"))
        return checks

    def _metric_check(
        self, decision: PolicyDecision, record: VersionRecord, prod: VersionRecord | None
    ) -> Check:
        s = self.settings
        value = record.metrics.get(s.metric)
        decision.candidate_value = value
        if value is None:
            return Check("metric", False, f"the candidate has no {s.metric}")
        if prod is None:
            return Check("metric", True, f"{s.metric}={value:.4f}; there is no Production version")
        base = prod.metrics.get(s.metric)
        decision.production_value = base
        if base is None:
            return Check("metric", True, f"Production has no {s.metric}; candidate {value:.4f}")
        gain = value - base
        needed = max(s.min_improvement, s.min_relative_improvement * base)
        passed = gain > 0 and gain >= needed
        detail = (f"{s.metric} {value:.4f} vs Production {base:.4f} (gain {gain:+.4f}, "
                  f"needed > 0 and >= {needed:.4f})")
        return Check("metric", passed, detail)

    @staticmethod
    def _finish(decision: PolicyDecision) -> PolicyDecision:
        failed = [c for c in decision.checks if not c.passed]
        decision.promote = not failed
        decision.reason = ("; ".join(c.detail for c in failed) if failed else
                           "all checks passed: " + "; ".join(c.detail for c in decision.checks))
        return decision
