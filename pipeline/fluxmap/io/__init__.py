"""Layer 2, the edges: everything that reads or writes, and nothing else.

:mod:`~fluxmap.io.catalog` (Intake catalogs in, lazy decoded cubes out),
:mod:`~fluxmap.io.sites` (site files in, one tidy table and a quarantine out),
:mod:`~fluxmap.io.landcover` (the MCD12C1 land-cover map), :mod:`~fluxmap.io.models`
(model and zone files), :mod:`~fluxmap.io.store` (the CF Zarr store, resumable),
:mod:`~fluxmap.io.figures` and :mod:`~fluxmap.io.report` (PNG and Markdown),
:mod:`~fluxmap.io.provenance` (checksums, cache keys, ``provenance.json``).
Edges may use :mod:`fluxmap.science`; they never import a stage runner.
"""
