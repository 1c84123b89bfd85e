//! `/api/v1/conversion-profiles`: ordered ladders of flavor params. A ladder is
//! given by `flavor_params_ids`, or inline as `flavors` (recipes that become the
//! partner's flavor params).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::flavor_api;
use super::recipe::{check_ladder_ids, FlavorRecipe, MAX_FLAVORS};
use super::store::ConversionProfile;
use crate::api::{
    check_str, int_id, page_bounds, random_id_i64, require_admin, ApiJson, ApiPath, ApiQuery, Auth,
    PageQuery,
};
use crate::auth::now_s;
use crate::error::{ApiError, ErrorBody};
use crate::ControlPlane;

/// `POST /conversion-profiles` body: `flavor_params_ids` or `flavors`, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileCreate {
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub description: String,
    /// The ladder by flavor params ids, in order.
    #[schema(min_items = 1, max_items = 16)]
    pub flavor_params_ids: Option<Vec<i64>>,
    /// The ladder as recipes (each becomes flavor params of the partner).
    #[schema(min_items = 1, max_items = 16)]
    pub flavors: Option<Vec<FlavorRecipe>>,
}

/// `PATCH /conversion-profiles/ID` body: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    #[schema(min_length = 1, max_length = 256)]
    pub name: Option<String>,
    #[schema(max_length = 4096)]
    pub description: Option<String>,
    #[schema(min_items = 1, max_items = 16)]
    pub flavor_params_ids: Option<Vec<i64>>,
    #[schema(min_items = 1, max_items = 16)]
    pub flavors: Option<Vec<FlavorRecipe>>,
}

/// A page of conversion profiles.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileList {
    pub objects: Vec<ConversionProfile>,
    pub total_count: i64,
}

/// The ladder's ids: checked ones, or new flavor params made from inline recipes.
async fn ladder(
    cp: &ControlPlane,
    partner: i64,
    ids: Option<Vec<i64>>,
    inline: Option<Vec<FlavorRecipe>>,
) -> Result<Option<Vec<i64>>, ApiError> {
    match (ids, inline) {
        (Some(_), Some(_)) => Err(ApiError::Validation(
            "give flavor_params_ids or flavors, not both".into(),
        )),
        (None, None) => Ok(None),
        (Some(ids), None) => {
            check_ladder_ids(&ids).map_err(|e| ApiError::Validation(e.to_string()))?;
            for id in &ids {
                if *id <= 0 || cp.inner.db.get_flavor(partner, *id).await?.is_none() {
                    return Err(ApiError::Validation(format!(
                        "flavor_params_ids: no flavor params {id}"
                    )));
                }
            }
            Ok(Some(ids))
        }
        (None, Some(recipes)) => {
            if recipes.is_empty() || recipes.len() > MAX_FLAVORS {
                return Err(ApiError::Validation(format!(
                    "flavors: 1 to {MAX_FLAVORS} items, not {}",
                    recipes.len()
                )));
            }
            // All checked before any is stored.
            for r in &recipes {
                flavor_api::check_recipe(r)?;
            }
            let mut ids = Vec::with_capacity(recipes.len());
            for r in recipes {
                ids.push(flavor_api::insert(cp, partner, r).await?.id);
            }
            Ok(Some(ids))
        }
    }
}

