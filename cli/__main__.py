"""``python -m geoembed.cli ...`` (used with ``torchrun -m geoembed.cli train ...``)."""

from geoembed.cli import main

if __name__ == "__main__":
    main()
