"""``python -m app.cli``: the same as the ``future-skills`` command."""

from app.cli.main import main

main()
