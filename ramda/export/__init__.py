"""Export: the smaller dense model a group-sparse network amounts to, and what it saves.

``slim(model, example_inputs) -> (smaller_model, report)`` removes every channel / column that is exactly zero
wherever it is read (:mod:`ramda.export.slim`); ``python -m ramda.export <run dir>`` does it for a finished run
and writes ``slim.pt`` and ``slim.json`` next to its checkpoint (:mod:`ramda.export.run`).
"""

from ramda.export.slim import RTOL, Removal, SlimError, SlimReport, Unshrunk, slim

__all__ = ["RTOL", "Removal", "SlimError", "SlimReport", "Unshrunk", "slim"]
