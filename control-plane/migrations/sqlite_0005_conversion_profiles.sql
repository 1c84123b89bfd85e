-- Flavor params (rendition recipes) as objects of their own, and conversion
-- profiles as ordered lists of them (Kaltura's model). partner_id 0 holds the
-- system objects every partner reads (and none may change): the default
-- ladder "source + 720p + 480p + 360p". Profiles written before this version
-- keep their inline recipes in `flavors`; new ones name flavor params in
-- `flavor_params_ids` (a JSON array, in ladder order) and keep `flavors` = '[]'.
CREATE TABLE flavor_params (
    id BIGINT PRIMARY KEY,
    partner_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX flavor_params_partner ON flavor_params (partner_id);
ALTER TABLE conversion_profiles ADD COLUMN flavor_params_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE conversion_profiles ADD COLUMN is_default BIGINT NOT NULL DEFAULT 0;
INSERT INTO flavor_params (id, partner_id, name, params, created_at, updated_at) VALUES
    (1, 0, 'source', '{"name":"source","source":true}', 0, 0),
    (2, 0, '720p', '{"name":"720p","height":720,"video_bitrate_kbps":2500,"max_rate_kbps":3000,"buffer_kbits":5000,"profile":"main","audio_bitrate_kbps":128}', 0, 0),
    (3, 0, '480p', '{"name":"480p","height":480,"video_bitrate_kbps":1200,"max_rate_kbps":1500,"buffer_kbits":2400,"profile":"main","audio_bitrate_kbps":96}', 0, 0),
    (4, 0, '360p', '{"name":"360p","height":360,"video_bitrate_kbps":700,"max_rate_kbps":900,"buffer_kbits":1400,"profile":"baseline","audio_bitrate_kbps":64}', 0, 0);
INSERT INTO conversion_profiles (id, partner_id, name, description, flavors, created_at, updated_at, flavor_params_ids, is_default) VALUES
    (1, 0, 'default', 'Source passthrough plus 720p, 480p and 360p H.264/AAC renditions', '[]', 0, 0, '[1,2,3,4]', 1);
