"""Training of semzip's learned image codec: rate-distortion, then semantic-perceptual fine-tuning."""

from semzip.train.config import DataConfig, LossConfig, ModelConfig, TrainConfig, load_config

__all__ = ["DataConfig", "LossConfig", "ModelConfig", "TrainConfig", "load_config", "train_lic"]


def train_lic(*args, **kwargs):
    """Run (or resume) LIC training; see :func:`semzip.train.lic.train_lic` (imports torch lazily)."""
    from semzip.train.lic import train_lic as _train

    return _train(*args, **kwargs)
