CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY,
    watch TEXT NOT NULL,
    collection TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    device INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('cataloged', 'rejected')),
    role TEXT NOT NULL DEFAULT 'data' CHECK (role IN ('data', 'metadata')),
    item_id TEXT,
    error_kind TEXT,
    error TEXT,
    changed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sources_item ON sources (collection, item_id);
CREATE INDEX IF NOT EXISTS sources_watch ON sources (watch, path);
CREATE INDEX IF NOT EXISTS sources_status ON sources (status, changed_at);

CREATE TABLE IF NOT EXISTS collections (
    id TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS items (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    origin TEXT NOT NULL,
    partition TEXT NOT NULL,
    xkind TEXT NOT NULL CHECK (xkind IN ('e', 'w', 'c', 'u')),
    west REAL, south REAL, east REAL, north REAL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    gsd REAL,
    resolution REAL,
    created TEXT NOT NULL,
    hash TEXT NOT NULL,
    doc BLOB NOT NULL,
    thumbnail BLOB,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_partition ON items (collection, partition, id);
CREATE INDEX IF NOT EXISTS items_west ON items (collection, xkind, west);
CREATE INDEX IF NOT EXISTS items_east ON items (collection, xkind, east);
CREATE INDEX IF NOT EXISTS items_south ON items (collection, south);
CREATE INDEX IF NOT EXISTS items_north ON items (collection, north);
CREATE INDEX IF NOT EXISTS items_start ON items (collection, start_us);
CREATE INDEX IF NOT EXISTS items_end ON items (collection, end_us);
CREATE INDEX IF NOT EXISTS items_gsd ON items (collection, gsd);
CREATE INDEX IF NOT EXISTS items_resolution ON items (collection, resolution);

CREATE TABLE IF NOT EXISTS item_values (
    collection TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (collection, id, field, value)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS value_counts (
    collection TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (collection, field, value)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS partitions (
    collection TEXT NOT NULL,
    partition TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (collection, partition)
) WITHOUT ROWID;

-- Catalog files on disk: what the writer wrote (sha256, size) and, once a scrub has
-- hashed the file on disk and found it right, the mtime it had then (NULL: not since).
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('item', 'partition', 'collection', 'root', 'delete_item')),
    collection TEXT,
    key TEXT
);

CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('collection', 'item', 'delete_item', 'delete_collection')),
    collection TEXT NOT NULL,
    key TEXT,
    queued_at REAL NOT NULL,
    event TEXT,
    doc BLOB
);

CREATE TABLE IF NOT EXISTS file_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    data BLOB,
    queued_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS sink_cursors (
    name TEXT PRIMARY KEY,
    stream TEXT NOT NULL CHECK (stream IN ('changes', 'files')),
    seq INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
