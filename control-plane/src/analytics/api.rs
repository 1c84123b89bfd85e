//! The analytics HTTP surface: the beacon (`POST /api/v1/analytics/events`,
//! no session: players are anonymous), partner-scoped reports under
//! `/api/v1/analytics/` (JSON or CSV), and the player plugin
//! `/sdk/vela-analytics.js`. Documented in the OpenAPI document by
//! [`AnalyticsDoc`].

use std::fmt::Write as _;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::beacon::{self, BeaconBody, BeaconError};
use super::reports::{self, Dimension, Filter, Grouping, Interval, Row_, Summary};
use super::store::{EventRow, WriteJob};
use super::{now_ms, ua, Analytics};
use crate::api::{ApiQuery, Auth};
use crate::auth::Claims;
use crate::error::{ApiError, ErrorBody};

/// Beacon bodies above this size are refused (413).
pub const BEACON_LIMIT: usize = 64 * 1024;
/// The longest report range: 400 days.
const MAX_RANGE_S: i64 = 400 * 86_400;

/// An admin session of the partner whose reports are asked for.
pub struct ReportAuth(pub Claims);

impl FromRequestParts<Analytics> for ReportAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, an: &Analytics) -> Result<Self, ApiError> {
        let Auth(c) = Auth::from_request_parts(parts, &an.inner.cp).await?;
        if !c.is_admin() {
            return Err(ApiError::Forbidden("reports need an admin session"));
        }
        Ok(ReportAuth(c))
    }
}

/// The beacon's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BeaconAccepted {
    /// Events stored (a resent event is stored once).
    pub accepted: usize,
}

impl From<BeaconError> for ApiError {
    fn from(e: BeaconError) -> Self {
        match e {
            BeaconError::Malformed(m) => ApiError::BadRequest(format!("malformed beacon: {m}")),
            BeaconError::Invalid(m) => ApiError::Validation(format!("invalid beacon: {m}")),
        }
    }
}

/// Whom a beacon counts against: the client's address, or its session when
/// the address is unknown.
fn client_key(peer: Option<std::net::IpAddr>, session: &str) -> String {
    match peer {
        Some(ip) => ip.to_string(),
        None => format!("s:{session}"),
    }
}

fn country(an: &Analytics, headers: &HeaderMap) -> String {
    an.inner
        .cfg
        .country_header
        .as_ref()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(|c| c.to_ascii_uppercase())
        .unwrap_or_else(|| "unknown".into())
}

/// Player events of one playback session. The body may be sent as
/// `text/plain` (`navigator.sendBeacon`); the partner is the entry's.
#[utoipa::path(post, path = "/api/v1/analytics/events", tag = "analytics",
    request_body(content = BeaconBody, content_type = "application/json"),
    responses((status = 202, body = BeaconAccepted), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn post_events(State(an): State<Analytics>, req: Request) -> Result<Response, ApiError> {
    let r = accept(an, req).await;
    let label = match &r {
        Ok(_) => "accepted",
        Err(ApiError::TooManyRequests) => "rate_limited",
        Err(ApiError::NotFound(_)) => "unknown_entry",
        Err(ApiError::Unavailable(m)) if m.contains("full") => "busy",
        Err(ApiError::Unavailable(_) | ApiError::Internal(_)) => "failed",
        Err(_) => "invalid",
    };
    super::metrics::BEACONS.with_label_values(&[label]).inc();
    r
}

async fn accept(an: Analytics, req: Request) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BEACON_LIMIT)
        .await
        .map_err(|_| ApiError::TooLarge)?;
    let batch = beacon::parse(&bytes)?;
    let key = client_key(peer, &batch.session_id);
    let allowed = an
        .inner
        .limiter
        .lock()
        .map(|mut l| l.allow(&key, Instant::now()))
        .unwrap_or(true);
    if !allowed {
        return Err(ApiError::TooManyRequests);
    }
    let partner = an
        .partner_of(&batch.entry_id)
        .await?
        .ok_or(ApiError::NotFound("entry"))?;
    let agent = ua::classify(
        parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    let country = country(&an, &parts.headers);
    let server_ms = now_ms();
    let n = batch.events.len();
    let rows: Vec<EventRow> = batch
        .events
        .into_iter()
        .map(|e| EventRow {
            partner_id: partner,
            entry_id: batch.entry_id.clone(),
            session_id: batch.session_id.clone(),
            seq: e.seq,
            kind: e.kind.as_str(),
            client_ms: e.client_ms,
            server_ms,
            position_s: e.position_s,
            duration_s: e.duration_s,
            bitrate_kbps: e.bitrate_kbps,
            value_ms: e.value_ms,
            detail: e.detail,
            viewer_id: batch.viewer_id.clone(),
            player: batch.player.clone(),
            format: batch.format.clone(),
            live: batch.live,
            device: agent.device,
            os: agent.os,
            browser: agent.browser,
            country: country.clone(),
        })
        .collect();
    let (done, wait) = tokio::sync::oneshot::channel();
    an.inner
        .writer
        .try_send(WriteJob { rows, done })
        .map_err(|_| ApiError::Unavailable("analytics queue is full; retry later"))?;
    match wait.await {
        Ok(Ok(())) => {
            Ok((StatusCode::ACCEPTED, Json(BeaconAccepted { accepted: n })).into_response())
        }
        _ => Err(ApiError::Unavailable(
            "analytics events could not be stored",
        )),
    }
}

