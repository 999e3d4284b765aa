"""Pretraining-caption scanner: caption shards -> DuckDB -> word x group co-occurrence.

Stages, one module each: ``shards`` (find and read caption sources; ``webdataset`` for tars),
``charclass`` (which characters make tokens), ``terms`` (taxonomy words and
lexicon groups -> surface forms), ``matcher``/``kernel`` (compiled token matching), ``count`` (the
per-shard map), ``store`` (the DuckDB database and ingestion), ``scan`` (the job), ``reduce``
(sums in DuckDB), ``cooccurrence`` (PMI and log-odds), ``outputs`` (files and manifest),
``subset`` (URLs behind a finding). Nothing heavy is imported here.
"""
