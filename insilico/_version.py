"""The version of insilico (read by every module that records versions, without importing the package root)."""

__version__ = "0.1.0"
