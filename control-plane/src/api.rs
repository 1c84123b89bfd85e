//! HTTP handlers under `/api/v1`, their types, extractors and the OpenAPI document.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::auth::{
    self, hash_secret, hash_stream_key, new_secret, new_stream_key, now_s, random_hex, Claims, Role,
};
use crate::content::{MediaInfo, TrackInfo, TrackKind};
use crate::db::{Category, Drm, EntryFilter, EntryOrder, EntryRow};
use crate::error::{ApiError, ErrorBody};
use crate::search::SearchFilter;
use crate::ControlPlane;

/// Request bodies above this size are refused with 413.
pub const BODY_LIMIT: usize = 256 * 1024;
pub const MAX_PAGE_SIZE: u32 = 500;
pub const MAX_PAGE: u32 = 10_000;

// ---------------------------------------------------------------------------------------
// Extractors mapping every rejection to the JSON error shape.

/// JSON body; malformed JSON is 400, wrong types / unknown fields are 422.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if mime != "application/json" && !mime.ends_with("+json") {
                return Err(ApiError::UnsupportedMediaType(
                    "expected application/json".into(),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest("cannot read the request body".into())
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let v = T::deserialize(&mut de).and_then(|v| de.end().map(|_| v));
        match v {
            Ok(v) => Ok(ApiJson(v)),
            Err(e) if e.is_syntax() || e.is_eof() => {
                Err(ApiError::BadRequest(format!("malformed JSON: {e}")))
            }
            Err(e) => Err(ApiError::Validation(format!("invalid body: {e}"))),
        }
    }
}

/// Query string; bad values are 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
    }
}

/// One path segment as a string (ids are checked by the handlers).
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|_| ApiError::BadRequest("invalid path parameter".into()))
    }
}

/// The verified session of the request (`Authorization: Bearer TOKEN`).
pub struct Auth(pub Claims);

impl FromRequestParts<ControlPlane> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Result<Self, ApiError> {
        let h = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let h = h
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed header"))?;
        let token = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .ok_or(ApiError::Unauthorized("expected a bearer token"))?
            .trim();
        let claims = cp
            .inner
            .tokens
            .verify(token, now_s())
            .map_err(|e| match e {
                auth::TokenError::Expired => ApiError::Unauthorized("token expired"),
                _ => ApiError::Unauthorized("invalid token"),
            })?;
        let known = cp
            .inner
            .partners
            .read()
            .ok()
            .and_then(|m| m.get(&claims.p).copied());
        let (gen, active) = match known {
            Some(k) => k,
            None => {
                // A partner created on another node moments ago.
                cp.refresh_partners().await.map_err(ApiError::from)?;
                cp.inner
                    .partners
                    .read()
                    .ok()
                    .and_then(|m| m.get(&claims.p).copied())
                    .ok_or(ApiError::Unauthorized("invalid token"))?
            }
        };
        if gen != claims.g || !active {
            return Err(ApiError::Unauthorized("token revoked"));
        }
        Ok(Auth(claims))
    }
}

// ---------------------------------------------------------------------------------------
// Validation helpers.

pub(crate) fn check_str(field: &str, s: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(ApiError::Validation(format!(
            "{field} must have {min} to {max} characters"
        )));
    }
    if s.contains('\0') {
        return Err(ApiError::Validation(format!(
            "{field} contains a NUL character"
        )));
    }
    Ok(())
}

fn check_list(field: &str, v: &[String], max_items: usize, max_len: usize) -> Result<(), ApiError> {
    if v.len() > max_items {
        return Err(ApiError::Validation(format!(
            "{field} has more than {max_items} items"
        )));
    }
    for s in v {
        check_str(field, s, 1, max_len)?;
    }
    Ok(())
}

fn check_metadata(m: &serde_json::Map<String, serde_json::Value>) -> Result<(), ApiError> {
    let s = serde_json::to_string(m).unwrap_or_default();
    if s.len() > 16 * 1024 || m.len() > 100 {
        return Err(ApiError::Validation(
            "metadata is too large (16 KiB, 100 keys)".into(),
        ));
    }
    if s.contains("\\u0000") {
        return Err(ApiError::Validation(
            "metadata contains a NUL character".into(),
        ));
    }
    Ok(())
}

fn check_drm(d: &Drm) -> Result<(), ApiError> {
    let ok = matches!(d.hls.as_str(), "none" | "aes-128" | "sample-aes")
        && matches!(d.dash.as_str(), "none" | "cenc" | "cbcs")
        && matches!(d.mss.as_str(), "none" | "cenc");
    if ok {
        Ok(())
    } else {
        Err(ApiError::Validation(
            "drm: hls none|aes-128|sample-aes, dash none|cenc|cbcs, mss none|cenc".into(),
        ))
    }
}

pub(crate) fn page_bounds(
    page: Option<u32>,
    page_size: Option<u32>,
) -> Result<(u32, u32, i64, i64), ApiError> {
    let page = page.unwrap_or(1);
    let size = page_size.unwrap_or(50);
    if page == 0 || page > MAX_PAGE {
        return Err(ApiError::Validation(format!(
            "page must be 1 to {MAX_PAGE}"
        )));
    }
    if size == 0 || size > MAX_PAGE_SIZE {
        return Err(ApiError::Validation(format!(
            "page_size must be 1 to {MAX_PAGE_SIZE}"
        )));
    }
    Ok((page, size, size as i64, (page as i64 - 1) * size as i64))
}

fn entry_id(s: &str) -> Result<&str, ApiError> {
    if auth::is_entry_id(s) {
        Ok(s)
    } else {
        Err(ApiError::NotFound("entry"))
    }
}

