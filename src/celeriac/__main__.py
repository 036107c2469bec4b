"""``python -m celeriac`` works like the ``celeriac`` console script.

``worker -P gevent`` is monkey-patched here, before the command line and the app are imported
(see ``celeriac._gevent_patch``).
"""

import sys

from celeriac._gevent_patch import patch_if_requested

__all__ = ["main"]


def main() -> None:
    patch_if_requested(sys.argv[1:])
    # lazy: the CLI loads only what the command it runs needs
    from celeriac.cli.main import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
