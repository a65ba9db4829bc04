"""The offline tools: a recorded file in, a report out, through the live processor's code.

::

    labels.py     fault labels (ground truth) as a labelled run leaves them
    replay.py     a file through the live code path, alerts collected, records kept
    evaluate.py   detection against labels: events, alerts, delays, the threshold sweep
    baselines.py  the simple detectors HST is compared with
    plot.py       the per-machine picture (matplotlib)
    commands.py   the ``replay``, ``evaluate`` and ``plot`` commands behind the CLI

Nothing in the streaming core imports from here; the modules are imported one by one (not
from this package) so that ``replay`` never loads matplotlib or scikit-learn.
"""

__all__: list[str] = []
