"""``python -m hst_processor`` runs the ``hst-processor`` command."""

from hst_processor.cli import console

console()