/// Filters of every report.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Start, unix seconds (default: 24 hours ago). Rollups are hourly: the
    /// start is rounded down to its hour.
    pub from: Option<i64>,
    /// End, unix seconds, exclusive (default: now).
    pub to: Option<i64>,
    /// Only this entry.
    pub entry_id: Option<String>,
    /// With `value`: only rows where this dimension has this value.
    pub dimension: Option<Dimension>,
    pub value: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// Time series buckets: `hour` (default) or `day`.
    pub interval: Option<Interval>,
    /// Rows of a breakdown or top list (default 10, at most 1000).
    pub limit: Option<i64>,
    /// Concurrency buckets, seconds (default: range / 200, at least 60).
    pub step_s: Option<i64>,
}

fn filter(c: &Claims, q: &ReportQuery) -> Result<Filter, ApiError> {
    let now = now_ms() / 1000;
    let to = q.to.unwrap_or(now + 1);
    let from = q.from.unwrap_or(to - 86_400);
    if from >= to || to - from > MAX_RANGE_S || from < 0 {
        return Err(ApiError::Validation(
            "from must be before to, within 400 days".into(),
        ));
    }
    if let Some(e) = &q.entry_id {
        if !crate::auth::is_entry_id(e) {
            return Err(ApiError::Validation("entry_id is not an entry id".into()));
        }
    }
    let only = match (q.dimension, &q.value) {
        (Some(d), Some(v)) => {
            if v.is_empty() || v.chars().count() > 64 {
                return Err(ApiError::Validation(
                    "value must have 1 to 64 characters".into(),
                ));
            }
            Some((d, v.clone()))
        }
        _ => None,
    };
    Ok(Filter {
        partner_id: c.p,
        from_ms: from * 1000,
        to_ms: to * 1000,
        entry_id: q.entry_id.clone(),
        only,
    })
}

fn wants_csv(q: &ReportQuery) -> Result<bool, ApiError> {
    match q.format.as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ApiError::Validation("format must be json or csv".into())),
    }
}

fn csv_field(s: &str) -> String {
    // Quoted, and a leading formula character neutralised (spreadsheets).
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn csv(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

fn rows_csv(name: &str, rows: &[Row_]) -> Response {
    let mut s = String::from(
        "key,name,views,plays,minutes_viewed,avg_view_time_s,startup_ms_avg,rebuffer_ratio,avg_bitrate_kbps,errors\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{:.3},{:.3},{:.1},{:.5},{:.1},{}",
            csv_field(&r.key),
            csv_field(r.name.as_deref().unwrap_or("")),
            r.views,
            r.plays,
            r.minutes_viewed,
            r.avg_view_time_s,
            r.startup_ms_avg,
            r.rebuffer_ratio,
            r.avg_bitrate_kbps,
            r.errors
        );
    }
    csv(name, s)
}

/// Totals: plays, unique viewers, minutes viewed, average view time,
/// drop-off, QoE and concurrency.
#[utoipa::path(get, path = "/api/v1/analytics/summary", tag = "analytics", params(ReportQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Summary), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_summary(
    State(an): State<Analytics>,
    ReportAuth(c): ReportAuth,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let f = filter(&c, &q)?;
    let s = reports::summary(an.inner.cp.db(), &f, now_ms()).await?;
    if wants_csv(&q)? {
        let v = serde_json::to_value(&s).unwrap_or_default();
        let mut out = String::from("metric,value\n");
        flatten("", &v, &mut out);
        return Ok(csv("summary", out));
    }
    Ok(Json(s).into_response())
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        other => {
            let _ = writeln!(out, "{prefix},{other}");
        }
    }
}

/// Grouped report rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowList {
    pub rows: Vec<Row_>,
}

