"""Analytics: events exported as Arrow tables to a store that speaks ClickHouse SQL.

- :mod:`.schema`: the ``events`` table (one row per event, payload fields lifted out);
- :mod:`.store`: the ``AnalyticsStore`` port and its clickhouse-connect adapter, on chDB
  (embedded, the default) or a ClickHouse server (``NOETL_CLICKHOUSE_URL``);
- :mod:`.export`: redacted, incremental, idempotent export from an ``EventStore``;
- :mod:`.statistics`: ``step_statistics(playbook, step)``;
- :mod:`.query`: ``analytics_query(sql)``, read-only with row and time limits;
- :mod:`.service`: ``Analytics``, the facade the CLI and the HTTP API use.

Nothing heavy is imported here: chDB, clickhouse-connect and pyarrow load when a store is
opened or a table is built, so importing the package costs nothing at start-up.
"""
