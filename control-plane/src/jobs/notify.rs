//! Notifications: per-partner webhooks, each event delivered by a `notify` job.
//!
//! An event (`entry.created`, `entry.ready`, `entry.deleted`, `live.started`,
//! `live.ended`, `recording.ready`) becomes one job per subscribed webhook, whose
//! payload holds the exact body, so every attempt sends the same bytes (with the same
//! event `id`, for receivers to drop duplicates). A delivery is a POST with
//! `X-Vela-Timestamp` (unix seconds) and `X-Vela-Signature: v1=HEX`, the HMAC-SHA256 of
//! `TIMESTAMP.BODY` under the webhook's secret; anything but a 2xx answer within 10 s is
//! retried with the queue's backoff. Each attempt is logged (`/webhooks/ID/deliveries`).
//! The outbound guard applies to webhook URLs as to imports.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{OpenApi, ToSchema};

use super::fetch::Fetcher;
use super::{now_ms, JobContext, JobError, JobHandler};
use crate::api::{ApiJson, ApiPath, Auth};
use crate::db::Db;
use crate::error::{ApiError, DbError, ErrorBody};
use crate::ControlPlane;

/// The notify job type.
pub const NOTIFY: &str = "notify";

/// Every event a webhook can subscribe to.
pub const EVENTS: [&str; 6] = [
    "entry.created",
    "entry.ready",
    "entry.deleted",
    "live.started",
    "live.ended",
    "recording.ready",
];

/// A webhook as shown (the secret only when created).
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    /// Subscribed events.
    pub events: Vec<String>,
    /// Only in the answer to its creation: the signing key (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// A new webhook.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookCreate {
    #[schema(max_length = 2048)]
    pub url: String,
    /// Default: every event.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub job_id: i64,
    pub event: String,
    pub attempt: i64,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// Unix milliseconds.
    pub at_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub objects: Vec<Webhook>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub objects: Vec<Delivery>,
}

struct HookRow {
    id: i64,
    url: String,
    secret: String,
    events: Vec<String>,
    created_at: i64,
}

fn hook_from_row(r: &sqlx::any::AnyRow) -> Result<HookRow, DbError> {
    let events: String = r.try_get("events")?;
    Ok(HookRow {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        secret: r.try_get("secret")?,
        events: serde_json::from_str(&events)
            .map_err(|e| DbError::Corrupt(format!("webhook events: {e}")))?,
        created_at: r.try_get("created_at")?,
    })
}

impl HookRow {
    fn view(self, with_secret: bool) -> Webhook {
        Webhook {
            id: self.id,
            url: self.url,
            events: self.events,
            secret: with_secret.then_some(self.secret),
            created_at_ms: self.created_at,
        }
    }
}

const HOOK_COLS: &str = "id, url, secret, events, created_at";

impl Db {
    async fn insert_webhook(
        &self,
        partner: i64,
        url: &str,
        secret: &str,
        events: &[String],
        now: i64,
    ) -> Result<HookRow, DbError> {
        let r = sqlx::query(&format!(
            "INSERT INTO webhooks (partner_id, url, secret, events, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {HOOK_COLS}"
        ))
        .bind(partner)
        .bind(url)
        .bind(secret)
        .bind(serde_json::to_string(events).unwrap_or_else(|_| "[]".into()))
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        hook_from_row(&r)
    }

