"""Pure-Python core: requests, prompt schema, settings, metadata, export.

Nothing here imports Qt, torch or diffusers (enforced by import-linter, see pyproject.toml).
"""
