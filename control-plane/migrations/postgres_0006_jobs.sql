-- Batch jobs: a durable queue (docs/jobs.md). Times are unix milliseconds. A job is
-- claimable when pending/retried and run_at has passed, or running with an expired
-- lease (its worker died); attempts fences completions of a reclaimed job.
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    partner_id BIGINT NOT NULL,
    entry_id TEXT,
    job_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    progress DOUBLE PRECISION NOT NULL,
    run_at BIGINT NOT NULL,
    lease_until BIGINT,
    worker TEXT,
    error TEXT,
    result TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_claim ON jobs (job_type, status, run_at);
CREATE INDEX jobs_partner ON jobs (partner_id, id);
CREATE INDEX jobs_entry ON jobs (entry_id);
-- Per-partner webhooks and their delivery log.
CREATE TABLE webhooks (
    id BIGSERIAL PRIMARY KEY,
    partner_id BIGINT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_partner ON webhooks (partner_id);
CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    webhook_id BIGINT NOT NULL,
    partner_id BIGINT NOT NULL,
    job_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id);