    async fn webhooks(&self, partner: i64) -> Result<Vec<HookRow>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {HOOK_COLS} FROM webhooks WHERE partner_id = $1 ORDER BY id"
        ))
        .bind(partner)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(hook_from_row).collect()
    }

    async fn webhook(&self, partner: i64, id: i64) -> Result<Option<HookRow>, DbError> {
        let r = sqlx::query(&format!(
            "SELECT {HOOK_COLS} FROM webhooks WHERE partner_id = $1 AND id = $2"
        ))
        .bind(partner)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        r.as_ref().map(hook_from_row).transpose()
    }

    async fn delete_webhook(&self, partner: i64, id: i64) -> Result<bool, DbError> {
        let r = sqlx::query("DELETE FROM webhooks WHERE partner_id = $1 AND id = $2")
            .bind(partner)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    #[allow(clippy::too_many_arguments)]
    async fn log_delivery(
        &self,
        hook: i64,
        partner: i64,
        job: i64,
        event: &str,
        attempt: i64,
        status: Option<i64>,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO webhook_deliveries (webhook_id, partner_id, job_id, event, attempt, \
             status_code, error, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(hook)
        .bind(partner)
        .bind(job)
        .bind(event)
        .bind(attempt)
        .bind(status)
        .bind(error)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn deliveries(&self, partner: i64, hook: i64) -> Result<Vec<Delivery>, DbError> {
        let rows = sqlx::query(
            "SELECT id, job_id, event, attempt, status_code, error, at FROM webhook_deliveries \
             WHERE partner_id = $1 AND webhook_id = $2 ORDER BY id DESC LIMIT 200",
        )
        .bind(partner)
        .bind(hook)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    id: r.try_get("id")?,
                    job_id: r.try_get("job_id")?,
                    event: r.try_get("event")?,
                    attempt: r.try_get("attempt")?,
                    status_code: r.try_get("status_code")?,
                    error: r.try_get("error")?,
                    at_ms: r.try_get("at")?,
                })
            })
            .collect()
    }
}

/// `v1=HEX(HMAC-SHA256(secret, "TIMESTAMP.BODY"))`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    let mac = m.finalize().into_bytes();
    let mut hex = String::with_capacity(67);
    hex.push_str("v1=");
    for b in mac {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

impl ControlPlane {
    /// Queues `event` about `entry` for each of `partner`'s webhooks that want it.
    /// In the background: the caller's request neither waits nor fails for it.
    pub fn emit(&self, partner: i64, event: &'static str, entry: &str) {
        let cp = self.clone();
        let entry = entry.to_string();
        tokio::spawn(async move {
            let hooks = match cp.inner.db.webhooks(partner).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(event, entry, error = %e, "cannot read webhooks");
                    return;
                }
            };
            for h in hooks
                .into_iter()
                .filter(|h| h.events.iter().any(|e| e == event))
            {
                let body = serde_json::json!({
                    "id": crate::auth::random_hex(12),
                    "event": event,
                    "partner_id": partner,
                    "entry_id": entry,
                    "at_ms": now_ms(),
                })
                .to_string();
                let payload =
                    serde_json::json!({ "webhook_id": h.id, "event": event, "body": body });
                if let Err(e) = cp
                    .enqueue_job(partner, Some(&entry), NOTIFY, &payload)
                    .await
                {
                    tracing::warn!(event, entry, error = %e, "cannot queue a notification");
                }
            }
        });
    }
}

pub(crate) struct NotifyHandler;

impl JobHandler for NotifyHandler {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<serde_json::Value, JobError>> {
        Box::pin(async move {
            let p = &ctx.job.payload;
            let (Some(hook), Some(event), Some(body)) = (
                p.get("webhook_id").and_then(|v| v.as_i64()),
                p.get("event").and_then(|v| v.as_str()),
                p.get("body").and_then(|v| v.as_str()),
            ) else {
                return Err(JobError::Permanent("malformed notification".into()));
            };
            let db = &ctx.cp.inner.db;
            let partner = ctx.job.partner_id;
            let h = db
                .webhook(partner, hook)
                .await
                .map_err(|e| JobError::Transient(e.to_string()))?
                .ok_or_else(|| JobError::Permanent("the webhook was deleted".into()))?;
            let fetcher = Fetcher::new(
                ctx.cp.outbound().allow_private,
                Duration::from_secs(10),
                Duration::from_secs(10),
                0,
            )
            .map_err(JobError::Permanent)?;
            let ts = now_ms() / 1000;
            let req = http::Request::post(h.url.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::USER_AGENT, "vela-webhooks/1")
                .header("x-vela-event", event)
                .header("x-vela-timestamp", ts.to_string())
                .header(
                    "x-vela-signature",
                    signature(&h.secret, ts, body.as_bytes()),
                )
                .body(http_body_util::Full::new(Bytes::from(body.to_string())))
                .map_err(|e| JobError::Permanent(format!("webhook URL: {e}")))?;
            let r = fetcher.send(req).await;
            let (status, error) = match &r {
                Ok(s) => (Some(i64::from(*s)), None),
                Err(e) => (None, Some(e.to_string())),
            };
            if let Err(e) = db
                .log_delivery(
                    hook,
                    partner,
                    ctx.job.id,
                    event,
                    ctx.job.attempts,
                    status,
                    error.as_deref(),
                    now_ms(),
                )
                .await
            {
                tracing::warn!(webhook = hook, error = %e, "cannot log a delivery");
            }
            match r {
                Ok(s) if (200..300).contains(&s) => Ok(serde_json::json!({ "status": s })),
                Ok(s) => Err(JobError::Transient(format!("the receiver answered {s}"))),
                Err(e) if e.transient() => Err(JobError::Transient(e.to_string())),
                Err(e) => Err(JobError::Permanent(e.to_string())),
            }
        })
    }
}

