"""Inputs and embedding them.

- :mod:`semzip.data.images`: listing, reading and checking image files;
- :mod:`semzip.data.folders`: an image folder -> embeddings (:func:`embed_folder`), with an on-disk cache;
- :mod:`semzip.data.embeddings`: loading embedding files;
- :mod:`semzip.data.datasets` and :mod:`semzip.data.scenes`: evaluation datasets and synthetic scenes.
"""
