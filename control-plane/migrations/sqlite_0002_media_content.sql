-- Media content (PUT /api/v1/entries/ID/content): why an entry is in its status
-- (`error`), what the content inspector found (JSON), and the stored file's name.
ALTER TABLE entries ADD COLUMN status_reason TEXT;
ALTER TABLE entries ADD COLUMN media TEXT;
ALTER TABLE entries ADD COLUMN content_name TEXT;
