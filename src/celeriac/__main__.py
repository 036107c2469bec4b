"""``python -m celeriac`` works like the ``celeriac`` console script."""

from celeriac.cli.main import main

if __name__ == "__main__":
    main()
