"""Reading archives: :func:`open_archive` opens and checks a file once and returns an :class:`Archive`,
which names, describes, decodes (embeddings, images, captions), searches, verifies and digests it.

- :mod:`semzip.archive.reader`: the :class:`Archive` itself;
- :mod:`semzip.archive.decoders`: which models decode it (generator, refiner settings, encoder, device);
- :mod:`semzip.archive.render`: decoded items written to a folder (PNGs, generation.json, sheets);
- :mod:`semzip.archive.digest`: SHA-256 digests of what a file decodes to.
"""

from semzip.archive.reader import Archive, open_archive

__all__ = ["Archive", "open_archive"]
