"""The paper's experiments, each `run(spec, ...)` writing results.json, a Markdown table and PNGs."""

from .common import BUDGETS, ExperimentSpec

EXPERIMENTS = ("degradation", "depth", "responses", "shortcuts", "transfer", "zoo")

__all__ = ["BUDGETS", "EXPERIMENTS", "ExperimentSpec"]
