"""The pipeline's steps as plain functions, testable without Dagster: the run's scope
(``scope``), what it reads and the quality of its new claims (``intake``, over the frames of
``claims``, its checks run in the shards of the run's compute by ``sharded_quality``), their
enrichment in those shards (``sharded_enrichment``), the rules (``detection``, ``selection``,
and ``sharded_rules``, which runs them in the shards), its commit (``commit``), and the files
its frames and the peers' history are kept in (``frame_files``, ``peer_history``). The assets
(``fwa_pipeline.defs.assets``) read their inputs, call these and describe what came out."""
