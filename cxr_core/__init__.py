"""cxr_core: everything the CXR pneumonia app, the CLI and the training code share.

Pure functions and small classes; no Streamlit import anywhere in this package.
TensorFlow is imported lazily (only by the modules that build or run models) so that
`import cxr_core` and image loading stay fast. Importing it is also the one place that quiets TensorFlow's C++
start-up messages (info and warnings; errors still show) for this process and those it starts, unless the user
chose a level.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLASSES = ("NORMAL", "BACTERIAL", "VIRAL")
BINARY_CLASSES = ("NORMAL", "PNEUMONIA")

__version__ = "0.1.0"
