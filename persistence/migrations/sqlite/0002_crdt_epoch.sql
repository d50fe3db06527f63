-- The document epoch of a diagram's CRDT state. It changes only when the CRDT
-- document must be rebuilt from the XML while clients may still hold the old
-- one: room tokens carry it, and a client with an older epoch is told to reload.
-- Runs inside one BEGIN IMMEDIATE; existing rows start at epoch 0.

ALTER TABLE diagrams ADD COLUMN crdt_epoch INTEGER NOT NULL DEFAULT 0 CHECK (crdt_epoch >= 0);
