"""Evaluation: metrics, baselines, BD-rate, rate-distortion reports."""
