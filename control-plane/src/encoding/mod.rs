//! Conversion profiles and flavor params (Kaltura's model of an ABR ladder).
//!
//! A *flavor params* object is one rendition recipe ([`FlavorRecipe`]): codec, size
//! (width and/or height, the other side keeping the source's aspect), video bitrate,
//! max rate and buffer, frame rate, H.264 profile/level, audio codec, bitrate and
//! channels, or `source` for the input passed through untouched. A *conversion
//! profile* is an ordered list of flavor params; a live or media entry names one
//! with `conversion_profile_id`, and an entry without one is passthrough only.
//!
//! Objects of partner 0 are the system's, readable by every partner and changed by
//! none: the shipped default profile (id 1: source + 720p + 480p + 360p, flavor
//! params 1 to 4, created by migration 0005).
//!
//! - [`recipe`]: the recipe type and its validation (no I/O);
//! - [`store`]: the queries;
//! - [`flavor_api`] and [`profile_api`]: the `/api/v1/flavor-params` and
//!   `/api/v1/conversion-profiles` handlers.

pub mod flavor_api;
pub mod profile_api;
pub mod recipe;
pub mod store;

pub use recipe::{FlavorRecipe, RecipeError, MAX_FLAVORS};
pub use store::{ConversionProfile, FlavorParams};

use axum::routing::{get, post};
use axum::Router;

use crate::ControlPlane;

/// The partner that owns the system objects (read-only for everyone).
pub const SYSTEM_PARTNER: i64 = 0;
/// The shipped default conversion profile.
pub const DEFAULT_PROFILE_ID: i64 = 1;

/// The routes of this area (nested under `/api/v1` by [`crate::api::router`]).
pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new()
        .route(
            "/conversion-profiles",
            post(profile_api::create_profile).get(profile_api::list_profiles),
        )
        .route(
            "/conversion-profiles/{id}",
            get(profile_api::get_profile)
                .patch(profile_api::patch_profile)
                .delete(profile_api::delete_profile),
        )
        .route(
            "/flavor-params",
            post(flavor_api::create_flavor).get(flavor_api::list_flavors),
        )
        .route(
            "/flavor-params/{id}",
            get(flavor_api::get_flavor)
                .patch(flavor_api::patch_flavor)
                .delete(flavor_api::delete_flavor),
        )
}

impl ControlPlane {
    /// The recipes of profile `profile_id` in ladder order, as partner `partner_id`
    /// sees it (its own profiles and the system's); `None` if there is no such profile.
    pub async fn profile_recipes(
        &self,
        partner_id: i64,
        profile_id: i64,
    ) -> Result<Option<Vec<FlavorRecipe>>, crate::DbError> {
        let db = &self.inner.db;
        let Some(p) = db.get_profile(partner_id, profile_id).await? else {
            return Ok(None);
        };
        let p = db.resolve_profile(partner_id, p).await?;
        Ok(Some(p.flavors.into_iter().map(|f| f.recipe).collect()))
    }

    /// The recipes of profile `profile_id` whatever its partner (open mode names a
    /// profile in the configuration, outside any partner).
    pub async fn profile_recipes_unscoped(
        &self,
        profile_id: i64,
    ) -> Result<Option<Vec<FlavorRecipe>>, crate::DbError> {
        let Some(partner) = self.inner.db.profile_partner(profile_id).await? else {
            return Ok(None);
        };
        self.profile_recipes(partner, profile_id).await
    }
}
