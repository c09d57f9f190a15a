"""A model: its card and folder, the registry, the architectures, prediction, Grad-CAM, the decision rule and the operating point."""
