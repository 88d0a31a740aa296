"""Figures: learning curves and layer responses of the experiments, and what a trained network learned
(first-layer filters, linear-classifier templates, feature maps, confusion matrix, an HTML report).

Each `show_*` function takes a run folder (or a data set) and writes a PNG, returning its path; the
`plot_*` functions draw from tensors and write to a path or a binary file object (io.BytesIO).
"""

from .confusion import plot_confusion, show_confusion
from .curves import plot_degradation, plot_responses, plot_run_curves, show_curves
from .features import feature_maps, plot_features, prepare_image, show_features, stage_modules
from .filters import first_conv, plot_filters, show_filters
from .report import write_report
from .templates import LinearClassifier, fit_templates, plot_templates, show_templates, train_linear

__all__ = ["plot_confusion", "show_confusion", "plot_degradation", "plot_responses", "plot_run_curves",
           "show_curves", "feature_maps", "plot_features", "prepare_image", "show_features", "stage_modules",
           "first_conv", "plot_filters", "show_filters", "write_report", "LinearClassifier", "fit_templates",
           "plot_templates", "show_templates", "train_linear"]
