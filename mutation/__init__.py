"""A curated mutation run: single-point defects planted one at a time in a copy of the checkout.

:mod:`mutation.mutants` lists the defects, :mod:`mutation.run` plants each one in a temporary copy
and runs the tests meant to catch it (``nox -s mutation`` or ``python -m mutation.run``).
"""
