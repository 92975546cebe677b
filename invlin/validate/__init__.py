"""Validate invertible layers of any flow library with invlin's checks."""
