"""``python -m semzip.cli``: the same as the ``semzip`` command."""

from semzip.cli import main

if __name__ == "__main__":
    main()
