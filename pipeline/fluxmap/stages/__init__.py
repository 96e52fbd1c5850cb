"""Layer 3, the stage runners: ``stages/X`` runs stage X.

In pipeline order: :mod:`~fluxmap.stages.sites` -> :mod:`~fluxmap.stages.extract` ->
:mod:`~fluxmap.stages.models` -> :mod:`~fluxmap.stages.predict` -> :mod:`~fluxmap.stages.report`.
Each reads its inputs through :mod:`fluxmap.io`, calls :mod:`fluxmap.science`, writes its
outputs and ``provenance.json``, and holds no science of its own.
"""
