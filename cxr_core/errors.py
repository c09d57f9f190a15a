"""The project's own exceptions: every user-facing failure is one of these, with a sentence a
clinician can read. Nothing else should reach a user."""


class CXRError(Exception):
    """Base class: the message is shown to the user as is."""


class InputImageError(CXRError):
    """An input file cannot be read as a radiograph (empty, truncated, not an image, ...)."""


class ConfigError(CXRError):
    """A configuration value is invalid; the message quotes the bad value."""


class ModelError(CXRError):
    """A model cannot be built, loaded or found in the registry."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights were asked for but cannot be had (offline, missing file)."""


class RegistryError(CXRError):
    """The model registry cannot be read or written (read-only disk, disk full, corrupt)."""
