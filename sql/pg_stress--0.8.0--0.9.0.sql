-- pg_stress 0.8.0 -> 0.9.0: PostgreSQL 16, 17 and 18. The timeline keeps what newer servers count:
-- WAL flushes each second (pg_stat_wal; pg_stat_io from 18) and relation I/O through shared buffers
-- from pg_stat_io (16 and later; NULL on 15).
ALTER TABLE stress.timeline
    ADD COLUMN wal_syncs         bigint,
    ADD COLUMN io_reads          bigint,
    ADD COLUMN io_writes         bigint,
    ADD COLUMN io_extends        bigint,
    ADD COLUMN io_evictions      bigint,
    ADD COLUMN io_fsyncs         bigint,
    ADD COLUMN io_backend_writes bigint;
COMMENT ON TABLE stress.timeline IS 'Per second of a run, beside stress.samples: wait events of its workers, lock waits, WAL, blocks, commits, checkpoints, autovacuum, WAL flushes and relation I/O (pg_stat_io, PostgreSQL 16 and later).';
