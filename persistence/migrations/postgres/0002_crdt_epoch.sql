-- The document epoch of a diagram's CRDT state. It changes only when the CRDT
-- document must be rebuilt from the XML while clients may still hold the old
-- one: room tokens carry it, and a client with an older epoch is told to reload.
-- Runs inside one transaction, after the migrator took its advisory lock.
-- A constant default: existing rows read 0 without the table being rewritten.
-- bpmn_collab_app needs no new grant: 0001 granted SELECT, INSERT and UPDATE on
-- the whole diagrams table, which covers columns added later.

ALTER TABLE diagrams ADD COLUMN crdt_epoch integer NOT NULL DEFAULT 0 CHECK (crdt_epoch >= 0);