pub(crate) fn int_id(s: &str, what: &'static str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or(ApiError::NotFound(what))
}

pub(crate) fn require_admin(c: &Claims) -> Result<(), ApiError> {
    if c.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this needs an admin session"))
    }
}

// ---------------------------------------------------------------------------------------
// Types.

/// `live` or `media`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    Live,
    Media,
}

impl EntryType {
    fn as_str(self) -> &'static str {
        match self {
            EntryType::Live => "live",
            EntryType::Media => "media",
        }
    }
}

/// Where an encoder publishes a live entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishUrls {
    pub rtmp: String,
    pub whip: String,
}

/// Where players play a live entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlaybackUrls {
    pub hls: String,
    pub dash: String,
    pub mss: String,
}

/// An entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Entry {
    pub id: String,
    pub partner_id: i64,
    #[serde(rename = "type")]
    pub kind: EntryType,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Category full names (`a>b>c`).
    pub categories: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// media: `pending` (no content), `processing` (an upload is running), `ready`,
    /// `error` (see `status_reason`); live: `offline`, `live`.
    pub status: String,
    /// Why the entry is in its status (media entries in `error`, e.g. `upload interrupted`
    /// or the reason the content was rejected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Media entries with content: what it holds (absent when the server has no content
    /// inspector).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaInfo>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    pub recording: bool,
    pub dvr_window_s: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion_profile_id: Option<i64>,
    pub drm: Drm,
    /// Live entries: the secret stream key (shown to admin and edit sessions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishUrls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playback: Option<PlaybackUrls>,
    /// Recorded media entries: the live entry they were recorded from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_entry_id: Option<String>,
    /// Live entries that record: the media entry of their latest recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_entry_id: Option<String>,
    /// When the entry and its content are deleted (retention), unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Media entries with content: bytes stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<i64>,
}

impl Entry {
    pub(crate) fn from_row(cp: &ControlPlane, e: &EntryRow, with_key: bool) -> Entry {
        let live = e.kind == "live";
        let http = cp.inner.cfg.public_http_base.trim_end_matches('/');
        let rtmp = cp.inner.cfg.public_rtmp_base.trim_end_matches('/');
        let key = if live {
            e.stream_key_sealed
                .as_deref()
                .and_then(|s| cp.inner.sealer.unseal(s))
        } else {
            None
        };
        Entry {
            id: e.id.clone(),
            partner_id: e.partner_id,
            kind: if live {
                EntryType::Live
            } else {
                EntryType::Media
            },
            name: e.name.clone(),
            description: e.description.clone(),
            tags: e.tags.clone(),
            categories: e.categories.clone(),
            metadata: e.metadata.clone(),
            status: e.status.clone(),
            status_reason: e.status_reason.clone(),
            media: e.media.clone(),
            created_at: e.created_at,
            updated_at: e.updated_at,
            duration_s: e.duration_s,
            thumbnail_url: e.thumbnail_url.clone(),
            recording: e.recording,
            dvr_window_s: e.dvr_window_s,
            conversion_profile_id: e.conversion_profile_id,
            drm: e.drm.clone(),
            publish: match (&key, with_key) {
                (Some(k), true) => Some(PublishUrls {
                    rtmp: format!("{rtmp}/{k}"),
                    whip: format!("{http}/whip/{k}"),
                }),
                _ => None,
            },
            stream_key: if with_key { key } else { None },
            // Live entries play under /live; media entries under /vod once they have content.
            playback: (live || e.content_name.is_some()).then(|| {
                let base = if live { "live" } else { "vod" };
                PlaybackUrls {
                    hls: format!("{http}/{base}/{}/master.m3u8", e.id),
                    dash: format!("{http}/{base}/{}/manifest.mpd", e.id),
                    mss: format!("{http}/{base}/{}/Manifest", e.id),
                }
            }),
            source_entry_id: e.source_entry_id.clone(),
            recorded_entry_id: e.recorded_entry_id.clone(),
            expires_at: e.expires_at,
            stored_bytes: e.stored_bytes,
        }
    }
}

/// `POST /entries` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryCreate {
    #[serde(rename = "type")]
    pub kind: EntryType,
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub description: String,
    #[serde(default)]
    #[schema(max_items = 50)]
    pub tags: Vec<String>,
    #[serde(default)]
    #[schema(max_items = 50)]
    pub categories: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(minimum = 0.0, maximum = 10000000.0)]
    pub duration_s: Option<f64>,
    #[schema(max_length = 2048)]
    pub thumbnail_url: Option<String>,
    pub recording: Option<bool>,
    #[schema(maximum = 604800)]
    pub dvr_window_s: Option<u32>,
    #[schema(minimum = 1)]
    pub conversion_profile_id: Option<i64>,
    pub drm: Option<Drm>,
}

/// `PATCH /entries/ID` body: the fields to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryPatch {
    #[schema(min_length = 1, max_length = 256)]
    pub name: Option<String>,
    #[schema(max_length = 4096)]
    pub description: Option<String>,
    #[schema(max_items = 50)]
    pub tags: Option<Vec<String>>,
    #[schema(max_items = 50)]
    pub categories: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(minimum = 0.0, maximum = 10000000.0)]
    pub duration_s: Option<f64>,
    #[schema(max_length = 2048)]
    pub thumbnail_url: Option<String>,
    pub recording: Option<bool>,
    #[schema(maximum = 604800)]
    pub dvr_window_s: Option<u32>,
    #[schema(minimum = 1)]
    pub conversion_profile_id: Option<i64>,
    pub drm: Option<Drm>,
    /// media entries only: `pending` or `ready`.
    #[schema(pattern = "^(pending|ready)$")]
    pub status: Option<String>,
    /// Retention: unix seconds when the entry and its content are deleted; 0 clears it.
    #[schema(minimum = 0)]
    pub expires_at: Option<i64>,
}

