"""Training: fine-tuning stages and experiments, from TOML configs (see train/configs/). Importing cxr_core first
quiets TensorFlow's start-up messages for every training module (see cxr_core/__init__.py)."""

import cxr_core  # noqa: F401
