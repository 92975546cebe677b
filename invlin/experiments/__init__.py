"""The seeds' experiments: P4Inv flows on 2-D toy densities and LU-Net on 8×8 digits."""
