"""invlin: verify inverses and log-determinants of invertible linear layers."""

__version__ = "0.1.0"