/// Plays, minutes and QoE per hour or day.
#[utoipa::path(get, path = "/api/v1/analytics/timeseries", tag = "analytics", params(ReportQuery),
    security(("bearer" = [])),
    responses((status = 200, body = RowList), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn get_timeseries(
    State(an): State<Analytics>,
    ReportAuth(c): ReportAuth,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let f = filter(&c, &q)?;
    let by = Grouping::Time(q.interval.unwrap_or(Interval::Hour));
    let rows = reports::grouped(an.inner.cp.db(), &f, by, 10_000).await?;
    if wants_csv(&q)? {
        return Ok(rows_csv("timeseries", &rows));
    }
    Ok(Json(RowList { rows }).into_response())
}

/// The report split by a dimension (`dimension`: player, format, device, os,
/// browser, country, entry), most plays first.
#[utoipa::path(get, path = "/api/v1/analytics/breakdown", tag = "analytics", params(ReportQuery),
    security(("bearer" = [])),
    responses((status = 200, body = RowList), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn get_breakdown(
    State(an): State<Analytics>,
    ReportAuth(c): ReportAuth,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let d = q
        .dimension
        .ok_or_else(|| ApiError::Validation("dimension is required".into()))?;
    let f = filter(&c, &q)?;
    let rows = reports::grouped(an.inner.cp.db(), &f, Grouping::By(d), limit(&q)).await?;
    if wants_csv(&q)? {
        return Ok(rows_csv("breakdown", &rows));
    }
    Ok(Json(RowList { rows }).into_response())
}

fn limit(q: &ReportQuery) -> i64 {
    q.limit.unwrap_or(10).clamp(1, 1000)
}

/// The most played entries, with their names.
#[utoipa::path(get, path = "/api/v1/analytics/top-entries", tag = "analytics", params(ReportQuery),
    security(("bearer" = [])),
    responses((status = 200, body = RowList), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn get_top_entries(
    State(an): State<Analytics>,
    ReportAuth(c): ReportAuth,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let f = filter(&c, &q)?;
    let mut rows = reports::grouped(
        an.inner.cp.db(),
        &f,
        Grouping::By(Dimension::Entry),
        limit(&q),
    )
    .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
    let entries = an.inner.cp.db().entries_by_ids(c.p, &ids).await?;
    for r in &mut rows {
        r.name = entries
            .iter()
            .find(|e| e.id == r.key)
            .map(|e| e.name.clone());
    }
    if wants_csv(&q)? {
        return Ok(rows_csv("top-entries", &rows));
    }
    Ok(Json(RowList { rows }).into_response())
}

/// Concurrent viewers over time.
#[derive(Debug, Serialize, ToSchema)]
pub struct Concurrency {
    pub step_s: i64,
    /// (bucket start in unix seconds, views open in it).
    pub points: Vec<(i64, i64)>,
    pub peak: i64,
}

/// Concurrent viewers over time (views playing in each bucket).
#[utoipa::path(get, path = "/api/v1/analytics/concurrency", tag = "analytics", params(ReportQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Concurrency), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn get_concurrency(
    State(an): State<Analytics>,
    ReportAuth(c): ReportAuth,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let f = filter(&c, &q)?;
    let range_s = (f.to_ms - f.from_ms) / 1000;
    let step_s = q
        .step_s
        .unwrap_or(range_s / 200)
        .max(60)
        .max(range_s / 2000);
    let pts = reports::concurrency(an.inner.cp.db(), &f, step_s * 1000).await?;
    let points: Vec<(i64, i64)> = pts.into_iter().map(|(t, n)| (t / 1000, n)).collect();
    let peak = points.iter().map(|p| p.1).max().unwrap_or(0);
    if wants_csv(&q)? {
        let mut s = String::from("time,viewers\n");
        for (t, n) in &points {
            let _ = writeln!(s, "{t},{n}");
        }
        return Ok(csv("concurrency", s));
    }
    Ok(Json(Concurrency {
        step_s,
        points,
        peak,
    })
    .into_response())
}

/// What an ETL run did.
#[derive(Debug, Serialize, ToSchema)]
pub struct EtlRun {
    pub events: usize,
    pub views: usize,
    pub hours: usize,
}

/// Runs the ETL now (it also runs periodically); answers when the raw
/// events are folded into the reports.
#[utoipa::path(post, path = "/api/v1/analytics/etl", tag = "analytics", security(("bearer" = [])),
    responses((status = 200, body = EtlRun), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn post_etl(
    State(an): State<Analytics>,
    ReportAuth(_c): ReportAuth,
) -> Result<Response, ApiError> {
    let r = an.run_etl().await?;
    Ok(Json(EtlRun {
        events: r.events,
        views: r.views,
        hours: r.hours,
    })
    .into_response())
}

/// The player plugin, embedded in the binary.
pub const SDK_JS: &str = include_str!("../../web/vela-analytics.js");

async fn sdk_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        SDK_JS,
    )
        .into_response()
}

/// The analytics part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        post_events,
        get_summary,
        get_timeseries,
        get_breakdown,
        get_top_entries,
        get_concurrency,
        post_etl
    ),
    components(schemas(
        BeaconBody,
        beacon::BeaconEvent,
        beacon::EventKind,
        BeaconAccepted,
        Summary,
        reports::DropOff,
        reports::Qoe,
        Row_,
        RowList,
        Concurrency,
        EtlRun,
        Dimension,
        Interval
    ))
)]
pub struct AnalyticsDoc;

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// The routes (merged beside the control plane's).
pub fn router(an: Analytics) -> Router {
    let api = Router::new()
        .route("/events", post(post_events))
        .route("/etl", post(post_etl))
        .route("/summary", get(get_summary))
        .route("/timeseries", get(get_timeseries))
        .route("/breakdown", get(get_breakdown))
        .route("/top-entries", get(get_top_entries))
        .route("/concurrency", get(get_concurrency))
        .fallback(not_found)
        .with_state(an);
    Router::new()
        .nest("/api/v1/analytics", api)
        .route("/sdk/vela-analytics.js", get(sdk_js))
}
