"""``python -m checkpointdb``: the same as the ``checkpointdb`` command."""

from .cli import main

if __name__ == "__main__":
    main()
