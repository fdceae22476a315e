"""A notebook-first research workbench for thinking with imagination: VLM policies that ask a world simulator for imagined views."""

__version__ = "0.1.0"