/// Listing filters, order and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntryListQuery {
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<EntryType>,
    pub status: Option<String>,
    pub category: Option<String>,
    pub tag: Option<String>,
    /// Unix seconds, inclusive.
    pub created_after: Option<i64>,
    /// Unix seconds, exclusive.
    pub created_before: Option<i64>,
    /// `created_at`, `-created_at` (default), `updated_at`, `-updated_at`, `name`, `-name`.
    pub sort: Option<String>,
    #[param(minimum = 1, maximum = 10000)]
    pub page: Option<u32>,
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
}

/// A page of entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryList {
    pub objects: Vec<Entry>,
    pub total_count: i64,
    pub page: u32,
    pub page_size: u32,
}

/// Search parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words; every word must match name, description, tags, categories or metadata values.
    pub q: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<EntryType>,
    pub status: Option<String>,
    pub category: Option<String>,
    pub tag: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    #[param(minimum = 1, maximum = 10000)]
    pub page: Option<u32>,
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
}

/// One search hit.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    /// BM25 score.
    pub score: f32,
    pub entry: Entry,
}

/// Search results, best first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub objects: Vec<SearchHit>,
    /// Matching entries, counted exactly up to 10000 (10000 means "at least 10000").
    pub total_count: i64,
    pub page: u32,
    pub page_size: u32,
}

/// `POST /sessions` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionCreate {
    #[schema(minimum = 1)]
    pub partner_id: i64,
    #[schema(max_length = 256)]
    pub secret: String,
    /// Defaults to `admin`.
    pub role: Option<Role>,
    #[schema(max_length = 128)]
    pub user_id: Option<String>,
    /// Lifetime in seconds (1 to 2592000; default 86400).
    #[schema(minimum = 1, maximum = 2592000)]
    pub expiry_s: Option<i64>,
    /// For `user` sessions: `view:ID`, `edit:ID`, `publish:ID` (`*` for every entry).
    #[schema(max_items = 100)]
    pub privileges: Option<Vec<String>>,
}

/// A signed session token.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionToken {
    pub token: String,
    pub partner_id: i64,
    pub role: Role,
    /// Unix seconds.
    pub expires_at: i64,
}

/// `POST /partners` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerCreate {
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
}

/// A partner (tenant).
#[derive(Debug, Serialize, ToSchema)]
pub struct Partner {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Only when created or regenerated: the partner's secret (stored hashed; shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A page of partners.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerList {
    pub objects: Vec<Partner>,
    pub total_count: i64,
}

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(minimum = 1, maximum = 10000)]
    pub page: Option<u32>,
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
}

/// Category listing parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CategoryListQuery {
    /// Only the children of this category.
    pub parent_id: Option<i64>,
    #[param(minimum = 1, maximum = 10000)]
    pub page: Option<u32>,
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
}

/// `POST /categories` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryCreate {
    /// No `>` (it separates the levels of full names).
    #[schema(min_length = 1, max_length = 128, pattern = "^[^>]+$")]
    pub name: String,
    pub parent_id: Option<i64>,
}

/// `PATCH /categories/ID` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatch {
    #[schema(min_length = 1, max_length = 128, pattern = "^[^>]+$")]
    pub name: String,
}

/// A page of categories.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryList {
    pub objects: Vec<Category>,
    pub total_count: i64,
}

// ---------------------------------------------------------------------------------------
// Sessions and partners.

fn partner_view(p: crate::db::PartnerRow, secret: Option<String>) -> Partner {
    Partner {
        id: p.id,
        name: p.name,
        status: p.status,
        created_at: p.created_at,
        updated_at: p.updated_at,
        secret,
    }
}

/// Start a session: exchange a partner secret for a signed, expiring token.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", request_body = SessionCreate,
    responses((status = 200, body = SessionToken), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_session(
    State(cp): State<ControlPlane>,
    ApiJson(req): ApiJson<SessionCreate>,
) -> Result<Json<SessionToken>, ApiError> {
    check_str("secret", &req.secret, 0, 256)?;
    let user = req.user_id.unwrap_or_default();
    check_str("user_id", &user, 0, 128)?;
    let expiry = req.expiry_s.unwrap_or(86_400);
    if !(1..=2_592_000).contains(&expiry) {
        return Err(ApiError::Validation("expiry_s must be 1 to 2592000".into()));
    }
    let privileges = req.privileges.unwrap_or_default();
    check_list("privileges", &privileges, 100, 128)?;
    let role = req.role.unwrap_or(Role::Admin);
    let bad = ApiError::Unauthorized("unknown partner or wrong secret");
    if req.partner_id <= 0 {
        return Err(bad);
    }
    let Some(p) = cp.inner.db.get_partner(req.partner_id).await? else {
        return Err(bad);
    };
    if p.status != "active"
        || !auth::ct_eq(&hash_secret(&p.secret_salt, &req.secret), &p.secret_hash)
    {
        return Err(bad);
    }
    let expires_at = now_s() + expiry;
    let claims = Claims {
        v: 1,
        p: p.id,
        g: p.secret_gen,
        u: user,
        r: role,
        e: expires_at,
        pv: privileges,
    };
    if let Ok(mut m) = cp.inner.partners.write() {
        m.insert(p.id, (p.secret_gen, true));
    }
    Ok(Json(SessionToken {
        token: cp.inner.tokens.sign(&claims),
        partner_id: p.id,
        role,
        expires_at,
    }))
}

fn require_root(c: &Claims) -> Result<(), ApiError> {
    if c.is_admin() && c.p == 1 {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the admin partner manages partners",
        ))
    }
}

