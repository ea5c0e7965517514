"""The football LoRA: reading files (`files.py`), converting layouts to diffusers keys (`convert.py`), applying it with its load report (`apply.py`, `report.py`), and training (`train*.py`)."""
