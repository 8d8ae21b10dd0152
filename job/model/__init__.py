"""What the archives hold: a run folder's layout, an AIDE journal, a run group, the manifest.

Decodes and classifies: the typed journal model (:mod:`job.model.journal`), what
a path says about agent, task and run (:mod:`job.model.layout`), run groups and
their logs (:mod:`job.model.runs`), the failure taxonomy (:mod:`job.model.taxonomy`)
and the per-journal facts the index keeps (:mod:`job.model.extras`). Reads files;
writes none except the download manifest (:mod:`job.model.manifest`), the contract
between the download, the parse and ``merge``. Depends only on :mod:`job.core`.
"""
