"""``python -m mribench.cli``: the ``bench`` command without the console script."""

from mribench.cli import main

main()
