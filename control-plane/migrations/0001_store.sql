-- Portico's store on PostgreSQL: the trees of bytes, the internal metadata and the revision.
-- Keys compare as bytes (bytea, and text with the "C" collation), the order sled keeps.

CREATE TABLE portico_entries (
    tree text COLLATE "C" NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tree, key)
);

CREATE TABLE portico_meta (
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- One row: the number of commits ever made. Every commit locks it (SELECT ... FOR UPDATE),
-- which orders the commits of every process sharing the database.
CREATE TABLE portico_revision (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    revision bigint NOT NULL CHECK (revision >= 0)
);

INSERT INTO portico_revision (id, revision) VALUES (true, 0);
