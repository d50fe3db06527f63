-- Initial schema: organizations, users, projects, diagrams, their versions and the outbox.
-- Ids are TEXT (diagram ids are canonical lower-case UUIDs); timestamps are
-- fixed-width ISO-8601 UTC text with microseconds, written by the store, so
-- text order is time order; JSON is TEXT. Runs inside one BEGIN IMMEDIATE.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    id          TEXT NOT NULL,
    name        TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, id)
);

-- No API yet; diagrams.project_id is a free text id until there is one.
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE diagrams (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL,
    project_id     TEXT,
    title          TEXT NOT NULL,
    xml_inline     BLOB,
    xml_blob_key   TEXT,
    xml_size       INTEGER NOT NULL CHECK (xml_size >= 0),
    crdt_state     BLOB,
    metadata       TEXT NOT NULL DEFAULT '{}',
    element_count  INTEGER NOT NULL CHECK (element_count >= 0),
    thumbnail_url  TEXT,
    version        INTEGER NOT NULL CHECK (version >= 1),
    created_by     TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    deleted_at     TEXT,
    CONSTRAINT diagrams_xml_in_one_place CHECK ((xml_inline IS NULL) <> (xml_blob_key IS NULL))
);

-- The list query: one org's live diagrams, newest first, keyset on (updated_at, id).
CREATE INDEX diagrams_org_recent ON diagrams (org_id, updated_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX diagrams_org_project ON diagrams (org_id, project_id);
CREATE INDEX diagrams_element_count ON diagrams (element_count);
-- Title search is a word-prefix match done by a function the store registers;
-- it filters rows the org index already narrowed, so it needs no index of its own.

CREATE TABLE diagram_versions (
    id             INTEGER PRIMARY KEY,
    diagram_id     TEXT NOT NULL REFERENCES diagrams (id),
    org_id         TEXT NOT NULL,
    rev            INTEGER NOT NULL CHECK (rev >= 1),
    xml_inline     BLOB,
    xml_blob_key   TEXT,
    xml_size       INTEGER NOT NULL CHECK (xml_size >= 0),
    crdt_state     BLOB,
    metadata       TEXT NOT NULL DEFAULT '{}',
    element_count  INTEGER NOT NULL CHECK (element_count >= 0),
    author         TEXT NOT NULL,
    message        TEXT,
    created_at     TEXT NOT NULL,
    CONSTRAINT diagram_versions_rev_unique UNIQUE (diagram_id, rev),
    CONSTRAINT diagram_versions_xml_in_one_place
        CHECK ((xml_inline IS NULL) <> (xml_blob_key IS NULL))
);

CREATE TABLE outbox_events (
    id            INTEGER PRIMARY KEY,
    org_id        TEXT NOT NULL,
    diagram_id    TEXT NOT NULL,
    type          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    processed_at  TEXT
);

-- The relay only ever looks for what it has not delivered yet.
CREATE INDEX outbox_events_unprocessed ON outbox_events (id) WHERE processed_at IS NULL;
