"""The package version, in a module of its own so that every layer can name it without
importing the package root (which re-exports all layers)."""

__version__ = "0.1.0"
