"""astra-wb: a research workbench for thinking with imagination."""
__version__ = "0.1.0"
