-- Outbox delivery: what a processor needs to deliver each event at least once, retry
-- failures with backoff and park what keeps failing; and the thumbnail's version, so a
-- late event for an older version never replaces a newer thumbnail.
-- Timestamps are ISO-8601 UTC text like every other one here. Runs inside one
-- BEGIN IMMEDIATE; existing rows read the defaults.

ALTER TABLE outbox_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0);
-- NULL: due now (every event as the store inserts it).
ALTER TABLE outbox_events ADD COLUMN next_attempt_at TEXT;
-- A claim is a lease: a processor that dies mid-event lets it expire, and the event is
-- taken again.
ALTER TABLE outbox_events ADD COLUMN claimed_until TEXT;
ALTER TABLE outbox_events ADD COLUMN parked_at TEXT;
ALTER TABLE outbox_events ADD COLUMN last_error TEXT;

-- Claims look only at events neither delivered nor parked; parked ones wait for an operator.
-- This replaces 0001's index on undelivered events, which also held the parked ones.
DROP INDEX IF EXISTS outbox_events_unprocessed;
CREATE INDEX outbox_events_pending ON outbox_events (id)
    WHERE processed_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_events_parked ON outbox_events (id)
    WHERE processed_at IS NULL AND parked_at IS NOT NULL;

-- The version thumbnail_url shows; NULL while a diagram has no thumbnail yet.
ALTER TABLE diagrams ADD COLUMN thumbnail_version INTEGER CHECK (thumbnail_version >= 1);
