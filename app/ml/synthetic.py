"""Seeded synthetic data: realistic feature distributions, labels from a hidden non-linear process.

The label process is deliberately richer than the rules baseline (interactions of scarcity with
hiring difficulty, horizon-dependent skill growth, role/skill relevance, noise) so a learned model
has something to find. ``shift`` produces drifted traffic for drift demonstrations and tests.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from app.ml.features import LEVELS, ROLE_DEPARTMENTS, SKILL_CATEGORIES, TARGET

# Hidden long-run growth of each skill (not a model input).
_SKILL_GROWTH = {
    "Generative AI": 1.0, "Machine Learning": 0.8, "Cloud Computing": 0.7, "Cybersecurity": 0.75,
    "Kubernetes": 0.55, "DevOps": 0.45, "Python": 0.5, "Data Visualization": 0.3, "SQL": 0.15,
    "Java": -0.2, "Excel": -0.5, "Leadership": 0.35, "Communication": 0.2,
    "Change Management": 0.4, "Negotiation": 0.0, "Critical Thinking": 0.3,
    "Financial Analysis": 0.05, "Project Management": 0.1, "Digital Marketing": 0.25,
    "Risk Management": 0.2,
}
# Which skill categories matter most to which department (hidden relevance).
_RELEVANCE = {
    "IT": {"Technical": 1.0, "Soft Skill": 0.3, "Business": 0.1},
    "Data": {"Technical": 1.0, "Soft Skill": 0.4, "Business": 0.3},
    "Engineering": {"Technical": 0.9, "Soft Skill": 0.5, "Business": 0.2},
    "HR": {"Technical": 0.2, "Soft Skill": 1.0, "Business": 0.5},
    "Finance": {"Technical": 0.4, "Soft Skill": 0.4, "Business": 1.0},
    "Marketing": {"Technical": 0.4, "Soft Skill": 0.7, "Business": 0.9},
}
_SALARY_BASE = {"IT": 58, "Data": 66, "Engineering": 64, "HR": 48, "Finance": 57, "Marketing": 52}
# Fixed cut points of the latent need: labels do not depend on the batch they were drawn in.
_CUTS = (1.05, 1.45)


def _latent_need(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    growth = df["skill"].map(_SKILL_GROWTH).fillna(0.0).to_numpy()
    relevance = np.array(
        [_RELEVANCE.get(d, {}).get(c, 0.3)
         for d, c in zip(df["department"], df["skill_category"], strict=True)]
    )
    horizon = df["horizon_years"].to_numpy() / 10.0
    trend = df["trend_score"].to_numpy()
    usage = df["internal_usage"].to_numpy()
    scarcity = df["scarcity_index"].to_numpy()
    hiring = df["hiring_difficulty"].to_numpy()
    requests = df["training_requests"].to_numpy()
    economy = df["economic_indicator"].to_numpy()
    latent: np.ndarray = (  # pandas' to_numpy is untyped: name the array type once
        0.9 * trend * (0.6 + 0.8 * horizon)
        + 0.9 * growth * horizon
        + 0.6 * relevance
        + 0.9 * scarcity * hiring
        + 0.25 * np.tanh(requests / 40.0)
        - 0.45 * usage * (horizon > 0.5)
        + 0.3 * (economy - 0.5)
        + rng.normal(0.0, 0.12, len(df))
    )
    return latent


def generate(
    rows: int,
    seed: int = 42,
    shift: Iterable[str] = (),
    strength: float = 1.0,
    with_label: bool = True,
) -> pd.DataFrame:
    """Return ``rows`` synthetic rows; ``shift`` names features whose distribution is moved."""
    rng = np.random.default_rng(seed)
    shifted = set(shift)
    roles = np.array(list(ROLE_DEPARTMENTS))
    skills = np.array(list(SKILL_CATEGORIES))

    role_p = np.full(len(roles), 1 / len(roles))
    skill_p = np.full(len(skills), 1 / len(skills))
    if "job_role" in shifted:  # concentrate traffic on a few roles
        role_p = np.where(np.arange(len(roles)) < 3, 6.0 * strength + 1, 1.0)
        role_p = role_p / role_p.sum()
    if "skill" in shifted:
        skill_p = np.where(np.arange(len(skills)) >= len(skills) - 4, 6.0 * strength + 1, 1.0)
        skill_p = skill_p / skill_p.sum()

    role = rng.choice(roles, rows, p=role_p)
    skill = rng.choice(skills, rows, p=skill_p)
    department = np.array([ROLE_DEPARTMENTS[r] for r in role])
    category = np.array([SKILL_CATEGORIES[s] for s in skill])

    def beta(a: float, b: float, name: str, delta: float = 0.3) -> np.ndarray:
        values = rng.beta(a, b, rows)
        if name in shifted:
            values = values + delta * strength
        return np.clip(values, 0.0, 1.0)

    horizon = rng.integers(1, 11, rows)
    if "horizon_years" in shifted:
        horizon = np.clip(horizon + round(3 * strength), 1, 10)
    trend = beta(2.0, 2.0, "trend_score")
    usage = beta(2.0, 3.0, "internal_usage")
    scarcity = beta(2.0, 2.5, "scarcity_index")
    hiring = np.clip(0.6 * scarcity + 0.4 * rng.beta(2.0, 2.0, rows), 0.0, 1.0)
    if "hiring_difficulty" in shifted:
        hiring = np.clip(hiring + 0.3 * strength, 0.0, 1.0)
    requests = rng.negative_binomial(3, 3 / (3 + 30.0), rows)
    if "training_requests" in shifted:
        requests = requests + round(40 * strength)
    salary = np.array([_SALARY_BASE[d] for d in department]) * rng.lognormal(0.0, 0.18, rows)
    if "avg_salary_k" in shifted:
        salary = salary * (1 + 0.35 * strength)
    economy = beta(3.0, 3.0, "economic_indicator")

    df = pd.DataFrame(
        {
            "job_role": role,
            "skill": skill,
            "skill_category": category,
            "department": department,
            "horizon_years": horizon.astype("int64"),
            "trend_score": trend.round(4),
            "internal_usage": usage.round(4),
            "training_requests": requests.astype("int64"),
            "scarcity_index": scarcity.round(4),
            "hiring_difficulty": hiring.round(4),
            "avg_salary_k": salary.round(2),
            "economic_indicator": economy.round(4),
        }
    )
    if with_label:
        latent = _latent_need(df, rng)
        df[TARGET] = np.select(
            [latent < _CUTS[0], latent < _CUTS[1]], [LEVELS[0], LEVELS[1]], default=LEVELS[2]
        )
    return df
