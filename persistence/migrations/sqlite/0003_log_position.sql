-- The update-log position a CRDT state includes. A live room appends every
-- accepted update to a durable per-room log before fanning it out; a version
-- written from the room records the position of the last entry it holds, so a
-- room reopened after a crash replays only the entries after it, and the log
-- can be trimmed up to it. NULL: the state includes no log entry.
-- Runs inside one BEGIN IMMEDIATE.

ALTER TABLE diagrams ADD COLUMN log_position TEXT;
ALTER TABLE diagram_versions ADD COLUMN log_position TEXT;
