"""unitgrad: a reproducible benchmark of SAM-family optimizers in unit gradient space."""

__version__ = "0.1.0"
