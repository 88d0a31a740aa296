"""The paper's experiments, each `run(spec, ...)` writing results.json, a Markdown table and PNGs."""

from .common import BUDGET_SAMPLE, BUDGET_SEEDS, BUDGETS, ExperimentSpec

EXPERIMENTS = ("degradation", "depth", "responses", "shortcuts", "transfer", "zoo")

__all__ = ["BUDGET_SAMPLE", "BUDGET_SEEDS", "BUDGETS", "EXPERIMENTS", "ExperimentSpec"]
