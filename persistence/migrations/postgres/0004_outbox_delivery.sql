-- Outbox delivery: what a processor needs to deliver each event at least once, retry
-- failures with backoff and park what keeps failing; and the thumbnail's version, so a
-- late event for an older version never replaces a newer thumbnail.
-- Runs inside one transaction, after the migrator took its advisory lock.
-- Every new column is nullable or has a constant default: existing rows are not rewritten.
-- bpmn_collab_app needs no new grant: 0001 granted SELECT, INSERT and UPDATE on the whole
-- diagrams and outbox_events tables, which covers columns added later. outbox_events has no
-- row-level security (processors work across organizations); diagrams keeps its policy,
-- so setting a thumbnail still names the diagram's organization.

ALTER TABLE outbox_events
    ADD COLUMN attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- NULL: due now (every event as the stores insert it).
    ADD COLUMN next_attempt_at  timestamptz,
    -- A claim is a lease: a processor that dies mid-event lets it expire, and another
    -- processor takes the event again.
    ADD COLUMN claimed_until    timestamptz,
    ADD COLUMN parked_at        timestamptz,
    ADD COLUMN last_error       text;

-- Claims look only at events neither delivered nor parked; parked ones wait for an operator.
-- This replaces 0001's index on undelivered events, which also held the parked ones.
DROP INDEX IF EXISTS outbox_events_unprocessed;
CREATE INDEX outbox_events_pending ON outbox_events (id)
    WHERE processed_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_events_parked ON outbox_events (id)
    WHERE processed_at IS NULL AND parked_at IS NOT NULL;

-- The version thumbnail_url shows; NULL while a diagram has no thumbnail yet.
ALTER TABLE diagrams ADD COLUMN thumbnail_version integer CHECK (thumbnail_version >= 1);
