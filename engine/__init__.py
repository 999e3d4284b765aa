"""vlaudit: measure social bias in CLIP-style models and trace it to their pretraining captions.

The import name is ``engine``; the distribution and the command are ``vlaudit``. Nothing heavy
(torch, open_clip, faiss) is imported here: the stage modules load those when first used.
"""

__version__ = "0.1.0"
