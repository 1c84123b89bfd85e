-- Recording (live-to-VOD) and retention: a recorded media entry names the live entry
-- it was recorded from; a live entry names its latest recording; an entry may expire
-- (unix seconds); a media entry's stored content size (usage per partner).
ALTER TABLE entries ADD COLUMN source_entry_id TEXT;
ALTER TABLE entries ADD COLUMN recorded_entry_id TEXT;
ALTER TABLE entries ADD COLUMN expires_at BIGINT;
ALTER TABLE entries ADD COLUMN stored_bytes BIGINT;
