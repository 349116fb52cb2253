"""``soundlib serve``: the web page, a second face of the library (see :mod:`soundlib.serve.app`).

Nothing else in the library imports this package; ``cli.py`` imports its light :mod:`~soundlib.serve.config` (the
option defaults) and the rest lazily in the ``serve`` command.
"""
