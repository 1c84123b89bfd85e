CREATE TABLE settings (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE partners (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_salt TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    secret_gen BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE entries (
    id TEXT PRIMARY KEY,
    partner_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    categories TEXT NOT NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    duration_s DOUBLE PRECISION,
    thumbnail_url TEXT,
    stream_key_hash TEXT,
    stream_key_sealed TEXT,
    recording BIGINT NOT NULL,
    dvr_window_s BIGINT NOT NULL,
    conversion_profile_id BIGINT,
    drm TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX entries_partner_created ON entries (partner_id, created_at);
CREATE INDEX entries_kind ON entries (kind);
CREATE UNIQUE INDEX entries_stream_key ON entries (stream_key_hash);
CREATE TABLE categories (
    id BIGINT PRIMARY KEY,
    partner_id BIGINT NOT NULL,
    parent_id BIGINT,
    name TEXT NOT NULL,
    full_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX categories_full_name ON categories (partner_id, full_name);
CREATE TABLE conversion_profiles (
    id BIGINT PRIMARY KEY,
    partner_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    flavors TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversion_profiles_partner ON conversion_profiles (partner_id);
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id TEXT NOT NULL,
    partner_id BIGINT NOT NULL,
    at BIGINT NOT NULL
);
