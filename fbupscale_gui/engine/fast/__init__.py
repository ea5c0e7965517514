"""The fast engines for instant previews: Lanczos, Real-ESRGAN and the other ncnn wheel models (`engines.py`, `ncnn_sr.py`), and tiling (`tiling.py`)."""