/// Create a partner (admin partner only). The answer shows its secret once.
#[utoipa::path(post, path = "/api/v1/partners", tag = "partners", request_body = PartnerCreate,
    security(("bearer" = [])),
    responses((status = 201, body = Partner), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_partner(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<PartnerCreate>,
) -> Result<(StatusCode, Json<Partner>), ApiError> {
    require_root(&c)?;
    check_str("name", &req.name, 1, 256)?;
    let secret = new_secret();
    let salt = random_hex(16);
    let now = now_s();
    let id = cp
        .inner
        .db
        .insert_partner(&req.name, &salt, &hash_secret(&salt, &secret), now)
        .await?;
    cp.refresh_partners().await?;
    let p = cp
        .inner
        .db
        .get_partner(id)
        .await?
        .ok_or(ApiError::NotFound("partner"))?;
    Ok((StatusCode::CREATED, Json(partner_view(p, Some(secret)))))
}

/// List partners (admin partner only).
#[utoipa::path(get, path = "/api/v1/partners", tag = "partners", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = PartnerList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_partners(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<PartnerList>, ApiError> {
    require_root(&c)?;
    let (_, _, limit, offset) = page_bounds(q.page, q.page_size)?;
    let (v, total) = cp.inner.db.list_partners(limit, offset).await?;
    Ok(Json(PartnerList {
        objects: v.into_iter().map(|p| partner_view(p, None)).collect(),
        total_count: total,
    }))
}

