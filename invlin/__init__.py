"""invlin: verify inverses and log-determinants of invertible linear layers."""

__all__ = ["__version__"]

__version__ = "0.1.0"
