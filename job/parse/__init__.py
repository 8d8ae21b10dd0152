"""The parse stage: discover journals -> plan what changed -> parse in worker processes -> index.

Reads ``failed_runs/`` (and its manifests, to know what is complete); writes
``aide_journals/index.json`` and, through the renderer the caller hands it
(:class:`job.parse.worker.Renderer`), each journal's report and page. Entry points:
:func:`job.parse.stage.run_parse` and :class:`job.parse.stage.ParseStage`.
Depends on :mod:`job.core` and :mod:`job.model` only.
"""