/// Get a partner (the admin partner, or the partner's own admin session).
#[utoipa::path(get, path = "/api/v1/partners/{id}", tag = "partners",
    params(("id" = String, Path, description = "partner id")), security(("bearer" = [])),
    responses((status = 200, body = Partner), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_partner(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<Partner>, ApiError> {
    let id = int_id(&id, "partner")?;
    if !(c.p == 1 && c.is_admin()) && c.p != id {
        return Err(ApiError::NotFound("partner"));
    }
    let p = cp
        .inner
        .db
        .get_partner(id)
        .await?
        .ok_or(ApiError::NotFound("partner"))?;
    Ok(Json(partner_view(p, None)))
}

/// Replace a partner's secret; every token issued before stops working.
#[utoipa::path(post, path = "/api/v1/partners/{id}/regenerate-secret", tag = "partners",
    params(("id" = String, Path, description = "partner id")), security(("bearer" = [])),
    responses((status = 200, body = Partner), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn regenerate_secret(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<Partner>, ApiError> {
    let id = int_id(&id, "partner")?;
    if !(c.p == 1 && c.is_admin()) && c.p != id {
        return Err(ApiError::NotFound("partner"));
    }
    require_admin(&c)?;
    let secret = new_secret();
    let salt = random_hex(16);
    if !cp
        .inner
        .db
        .rotate_partner_secret(id, &salt, &hash_secret(&salt, &secret), now_s())
        .await?
    {
        return Err(ApiError::NotFound("partner"));
    }
    cp.refresh_partners().await?;
    if id == 1 {
        let path = cp.inner.cfg.data_dir.join("admin-secret");
        crate::write_secret_file(&path, &secret).map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let p = cp
        .inner
        .db
        .get_partner(id)
        .await?
        .ok_or(ApiError::NotFound("partner"))?;
    Ok(Json(partner_view(p, Some(secret))))
}

// ---------------------------------------------------------------------------------------
// Entries.

async fn check_profile(cp: &ControlPlane, partner: i64, id: Option<i64>) -> Result<(), ApiError> {
    if let Some(id) = id {
        if id <= 0 || cp.inner.db.get_profile(partner, id).await?.is_none() {
            return Err(ApiError::Validation(
                "conversion_profile_id: no such profile".into(),
            ));
        }
    }
    Ok(())
}

fn check_duration(d: Option<f64>) -> Result<(), ApiError> {
    if let Some(d) = d {
        if !d.is_finite() || !(0.0..=10_000_000.0).contains(&d) {
            return Err(ApiError::Validation(
                "duration_s must be 0 to 10000000".into(),
            ));
        }
    }
    Ok(())
}

fn check_dvr(d: Option<u32>) -> Result<(), ApiError> {
    if d.is_some_and(|d| d > 604_800) {
        return Err(ApiError::Validation(
            "dvr_window_s must be at most 604800".into(),
        ));
    }
    Ok(())
}

/// Create an entry; a live entry gets a stream key and its URLs.
#[utoipa::path(post, path = "/api/v1/entries", tag = "entries", request_body = EntryCreate,
    security(("bearer" = [])),
    responses((status = 201, body = Entry), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_entry(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<EntryCreate>,
) -> Result<(StatusCode, Json<Entry>), ApiError> {
    if !c.may("edit", None) {
        return Err(ApiError::Forbidden(
            "creating entries needs admin or edit:*",
        ));
    }
    check_str("name", &req.name, 1, 256)?;
    check_str("description", &req.description, 0, 4096)?;
    check_list("tags", &req.tags, 50, 64)?;
    check_list("categories", &req.categories, 50, 512)?;
    let metadata = req.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    if let Some(t) = &req.thumbnail_url {
        check_str("thumbnail_url", t, 0, 2048)?;
    }
    check_duration(req.duration_s)?;
    check_dvr(req.dvr_window_s)?;
    let drm = req.drm.unwrap_or_default();
    check_drm(&drm)?;
    check_profile(&cp, c.p, req.conversion_profile_id).await?;
    let live = req.kind == EntryType::Live;
    let now = now_s();
    let (key_hash, key_sealed) = if live {
        let k = new_stream_key();
        (Some(hash_stream_key(&k)), Some(cp.inner.sealer.seal(&k)))
    } else {
        (None, None)
    };
    let mut row = EntryRow {
        id: auth::new_entry_id(),
        partner_id: c.p,
        kind: req.kind.as_str().to_string(),
        name: req.name,
        description: req.description,
        tags: req.tags,
        categories: req.categories,
        metadata,
        status: if live { "offline" } else { "pending" }.to_string(),
        duration_s: req.duration_s,
        thumbnail_url: req.thumbnail_url,
        stream_key_hash: key_hash,
        stream_key_sealed: key_sealed,
        recording: req.recording.unwrap_or(false),
        dvr_window_s: req.dvr_window_s.unwrap_or(if live { 7200 } else { 0 }) as i64,
        conversion_profile_id: req.conversion_profile_id,
        drm,
        created_at: now,
        updated_at: now,
        status_reason: None,
        media: None,
        content_name: None,
        source_entry_id: None,
        recorded_entry_id: None,
        expires_at: None,
        stored_bytes: None,
    };
    let mut tries = 0;
    loop {
        match cp.inner.db.insert_entry(&row).await {
            Ok(()) => break,
            Err(crate::DbError::Conflict) if tries < 5 => {
                tries += 1;
                row.id = auth::new_entry_id();
            }
            Err(e) => return Err(e.into()),
        }
    }
    cp.after_write().await;
    cp.emit(c.p, "entry.created", &row.id);
    Ok((StatusCode::CREATED, Json(Entry::from_row(&cp, &row, true))))
}

pub(crate) async fn load_entry(
    cp: &ControlPlane,
    partner: i64,
    id: &str,
) -> Result<std::sync::Arc<EntryRow>, ApiError> {
    if let Some(e) = cp.cache_get(id) {
        if e.partner_id == partner {
            return Ok(e);
        }
        return Err(ApiError::NotFound("entry"));
    }
    let epoch = cp.cache_epoch();
    let e = cp
        .inner
        .db
        .get_entry(partner, id)
        .await?
        .ok_or(ApiError::NotFound("entry"))?;
    Ok(cp.cache_put(e, epoch))
}

/// Get an entry.
#[utoipa::path(get, path = "/api/v1/entries/{id}", tag = "entries",
    params(("id" = String, Path, description = "entry id")), security(("bearer" = [])),
    responses((status = 200, body = Entry), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_entry(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<Entry>, ApiError> {
    let id = entry_id(&id)?;
    if !c.may("view", Some(id)) {
        return Err(ApiError::Forbidden("no view privilege on this entry"));
    }
    let e = load_entry(&cp, c.p, id).await?;
    Ok(Json(Entry::from_row(&cp, &e, c.may("edit", Some(id)))))
}

/// Change an entry's fields.
#[utoipa::path(patch, path = "/api/v1/entries/{id}", tag = "entries", request_body = EntryPatch,
    params(("id" = String, Path, description = "entry id")), security(("bearer" = [])),
    responses((status = 200, body = Entry), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_entry(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
    ApiJson(p): ApiJson<EntryPatch>,
) -> Result<Json<Entry>, ApiError> {
    let id = entry_id(&id)?;
    if !c.may("edit", Some(id)) {
        return Err(ApiError::Forbidden("no edit privilege on this entry"));
    }
    let mut e = (*load_entry(&cp, c.p, id).await?).clone();
    if let Some(v) = p.name {
        check_str("name", &v, 1, 256)?;
        e.name = v;
    }
    if let Some(v) = p.description {
        check_str("description", &v, 0, 4096)?;
        e.description = v;
    }
    if let Some(v) = p.tags {
        check_list("tags", &v, 50, 64)?;
        e.tags = v;
    }
    if let Some(v) = p.categories {
        check_list("categories", &v, 50, 512)?;
        e.categories = v;
    }
    if let Some(v) = p.metadata {
        check_metadata(&v)?;
        e.metadata = v;
    }
    if p.duration_s.is_some() {
        check_duration(p.duration_s)?;
        e.duration_s = p.duration_s;
    }
    if let Some(v) = p.thumbnail_url {
        check_str("thumbnail_url", &v, 0, 2048)?;
        e.thumbnail_url = Some(v);
    }
    if let Some(v) = p.recording {
        e.recording = v;
    }
    if let Some(v) = p.dvr_window_s {
        check_dvr(Some(v))?;
        e.dvr_window_s = v as i64;
    }
    if p.conversion_profile_id.is_some() {
        check_profile(&cp, c.p, p.conversion_profile_id).await?;
        e.conversion_profile_id = p.conversion_profile_id;
    }
    if let Some(v) = p.drm {
        check_drm(&v)?;
        e.drm = v;
    }
    if let Some(s) = p.status {
        if e.kind == "live" || !matches!(s.as_str(), "pending" | "ready") {
            return Err(ApiError::Validation(
                "status: media entries take pending or ready; live status follows the publisher"
                    .into(),
            ));
        }
        e.status = s;
    }
    if let Some(at) = p.expires_at {
        if !(0..=253_402_300_799).contains(&at) {
            return Err(ApiError::Validation(
                "expires_at: unix seconds (0 clears the retention)".into(),
            ));
        }
        e.expires_at = (at > 0).then_some(at);
    }
    e.updated_at = now_s();
    cp.cache_forget(id);
    if !cp.inner.db.update_entry(&e).await? {
        return Err(ApiError::NotFound("entry"));
    }
    cp.cache_forget(id);
    cp.after_write().await;
    Ok(Json(Entry::from_row(&cp, &e, true)))
}

/// Delete an entry (and its media content).
#[utoipa::path(delete, path = "/api/v1/entries/{id}", tag = "entries",
    params(("id" = String, Path, description = "entry id")), security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_entry(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<StatusCode, ApiError> {
    let id = entry_id(&id)?;
    if !c.may("edit", Some(id)) {
        return Err(ApiError::Forbidden("no edit privilege on this entry"));
    }
    cp.cache_forget(id);
    if !cp.inner.db.delete_entry(c.p, id, now_s()).await? {
        return Err(ApiError::NotFound("entry"));
    }
    cp.cache_forget(id);
    cp.after_write().await;
    cp.remove_media(id).await;
    cp.emit(c.p, "entry.deleted", id);
    Ok(StatusCode::NO_CONTENT)
}

/// Replace a live entry's stream key (the old one stops publishing).
#[utoipa::path(post, path = "/api/v1/entries/{id}/regenerate-key", tag = "entries",
    params(("id" = String, Path, description = "entry id")), security(("bearer" = [])),
    responses((status = 200, body = Entry), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn regenerate_key(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<Entry>, ApiError> {
    let id = entry_id(&id)?;
    if !c.may("edit", Some(id)) {
        return Err(ApiError::Forbidden("no edit privilege on this entry"));
    }
    let mut e = (*load_entry(&cp, c.p, id).await?).clone();
    if e.kind != "live" {
        return Err(ApiError::Validation(
            "only live entries have a stream key".into(),
        ));
    }
    let k = new_stream_key();
    e.stream_key_hash = Some(hash_stream_key(&k));
    e.stream_key_sealed = Some(cp.inner.sealer.seal(&k));
    e.updated_at = now_s();
    cp.cache_forget(id);
    if !cp.inner.db.update_entry(&e).await? {
        return Err(ApiError::NotFound("entry"));
    }
    cp.cache_forget(id);
    cp.after_write().await;
    Ok(Json(Entry::from_row(&cp, &e, true)))
}

/// `POST /playback-tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaybackTokenCreate {
    /// What players play: a live entry's id, or an open-mode stream name.
    #[schema(max_length = 128)]
    pub stream: String,
    /// Lifetime in seconds (1 to 604800; default 3600).
    #[schema(minimum = 1, maximum = 604800)]
    pub expiry_s: Option<i64>,
}

/// A signed, expiring playback token and the URLs that carry it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybackToken {
    pub token: String,
    pub stream: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub playback: PlaybackUrls,
}

/// Issue a playback token for a stream that requires one (`[playback]
/// require_token`): players send it as `?token=` on the manifest URL, and
/// every URL the manifest writes carries it on.
#[utoipa::path(post, path = "/api/v1/playback-tokens", tag = "playback",
    request_body = PlaybackTokenCreate, security(("bearer" = [])),
    responses((status = 200, body = PlaybackToken), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_playback_token(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<PlaybackTokenCreate>,
) -> Result<Json<PlaybackToken>, ApiError> {
    check_str("stream", &req.stream, 1, 128)?;
    let expiry = req.expiry_s.unwrap_or(3600);
    if !(1..=604_800).contains(&expiry) {
        return Err(ApiError::Validation("expiry_s must be 1 to 604800".into()));
    }
    if auth::is_entry_id(&req.stream) {
        if !c.may("view", Some(&req.stream)) {
            return Err(ApiError::Forbidden("no view privilege on this entry"));
        }
        let e = load_entry(&cp, c.p, &req.stream).await?;
        if e.kind != "live" {
            return Err(ApiError::Validation(
                "only live entries are played live".into(),
            ));
        }
    } else {
        // Open-mode names belong to no partner's entry: admins only.
        if !c.is_admin() {
            return Err(ApiError::Forbidden(
                "open-mode streams need an admin session",
            ));
        }
        if !req
            .stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ApiError::Validation(
                "stream is not a valid stream name".into(),
            ));
        }
    }
    let expires_at = now_s() + expiry;
    let token = cp.sign_playback_token(&req.stream, expires_at);
    let http = cp.inner.cfg.public_http_base.trim_end_matches('/');
    let url = |file: &str| format!("{http}/live/{}/{file}?token={token}", req.stream);
    Ok(Json(PlaybackToken {
        playback: PlaybackUrls {
            hls: url("master.m3u8"),
            dash: url("manifest.mpd"),
            mss: url("Manifest"),
        },
        token,
        stream: req.stream,
        expires_at,
    }))
}

fn check_filter_str(field: &str, v: &Option<String>) -> Result<(), ApiError> {
    if let Some(s) = v {
        check_str(field, s, 1, 512)?;
    }
    Ok(())
}

/// List entries with filters, sorting and paging.
#[utoipa::path(get, path = "/api/v1/entries", tag = "entries", params(EntryListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = EntryList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_entries(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<EntryListQuery>,
) -> Result<Json<EntryList>, ApiError> {
    if !c.may("view", None) {
        return Err(ApiError::Forbidden("listing needs admin or view:*"));
    }
    let (page, size, limit, offset) = page_bounds(q.page, q.page_size)?;
    check_filter_str("status", &q.status)?;
    check_filter_str("category", &q.category)?;
    check_filter_str("tag", &q.tag)?;
    let order = match q.sort.as_deref() {
        None | Some("-created_at") => EntryOrder::CreatedDesc,
        Some("created_at") => EntryOrder::CreatedAsc,
        Some("updated_at") => EntryOrder::UpdatedAsc,
        Some("-updated_at") => EntryOrder::UpdatedDesc,
        Some("name") => EntryOrder::NameAsc,
        Some("-name") => EntryOrder::NameDesc,
        Some(_) => {
            return Err(ApiError::Validation(
                "sort: created_at, -created_at, updated_at, -updated_at, name, -name".into(),
            ))
        }
    };
    let f = EntryFilter {
        kind: q.kind.map(|k| k.as_str().to_string()),
        status: q.status,
        category: q.category,
        tag: q.tag,
        created_after: q.created_after,
        created_before: q.created_before,
        order,
        limit,
        offset,
    };
    let (rows, total) = cp.inner.db.list_entries(c.p, &f).await?;
    let with_key = c.may("edit", None);
    Ok(Json(EntryList {
        objects: rows
            .iter()
            .map(|e| Entry::from_row(&cp, e, with_key))
            .collect(),
        total_count: total,
        page,
        page_size: size,
    }))
}

/// Full-text search (BM25) over name, description, tags, categories and metadata values.
#[utoipa::path(get, path = "/api/v1/search", tag = "search", params(SearchQuery),
    security(("bearer" = [])),
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn search(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResults>, ApiError> {
    if !c.may("view", None) {
        return Err(ApiError::Forbidden("searching needs admin or view:*"));
    }
    let (page, size, limit, offset) = page_bounds(q.page, q.page_size)?;
    let text = q.q.unwrap_or_default();
    check_str("q", &text, 0, 1024)?;
    check_filter_str("status", &q.status)?;
    check_filter_str("category", &q.category)?;
    check_filter_str("tag", &q.tag)?;
    if offset + limit > 10_000 {
        return Err(ApiError::Validation(
            "search results are limited to the first 10000 hits (page * page_size)".into(),
        ));
    }
    if let (Some(a), Some(b)) = (q.created_after, q.created_before) {
        if a >= b {
            return Ok(Json(SearchResults {
                objects: Vec::new(),
                total_count: 0,
                page,
                page_size: size,
            }));
        }
    }
    // Catch up with writes of other nodes before answering.
    cp.inner.search.sync(&cp.inner.db).await?;
    let filter = SearchFilter {
        kind: q.kind.map(|k| k.as_str().to_string()),
        status: q.status,
        tag: q.tag,
        category: q.category,
        created_after: q.created_after,
        created_before: q.created_before,
    };
    let idx = cp.inner.search.clone();
    let partner = c.p;
    let (total, hits) = tokio::task::spawn_blocking(move || {
        idx.search(partner, &text, &filter, limit as usize, offset as usize)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    // Rows from the entry cache where possible, the rest from the database.
    let mut rows: Vec<std::sync::Arc<EntryRow>> = Vec::with_capacity(hits.len());
    let mut missing: Vec<String> = Vec::new();
    for (id, _) in &hits {
        match cp.cache_get(id) {
            Some(e) if e.partner_id == c.p => rows.push(e),
            _ => missing.push(id.clone()),
        }
    }
    if !missing.is_empty() {
        let epoch = cp.cache_epoch();
        for e in cp.inner.db.entries_by_ids(c.p, &missing).await? {
            rows.push(cp.cache_put(e, epoch));
        }
    }
    let with_key = c.may("edit", None);
    let objects = hits
        .iter()
        .filter_map(|(id, score)| {
            rows.iter().find(|e| &e.id == id).map(|e| SearchHit {
                score: *score,
                entry: Entry::from_row(&cp, e, with_key),
            })
        })
        .collect();
    Ok(Json(SearchResults {
        objects,
        total_count: total as i64,
        page,
        page_size: size,
    }))
}

// ---------------------------------------------------------------------------------------
// Categories.

/// Create a category (under `parent_id` if given).
#[utoipa::path(post, path = "/api/v1/categories", tag = "categories", request_body = CategoryCreate,
    security(("bearer" = [])),
    responses((status = 201, body = Category), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_category(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CategoryCreate>,
) -> Result<(StatusCode, Json<Category>), ApiError> {
    require_admin(&c)?;
    check_str("name", &req.name, 1, 128)?;
    if req.name.contains('>') {
        return Err(ApiError::Validation("name must not contain '>'".into()));
    }
    let full_name =
        match req.parent_id {
            Some(pid) => {
                let parent =
                    cp.inner.db.get_category(c.p, pid).await?.ok_or_else(|| {
                        ApiError::Validation("parent_id: no such category".into())
                    })?;
                format!("{}>{}", parent.full_name, req.name)
            }
            None => req.name.clone(),
        };
    if full_name.len() > 2048 {
        return Err(ApiError::Validation("category tree too deep".into()));
    }
    let now = now_s();
    let cat = Category {
        id: random_id_i64(),
        parent_id: req.parent_id,
        name: req.name,
        full_name,
        created_at: now,
        updated_at: now,
    };
    cp.inner.db.insert_category(c.p, &cat).await?;
    Ok((StatusCode::CREATED, Json(cat)))
}

pub(crate) fn random_id_i64() -> i64 {
    use rand::Rng;
    rand::rng().random_range(1_000_000..9_007_199_254_740_991i64)
}

/// List categories.
#[utoipa::path(get, path = "/api/v1/categories", tag = "categories", params(CategoryListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = CategoryList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_categories(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<CategoryListQuery>,
) -> Result<Json<CategoryList>, ApiError> {
    let (_, _, limit, offset) = page_bounds(q.page, q.page_size)?;
    let (objects, total) = cp
        .inner
        .db
        .list_categories(c.p, q.parent_id, limit, offset)
        .await?;
    Ok(Json(CategoryList {
        objects,
        total_count: total,
    }))
}

/// Get a category.
#[utoipa::path(get, path = "/api/v1/categories/{id}", tag = "categories",
    params(("id" = String, Path, description = "category id")), security(("bearer" = [])),
    responses((status = 200, body = Category), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_category(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<Category>, ApiError> {
    let id = int_id(&id, "category")?;
    Ok(Json(
        cp.inner
            .db
            .get_category(c.p, id)
            .await?
            .ok_or(ApiError::NotFound("category"))?,
    ))
}

/// Rename a category (its subtree's full names follow).
#[utoipa::path(patch, path = "/api/v1/categories/{id}", tag = "categories", request_body = CategoryPatch,
    params(("id" = String, Path, description = "category id")), security(("bearer" = [])),
    responses((status = 200, body = Category), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn patch_category(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<CategoryPatch>,
) -> Result<Json<Category>, ApiError> {
    require_admin(&c)?;
    let id = int_id(&id, "category")?;
    check_str("name", &req.name, 1, 128)?;
    if req.name.contains('>') {
        return Err(ApiError::Validation("name must not contain '>'".into()));
    }
    let cat = cp
        .inner
        .db
        .get_category(c.p, id)
        .await?
        .ok_or(ApiError::NotFound("category"))?;
    let new_full = match cat.full_name.rsplit_once('>') {
        Some((parent, _)) => format!("{parent}>{}", req.name),
        None => req.name.clone(),
    };
    cp.inner
        .db
        .rename_category(c.p, id, &req.name, &cat.full_name, &new_full, now_s())
        .await?;
    Ok(Json(
        cp.inner
            .db
            .get_category(c.p, id)
            .await?
            .ok_or(ApiError::NotFound("category"))?,
    ))
}

/// Delete a category without children.
#[utoipa::path(delete, path = "/api/v1/categories/{id}", tag = "categories",
    params(("id" = String, Path, description = "category id")), security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_category(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<StatusCode, ApiError> {
    require_admin(&c)?;
    let id = int_id(&id, "category")?;
    match cp.inner.db.delete_category(c.p, id).await? {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::NotFound("category")),
        Err(()) => Err(ApiError::Conflict("the category has children")),
    }
}

// ---------------------------------------------------------------------------------------
// OpenAPI and the router.

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI 3.1 document, generated from the handlers' own types.
#[derive(OpenApi)]
#[openapi(
    info(title = "Vela control plane", description = "Partners, sessions, entries, stream keys, categories, conversion profiles and search."),
    paths(
        create_session, create_partner, list_partners, get_partner, regenerate_secret,
        create_entry, list_entries, get_entry, patch_entry, delete_entry, regenerate_key,
        crate::upload::put_content,
        search, create_category, list_categories, get_category, patch_category, delete_category,
        crate::encoding::profile_api::create_profile, crate::encoding::profile_api::list_profiles,
        crate::encoding::profile_api::get_profile, crate::encoding::profile_api::patch_profile,
        crate::encoding::profile_api::delete_profile, crate::encoding::flavor_api::create_flavor,
        crate::encoding::flavor_api::list_flavors, crate::encoding::flavor_api::get_flavor,
        crate::encoding::flavor_api::patch_flavor, crate::encoding::flavor_api::delete_flavor,
        create_playback_token, crate::recording::get_usage
    ),
    components(schemas(ErrorBody, Entry, EntryCreate, EntryPatch, EntryList, SearchResults, SearchHit,
        SessionCreate, SessionToken, PartnerCreate, Partner, PartnerList, Category, CategoryCreate,
        CategoryPatch, CategoryList, crate::encoding::ConversionProfile, crate::encoding::FlavorParams,
        crate::encoding::FlavorRecipe, crate::encoding::profile_api::ProfileCreate,
        crate::encoding::profile_api::ProfilePatch, crate::encoding::profile_api::ProfileList,
        crate::encoding::flavor_api::FlavorParamsList, Drm, EntryType, Role, PublishUrls, PlaybackUrls, PlaybackTokenCreate,
        PlaybackToken, MediaInfo, TrackInfo, TrackKind, crate::upload::ContentBody,
        crate::recording::Usage)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

async fn openapi_json() -> Response {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::jobs::api::JobsDoc::openapi());
    doc.merge(crate::jobs::notify::WebhooksDoc::openapi());
    doc.merge(crate::analytics::api::AnalyticsDoc::openapi());
    match doc.to_json() {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The `/api/v1` routes.
pub fn router(cp: ControlPlane) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/sessions", post(create_session))
        .route("/partners", post(create_partner).get(list_partners))
        .route("/partners/{id}", get(get_partner))
        .route("/partners/{id}/regenerate-secret", post(regenerate_secret))
        .route("/entries", post(create_entry).get(list_entries))
        .route(
            "/entries/{id}",
            get(get_entry).patch(patch_entry).delete(delete_entry),
        )
        .route("/entries/{id}/regenerate-key", post(regenerate_key))
        // Streamed to storage, bounded by `MediaConfig::max_upload_bytes`, not BODY_LIMIT.
        .route(
            "/entries/{id}/content",
            put(crate::upload::put_content).layer(DefaultBodyLimit::disable()),
        )
        .route("/search", get(search))
        .route("/usage", get(crate::recording::get_usage))
        .route("/playback-tokens", post(create_playback_token))
        .route("/categories", post(create_category).get(list_categories))
        .route(
            "/categories/{id}",
            get(get_category)
                .patch(patch_category)
                .delete(delete_category),
        )
        .merge(crate::encoding::routes())
        .merge(crate::jobs::api::routes())
        .merge(crate::jobs::notify::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(cp);
    Router::new().nest("/api/v1", api)
}
