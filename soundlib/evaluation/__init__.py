"""``soundlib eval``: the paper's retrieval metrics and its correlation task, for one or several models on a list.

- :mod:`~soundlib.evaluation.scoring`: vectors and labels in, metrics out (numpy only: no torch, no Chroma; what
  training's validation uses);
- :mod:`~soundlib.evaluation.inputs`: a pair list's frames and clips, read and embedded with each model (the one
  embedding path of the package) and the rows that could not be;
- :mod:`~soundlib.evaluation.retrieval`: top-k sample and category accuracy through Chroma, over the list's own clips
  or an ingested library (:func:`~soundlib.evaluation.retrieval.evaluate_list`);
- :mod:`~soundlib.evaluation.correlation`: the correlation task
  (:func:`~soundlib.evaluation.correlation.evaluate_correlation`).

Rendering the reports is the command line's job (:mod:`soundlib.cli_tables`).
"""