/// Create a conversion profile (ABR ladder).
#[utoipa::path(post, path = "/api/v1/conversion-profiles", tag = "conversion profiles",
    request_body = ProfileCreate, security(("bearer" = [])),
    responses((status = 201, body = ConversionProfile), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_profile(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<ProfileCreate>,
) -> Result<(StatusCode, Json<ConversionProfile>), ApiError> {
    require_admin(&c)?;
    check_str("name", &req.name, 1, 256)?;
    check_str("description", &req.description, 0, 4096)?;
    let ids = ladder(&cp, c.p, req.flavor_params_ids, req.flavors)
        .await?
        .ok_or_else(|| ApiError::Validation("give flavor_params_ids or flavors".into()))?;
    let now = now_s();
    let p = ConversionProfile {
        id: random_id_i64(),
        partner_id: c.p,
        name: req.name,
        description: req.description,
        is_default: false,
        flavor_params_ids: ids,
        flavors: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    cp.inner.db.insert_profile(c.p, &p).await?;
    let p = cp.inner.db.resolve_profile(c.p, p).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// List conversion profiles: the system's (the default ladder), then the partner's.
#[utoipa::path(get, path = "/api/v1/conversion-profiles", tag = "conversion profiles",
    params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = ProfileList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_profiles(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ProfileList>, ApiError> {
    let (_, _, limit, offset) = page_bounds(q.page, q.page_size)?;
    let (rows, total_count) = cp.inner.db.list_profiles(c.p, limit, offset).await?;
    let mut objects = Vec::with_capacity(rows.len());
    for p in rows {
        objects.push(cp.inner.db.resolve_profile(c.p, p).await?);
    }
    Ok(Json(ProfileList {
        objects,
        total_count,
    }))
}

/// Get a conversion profile.
#[utoipa::path(get, path = "/api/v1/conversion-profiles/{id}", tag = "conversion profiles",
    params(("id" = String, Path, description = "profile id")), security(("bearer" = [])),
    responses((status = 200, body = ConversionProfile), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_profile(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<ConversionProfile>, ApiError> {
    let id = int_id(&id, "conversion profile")?;
    let p = cp
        .inner
        .db
        .get_profile(c.p, id)
        .await?
        .ok_or(ApiError::NotFound("conversion profile"))?;
    Ok(Json(cp.inner.db.resolve_profile(c.p, p).await?))
}

async fn own_profile(
    cp: &ControlPlane,
    partner: i64,
    id: i64,
) -> Result<ConversionProfile, ApiError> {
    let p = cp
        .inner
        .db
        .get_profile(partner, id)
        .await?
        .ok_or(ApiError::NotFound("conversion profile"))?;
    if p.partner_id != partner {
        return Err(ApiError::Forbidden(
            "system conversion profiles are read-only",
        ));
    }
    Ok(p)
}

/// Change a conversion profile.
#[utoipa::path(patch, path = "/api/v1/conversion-profiles/{id}", tag = "conversion profiles",
    request_body = ProfilePatch,
    params(("id" = String, Path, description = "profile id")), security(("bearer" = [])),
    responses((status = 200, body = ConversionProfile), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_profile(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<ProfilePatch>,
) -> Result<Json<ConversionProfile>, ApiError> {
    require_admin(&c)?;
    let id = int_id(&id, "conversion profile")?;
    let mut p = own_profile(&cp, c.p, id).await?;
    if let Some(v) = req.name {
        check_str("name", &v, 1, 256)?;
        p.name = v;
    }
    if let Some(v) = req.description {
        check_str("description", &v, 0, 4096)?;
        p.description = v;
    }
    if let Some(ids) = ladder(&cp, c.p, req.flavor_params_ids, req.flavors).await? {
        p.flavor_params_ids = ids;
        p.flavors.clear();
    }
    p.updated_at = now_s();
    if !cp.inner.db.update_profile(c.p, &p).await? {
        return Err(ApiError::NotFound("conversion profile"));
    }
    Ok(Json(cp.inner.db.resolve_profile(c.p, p).await?))
}

/// Delete a conversion profile.
#[utoipa::path(delete, path = "/api/v1/conversion-profiles/{id}", tag = "conversion profiles",
    params(("id" = String, Path, description = "profile id")), security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_profile(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<StatusCode, ApiError> {
    require_admin(&c)?;
    let id = int_id(&id, "conversion profile")?;
    own_profile(&cp, c.p, id).await?;
    if cp.inner.db.delete_profile(c.p, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("conversion profile"))
    }
}