fn hook_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(ApiError::NotFound("webhook"))
}

fn admin(c: &crate::auth::Claims) -> Result<(), ApiError> {
    if c.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("webhooks need an admin session"))
    }
}

/// Add a webhook: `events` (default: all) are POSTed to `url`, signed with the
/// returned `secret` (shown only here).
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = WebhookCreate,
    security(("bearer" = [])),
    responses((status = 201, body = Webhook), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_webhook(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<WebhookCreate>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    admin(&c)?;
    if req.url.len() > 2048 {
        return Err(ApiError::Validation(
            "url is longer than 2048 characters".into(),
        ));
    }
    let url = url::Url::parse(&req.url)
        .map_err(|e| ApiError::Validation(format!("url is invalid: {e}")))?;
    super::fetch::check_url(&url, cp.outbound().allow_private)
        .map_err(|e| ApiError::Validation(e.to_string()))?;
    let events = match req.events {
        None => EVENTS.iter().map(|e| e.to_string()).collect(),
        Some(v) => {
            if v.is_empty() || v.iter().any(|e| !EVENTS.contains(&e.as_str())) {
                return Err(ApiError::Validation(format!(
                    "events must be some of {}",
                    EVENTS.join(", ")
                )));
            }
            v
        }
    };
    if cp.inner.db.webhooks(c.p).await?.len() >= 20 {
        return Err(ApiError::Validation(
            "at most 20 webhooks per partner".into(),
        ));
    }
    let secret = crate::auth::random_hex(32);
    let h = cp
        .inner
        .db
        .insert_webhook(c.p, url.as_str(), &secret, &events, now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(h.view(true))))
}

/// The partner's webhooks.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_webhooks(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
) -> Result<Json<WebhookList>, ApiError> {
    admin(&c)?;
    let hooks = cp.inner.db.webhooks(c.p).await?;
    Ok(Json(WebhookList {
        objects: hooks.into_iter().map(|h| h.view(false)).collect(),
    }))
}

/// Remove a webhook (its queued deliveries fail).
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "webhook id")), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<StatusCode, ApiError> {
    admin(&c)?;
    if cp.inner.db.delete_webhook(c.p, hook_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook"))
    }
}

/// A webhook's delivery log, newest first (the last 200 attempts).
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path, description = "webhook id")), security(("bearer" = [])),
    responses((status = 200, body = DeliveryList), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<DeliveryList>, ApiError> {
    admin(&c)?;
    let id = hook_id(&id)?;
    if cp.inner.db.webhook(c.p, id).await?.is_none() {
        return Err(ApiError::NotFound("webhook"));
    }
    Ok(Json(DeliveryList {
        objects: cp.inner.db.deliveries(c.p, id).await?,
    }))
}

#[derive(OpenApi)]
#[openapi(
    paths(create_webhook, list_webhooks, delete_webhook, list_deliveries),
    components(schemas(Webhook, WebhookCreate, WebhookList, Delivery, DeliveryList))
)]
pub struct WebhooksDoc;

pub fn routes() -> Router<ControlPlane> {
    Router::new()
        .route("/webhooks", get(list_webhooks).post(create_webhook))
        .route("/webhooks/{id}", axum::routing::delete(delete_webhook))
        .route("/webhooks/{id}/deliveries", get(list_deliveries))
}
