-- Artifact bytes in the database (issue 13, "logs and artifacts readable from any API node"):
-- PostgresBlobStore writes each artifact as numbered chunks of at most 1 MiB, so any API node
-- on the database serves the bytes a worker on another machine stored, without a shared
-- directory. No foreign key to runs: a purge deletes its runs in one short transaction and the
-- chunks afterwards, a few at a time (BlobStore.delete_run), rather than gigabytes in one.
-- EXTERNAL: chunks are compressed artifacts often enough; store them out of line, uncompressed.

CREATE TABLE artifact_chunks (
    run_id TEXT    NOT NULL,
    name   TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    data   BYTEA   NOT NULL,
    PRIMARY KEY (run_id, name, seq)
);

ALTER TABLE artifact_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
