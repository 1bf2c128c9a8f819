"""``python -m clsx`` is the ``clsx`` command."""

from clsx.cli import main

if __name__ == "__main__":
    main()
