"""ldensf: real-time data assimilation with LD-EnSF. The command line lives in :mod:`ldensf.cli`."""

__version__ = "0.1.0"
