"""Where the pipeline computes: in this process or on a Dask cluster, behind one interface.

* ``base``: :class:`Compute` (``shards``, ``map``, ``describe``), :class:`LocalCompute` and
  :class:`ComputeError`.
* ``dask``: :class:`DaskCompute`, on an existing cluster or a ``LocalCluster`` of its own.
* ``factory``: :func:`compute_from_settings`, the one the settings ask for.
* ``shards``: :func:`bucket_of`, :func:`shard_of`, :class:`Shard` and :func:`split`: each key's
  fixed bucket, and shards as contiguous ranges of buckets.

In a Dagster run, ``defs.compute.ComputeResource`` (key ``compute``) gives assets theirs.
"""
