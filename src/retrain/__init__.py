"""GitOps retraining: one production model kept fresh and safe, with git as the control plane."""

__version__ = "0.1.0"
