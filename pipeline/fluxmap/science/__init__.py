"""Layer 1, the science: pure functions of xarray, numpy and pandas objects.

No paths, no files, no cluster, no ``.compute()`` of a whole grid: every function here takes
arrays or tables and returns arrays or tables (lazy in, lazy out), so it can be tested eagerly
and chunked alike. Nothing here imports :mod:`fluxmap.io`, :mod:`fluxmap.stages`,
:mod:`fluxmap.config` or the demo world (``.importlinter`` in the repository enforces it).

In pipeline order: :mod:`~fluxmap.science.products` (canonical variables, decoders),
:mod:`~fluxmap.science.periods` (the 8-day calendar), :mod:`~fluxmap.science.grids`,
:mod:`~fluxmap.science.extract` and :mod:`~fluxmap.science.features` (predictors at sites),
:mod:`~fluxmap.science.training` (training tables), :mod:`~fluxmap.science.zones`,
:mod:`~fluxmap.science.selection`, :mod:`~fluxmap.science.train`,
:mod:`~fluxmap.science.validate`, :mod:`~fluxmap.science.uncertainty`,
:mod:`~fluxmap.science.predict`, :mod:`~fluxmap.science.aggregate`.
"""
