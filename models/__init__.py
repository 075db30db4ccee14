"""Typed data shared by workflows, activities and the CLI: pure pydantic models and names, no I/O.

The layers point one way: ``workflows`` and ``activities`` import ``models``, never each other;
``starter.py`` imports ``models`` and the workflow classes it drives.
"""
