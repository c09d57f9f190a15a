"""Training: fine-tuning stages and experiments, from TOML configs (see train/configs/)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
