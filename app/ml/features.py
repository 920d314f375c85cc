"""The feature schema: the single source of truth for column names, types, bounds and vocabularies.

Training, the data generator, request validation and the model signature all read from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Kind = Literal["categorical", "integer", "float"]


class Level(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


LEVELS: tuple[str, ...] = tuple(level.value for level in Level)
TARGET = "future_need_level"
# Weight of each class in the need score: an expected need, not the top-class confidence.
SCORE_WEIGHTS = {"LOW": 0.0, "MEDIUM": 0.5, "HIGH": 1.0}


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    vocabulary: tuple[str, ...] = ()
    max_length: int = 100

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"


SKILL_CATEGORIES = {
    "Python": "Technical",
    "SQL": "Technical",
    "Cloud Computing": "Technical",
    "Cybersecurity": "Technical",
    "Machine Learning": "Technical",
    "Data Visualization": "Technical",
    "DevOps": "Technical",
    "Kubernetes": "Technical",
    "Generative AI": "Technical",
    "Java": "Technical",
    "Excel": "Technical",
    "Leadership": "Soft Skill",
    "Communication": "Soft Skill",
    "Change Management": "Soft Skill",
    "Negotiation": "Soft Skill",
    "Critical Thinking": "Soft Skill",
    "Financial Analysis": "Business",
    "Project Management": "Business",
    "Digital Marketing": "Business",
    "Risk Management": "Business",
}

ROLE_DEPARTMENTS = {
    "Data Engineer": "Data",
    "Data Scientist": "Data",
    "Data Analyst": "Data",
    "ML Engineer": "Data",
    "DevOps Engineer": "IT",
    "Security Analyst": "IT",
    "Systems Administrator": "IT",
    "Software Engineer": "Engineering",
    "Backend Developer": "Engineering",
    "Engineering Manager": "Engineering",
    "HR Manager": "HR",
    "Talent Acquisition Specialist": "HR",
    "Financial Analyst": "Finance",
    "Accountant": "Finance",
    "Marketing Manager": "Marketing",
    "Product Marketing Specialist": "Marketing",
}

DEPARTMENTS = ("IT", "Data", "Engineering", "HR", "Finance", "Marketing")

FEATURES: tuple[Feature, ...] = (
    Feature("job_role", "categorical", "Job role", vocabulary=tuple(ROLE_DEPARTMENTS)),
    Feature("skill", "categorical", "Skill", vocabulary=tuple(SKILL_CATEGORIES)),
    Feature(
        "skill_category",
        "categorical",
        "Skill category",
        vocabulary=("Technical", "Soft Skill", "Business"),
    ),
    Feature("department", "categorical", "Department", vocabulary=DEPARTMENTS),
    Feature("horizon_years", "integer", "Forecast horizon in years", minimum=1, maximum=10),
    Feature("trend_score", "float", "Market trend strength", minimum=0, maximum=1),
    Feature("internal_usage", "float", "Current internal usage of the skill", minimum=0, maximum=1),
    Feature(
        "training_requests",
        "integer",
        "Training requests in the last year",
        minimum=0,
        maximum=1_000_000,
    ),
    Feature("scarcity_index", "float", "How hard the skill is to find", minimum=0, maximum=1),
    Feature("hiring_difficulty", "float", "Hiring difficulty", minimum=0, maximum=1),
    Feature(
        "avg_salary_k",
        "float",
        "Average salary, k EUR/year",
        exclusive_minimum=0,
        maximum=10_000,
    ),
    Feature("economic_indicator", "float", "Sector economic outlook", minimum=0, maximum=1),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL: tuple[str, ...] = tuple(f.name for f in FEATURES if f.is_categorical)
NUMERIC: tuple[str, ...] = tuple(f.name for f in FEATURES if not f.is_categorical)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}


def need_score(probabilities: dict[str, float]) -> float:
    """Expected need on 0-100 from the class probabilities."""
    return 100.0 * sum(SCORE_WEIGHTS[level] * p for level, p in probabilities.items())
