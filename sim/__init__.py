"""The NHS connectivity capacity testbed: do NHS sites meet their service targets on copper and on fibre."""

__version__ = "0.1.0"
