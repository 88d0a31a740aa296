"""Figures: learning curves, layer responses (and later filters, templates, feature maps)."""
