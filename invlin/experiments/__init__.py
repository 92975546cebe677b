"""The seeds' experiments: P4Inv flows on 2-D toy densities and LU-Net on 8×8 digits."""

__all__: list[str] = []  # the experiments are run through `invlin train`; modules hold the parts
