-- Media analytics (issue 14): raw player beacons, the origin's access log per
-- playback session, per-view facts and hourly rollups made by the ETL.
-- Times are unix milliseconds. The partner is the entry's (set by the server).
CREATE TABLE analytics_events (
    id BIGSERIAL PRIMARY KEY,
    partner_id BIGINT NOT NULL,
    entry_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    client_ms BIGINT NOT NULL,
    server_ms BIGINT NOT NULL,
    position_s DOUBLE PRECISION,
    duration_s DOUBLE PRECISION,
    bitrate_kbps BIGINT,
    value_ms BIGINT,
    detail TEXT,
    viewer_id TEXT NOT NULL,
    player TEXT NOT NULL,
    format TEXT NOT NULL,
    live BIGINT NOT NULL,
    device TEXT NOT NULL,
    os TEXT NOT NULL,
    browser TEXT NOT NULL,
    country TEXT NOT NULL,
    UNIQUE (entry_id, session_id, seq)
);
CREATE INDEX analytics_events_time ON analytics_events (server_ms);
CREATE INDEX analytics_events_partner ON analytics_events (partner_id, entry_id, server_ms);

CREATE TABLE analytics_views (
    entry_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    partner_id BIGINT NOT NULL,
    viewer_id TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    hour_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    state_at BIGINT NOT NULL,
    view_start_at BIGINT NOT NULL,
    played BIGINT NOT NULL,
    ended BIGINT NOT NULL,
    watched_ms BIGINT NOT NULL,
    startup_ms BIGINT NOT NULL,
    rebuffer_ms BIGINT NOT NULL,
    rebuffer_count BIGINT NOT NULL,
    bitrate_sum BIGINT NOT NULL,
    bitrate_n BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    seeks BIGINT NOT NULL,
    max_position_s DOUBLE PRECISION NOT NULL,
    duration_s DOUBLE PRECISION NOT NULL,
    player TEXT NOT NULL,
    format TEXT NOT NULL,
    live BIGINT NOT NULL,
    device TEXT NOT NULL,
    os TEXT NOT NULL,
    browser TEXT NOT NULL,
    country TEXT NOT NULL,
    PRIMARY KEY (entry_id, session_id)
);
CREATE INDEX analytics_views_partner ON analytics_views (partner_id, hour_ms);
CREATE INDEX analytics_views_span ON analytics_views (partner_id, last_ms);

CREATE TABLE analytics_hourly (
    partner_id BIGINT NOT NULL,
    entry_id TEXT NOT NULL,
    hour_ms BIGINT NOT NULL,
    player TEXT NOT NULL,
    format TEXT NOT NULL,
    device TEXT NOT NULL,
    os TEXT NOT NULL,
    browser TEXT NOT NULL,
    country TEXT NOT NULL,
    views BIGINT NOT NULL,
    plays BIGINT NOT NULL,
    vod_plays BIGINT NOT NULL,
    watched_ms BIGINT NOT NULL,
    startup_ms_sum BIGINT NOT NULL,
    startup_n BIGINT NOT NULL,
    rebuffer_ms BIGINT NOT NULL,
    bitrate_sum BIGINT NOT NULL,
    bitrate_n BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    reach25 BIGINT NOT NULL,
    reach50 BIGINT NOT NULL,
    reach75 BIGINT NOT NULL,
    reach100 BIGINT NOT NULL,
    PRIMARY KEY (partner_id, entry_id, hour_ms, player, format, device, os, browser, country)
);
CREATE INDEX analytics_hourly_time ON analytics_hourly (partner_id, hour_ms);

CREATE TABLE analytics_access (
    stream TEXT NOT NULL,
    session TEXT NOT NULL,
    partner_id BIGINT NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    segments BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (stream, session)
);
CREATE INDEX analytics_access_time ON analytics_access (partner_id, last_ms);

CREATE TABLE analytics_state (
    k TEXT PRIMARY KEY,
    v BIGINT NOT NULL
);
