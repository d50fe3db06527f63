-- Initial schema: organizations, users, projects, diagrams, their versions and the outbox.
-- Runs inside one transaction, after the migrator took its advisory lock.

CREATE TABLE organizations (
    id          text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    org_id      text NOT NULL REFERENCES organizations (id),
    id          text NOT NULL,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

-- No API yet; diagrams.project_id is a free text id until there is one.
CREATE TABLE projects (
    id          text PRIMARY KEY,
    org_id      text NOT NULL REFERENCES organizations (id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE diagrams (
    id             uuid PRIMARY KEY,
    org_id         text NOT NULL,
    project_id     text,
    title          text NOT NULL,
    xml_inline     bytea,
    xml_blob_key   text,
    xml_size       integer NOT NULL CHECK (xml_size >= 0),
    crdt_state     bytea,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
    element_count  integer NOT NULL CHECK (element_count >= 0),
    thumbnail_url  text,
    version        integer NOT NULL CHECK (version >= 1),
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    CONSTRAINT diagrams_xml_in_one_place CHECK ((xml_inline IS NULL) <> (xml_blob_key IS NULL))
);

-- The list query: one org's live diagrams, newest first, keyset on (updated_at, id).
CREATE INDEX diagrams_org_recent ON diagrams (org_id, updated_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX diagrams_org_project ON diagrams (org_id, project_id);
CREATE INDEX diagrams_element_count ON diagrams (element_count);
CREATE INDEX diagrams_title_search ON diagrams USING gin (to_tsvector('simple', title));

CREATE TABLE diagram_versions (
    id             bigserial PRIMARY KEY,
    diagram_id     uuid NOT NULL REFERENCES diagrams (id),
    org_id         text NOT NULL,
    rev            integer NOT NULL CHECK (rev >= 1),
    xml_inline     bytea,
    xml_blob_key   text,
    xml_size       integer NOT NULL CHECK (xml_size >= 0),
    crdt_state     bytea,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
    element_count  integer NOT NULL CHECK (element_count >= 0),
    author         text NOT NULL,
    message        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT diagram_versions_rev_unique UNIQUE (diagram_id, rev),
    CONSTRAINT diagram_versions_xml_in_one_place
        CHECK ((xml_inline IS NULL) <> (xml_blob_key IS NULL))
);

CREATE TABLE outbox_events (
    id            bigserial PRIMARY KEY,
    org_id        text NOT NULL,
    diagram_id    uuid NOT NULL,
    type          text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz
);

-- The relay only ever looks for what it has not delivered yet.
CREATE INDEX outbox_events_unprocessed ON outbox_events (id) WHERE processed_at IS NULL;

-- Row-level security, defence in depth: even a query that forgot its org filter
-- only sees the org named by the transaction's app.org_id. FORCE makes it apply
-- to the table owner too; superusers still bypass it, hence the role below.
ALTER TABLE diagrams ENABLE ROW LEVEL SECURITY;
ALTER TABLE diagrams FORCE ROW LEVEL SECURITY;
CREATE POLICY diagrams_org_isolation ON diagrams
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE diagram_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE diagram_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY diagram_versions_org_isolation ON diagram_versions
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

-- The store switches to this role in each transaction, so RLS holds even when
-- it connects as a superuser. Creating a role needs CREATEROLE; without it the
-- store runs as the connecting user (a role made by another database's migration
-- raises unique_violation or duplicate_object: roles are cluster-wide).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bpmn_collab_app') THEN
        CREATE ROLE bpmn_collab_app NOLOGIN;
    END IF;
EXCEPTION
    WHEN insufficient_privilege OR duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bpmn_collab_app') THEN
        GRANT SELECT, INSERT, UPDATE ON organizations, users, diagrams, diagram_versions,
            outbox_events TO bpmn_collab_app;
        GRANT SELECT ON projects TO bpmn_collab_app;
        GRANT USAGE, SELECT ON SEQUENCE diagram_versions_id_seq, outbox_events_id_seq
            TO bpmn_collab_app;
        -- SET ROLE needs membership; a superuser has it implicitly, a CREATEROLE
        -- user that made the role may grant it to itself.
        IF NOT pg_has_role(current_user, 'bpmn_collab_app', 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT bpmn_collab_app TO %I', current_user);
            EXCEPTION
                WHEN insufficient_privilege OR invalid_grant_operation THEN NULL;
            END;
        END IF;
    END IF;
END
$$;
