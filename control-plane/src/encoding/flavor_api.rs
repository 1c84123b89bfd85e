//! `/api/v1/flavor-params`: rendition recipes of the partner (plus the system's,
//! read-only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::recipe::FlavorRecipe;
use super::store::FlavorParams;
use crate::api::{
    int_id, page_bounds, random_id_i64, require_admin, ApiJson, ApiPath, ApiQuery, Auth, PageQuery,
};
use crate::auth::now_s;
use crate::error::{ApiError, ErrorBody};
use crate::ControlPlane;

/// A page of flavor params.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlavorParamsList {
    pub objects: Vec<FlavorParams>,
    pub total_count: i64,
}

pub(crate) fn check_recipe(r: &FlavorRecipe) -> Result<(), ApiError> {
    r.validate()
        .map_err(|e| ApiError::Validation(e.to_string()))
}

/// Creates flavor params for `partner` (also used by inline profile ladders).
pub(crate) async fn insert(
    cp: &ControlPlane,
    partner: i64,
    recipe: FlavorRecipe,
) -> Result<FlavorParams, ApiError> {
    check_recipe(&recipe)?;
    let now = now_s();
    let f = FlavorParams {
        id: random_id_i64(),
        partner_id: partner,
        recipe,
        created_at: now,
        updated_at: now,
    };
    cp.inner.db.insert_flavor(partner, &f).await?;
    Ok(f)
}

/// Create flavor params (a rendition recipe).
#[utoipa::path(post, path = "/api/v1/flavor-params", tag = "conversion profiles",
    request_body = FlavorRecipe, security(("bearer" = [])),
    responses((status = 201, body = FlavorParams), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_flavor(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<FlavorRecipe>,
) -> Result<(StatusCode, Json<FlavorParams>), ApiError> {
    require_admin(&c)?;
    Ok((StatusCode::CREATED, Json(insert(&cp, c.p, req).await?)))
}

/// List flavor params: the system's, then the partner's.
#[utoipa::path(get, path = "/api/v1/flavor-params", tag = "conversion profiles",
    params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = FlavorParamsList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_flavors(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<FlavorParamsList>, ApiError> {
    let (_, _, limit, offset) = page_bounds(q.page, q.page_size)?;
    let (objects, total_count) = cp.inner.db.list_flavors(c.p, limit, offset).await?;
    Ok(Json(FlavorParamsList {
        objects,
        total_count,
    }))
}

/// Get flavor params.
#[utoipa::path(get, path = "/api/v1/flavor-params/{id}", tag = "conversion profiles",
    params(("id" = String, Path, description = "flavor params id")), security(("bearer" = [])),
    responses((status = 200, body = FlavorParams), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_flavor(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<FlavorParams>, ApiError> {
    let id = int_id(&id, "flavor params")?;
    Ok(Json(
        cp.inner
            .db
            .get_flavor(c.p, id)
            .await?
            .ok_or(ApiError::NotFound("flavor params"))?,
    ))
}

/// Replace a partner's flavor params (the whole recipe; the system's are read-only).
#[utoipa::path(patch, path = "/api/v1/flavor-params/{id}", tag = "conversion profiles",
    request_body = FlavorRecipe,
    params(("id" = String, Path, description = "flavor params id")), security(("bearer" = [])),
    responses((status = 200, body = FlavorParams), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_flavor(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<FlavorRecipe>,
) -> Result<Json<FlavorParams>, ApiError> {
    require_admin(&c)?;
    let id = int_id(&id, "flavor params")?;
    let mut f = cp
        .inner
        .db
        .get_flavor(c.p, id)
        .await?
        .ok_or(ApiError::NotFound("flavor params"))?;
    if f.partner_id != c.p {
        return Err(ApiError::Forbidden("system flavor params are read-only"));
    }
    check_recipe(&req)?;
    f.recipe = req;
    f.updated_at = now_s();
    if !cp.inner.db.update_flavor(c.p, &f).await? {
        return Err(ApiError::NotFound("flavor params"));
    }
    Ok(Json(f))
}

/// Delete flavor params that no profile of the partner uses.
#[utoipa::path(delete, path = "/api/v1/flavor-params/{id}", tag = "conversion profiles",
    params(("id" = String, Path, description = "flavor params id")), security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_flavor(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<StatusCode, ApiError> {
    require_admin(&c)?;
    let id = int_id(&id, "flavor params")?;
    let f = cp
        .inner
        .db
        .get_flavor(c.p, id)
        .await?
        .ok_or(ApiError::NotFound("flavor params"))?;
    if f.partner_id != c.p {
        return Err(ApiError::Forbidden("system flavor params are read-only"));
    }
    if cp.inner.db.flavor_in_use(c.p, id).await? {
        return Err(ApiError::Conflict(
            "a conversion profile uses these flavor params",
        ));
    }
    if cp.inner.db.delete_flavor(c.p, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("flavor params"))
    }
}
