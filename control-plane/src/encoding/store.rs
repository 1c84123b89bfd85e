//! Queries of flavor params and conversion profiles. A partner reads its own rows
//! and the system's (partner 0) and writes only its own.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::recipe::FlavorRecipe;
use super::SYSTEM_PARTNER;
use crate::db::Db;
use crate::error::DbError;

/// A stored rendition recipe.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FlavorParams {
    pub id: i64,
    /// 0 for the system's (read-only) flavor params.
    pub partner_id: i64,
    #[serde(flatten)]
    pub recipe: FlavorRecipe,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A conversion profile: an ordered ladder of flavor params.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConversionProfile {
    pub id: i64,
    /// 0 for the system's (read-only) profiles.
    pub partner_id: i64,
    pub name: String,
    pub description: String,
    /// The shipped default ladder.
    pub is_default: bool,
    /// The ladder, in order.
    pub flavor_params_ids: Vec<i64>,
    /// The ladder's recipes, resolved (in order).
    pub flavors: Vec<FlavorParams>,
    pub created_at: i64,
    pub updated_at: i64,
}

const FLAVOR_COLS: &str = "id, partner_id, params, created_at, updated_at";
const PROFILE_COLS: &str =
    "id, partner_id, name, description, flavors, flavor_params_ids, is_default, created_at, updated_at";

fn corrupt(e: serde_json::Error) -> DbError {
    DbError::Corrupt(e.to_string())
}

fn flavor_from_row(r: &AnyRow) -> Result<FlavorParams, DbError> {
    let params: String = r.try_get("params")?;
    Ok(FlavorParams {
        id: r.try_get("id")?,
        partner_id: r.try_get("partner_id")?,
        recipe: serde_json::from_str(&params).map_err(corrupt)?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn profile_from_row(r: &AnyRow) -> Result<ConversionProfile, DbError> {
    let ids: String = r.try_get("flavor_params_ids")?;
    // Profiles from before migration 0005 hold their recipes inline.
    let inline: String = r.try_get("flavors")?;
    let inline: Vec<FlavorRecipe> = serde_json::from_str(&inline).map_err(corrupt)?;
    let created_at = r.try_get("created_at")?;
    Ok(ConversionProfile {
        id: r.try_get("id")?,
        partner_id: r.try_get("partner_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        is_default: r.try_get::<i64, _>("is_default")? != 0,
        flavor_params_ids: serde_json::from_str(&ids).map_err(corrupt)?,
        flavors: inline
            .into_iter()
            .map(|recipe| FlavorParams {
                id: 0,
                partner_id: 0,
                recipe,
                created_at,
                updated_at: created_at,
            })
            .collect(),
        created_at,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Db {
    pub async fn insert_flavor(&self, partner_id: i64, f: &FlavorParams) -> Result<(), DbError> {
        let params = serde_json::to_string(&f.recipe).map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO flavor_params (id, partner_id, name, params, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(f.id)
        .bind(partner_id)
        .bind(&f.recipe.name)
        .bind(params)
        .bind(f.created_at)
        .bind(f.updated_at)
        .execute(self.pool())
        .await
        .map_err(DbError::from_sqlx)?;
        Ok(())
    }

    /// Changes a flavor params object of `partner_id` (never the system's).
    pub async fn update_flavor(&self, partner_id: i64, f: &FlavorParams) -> Result<bool, DbError> {
        let params = serde_json::to_string(&f.recipe).map_err(corrupt)?;
        let r = sqlx::query(
            "UPDATE flavor_params SET name=$1, params=$2, updated_at=$3 WHERE id=$4 AND partner_id=$5",
        )
        .bind(&f.recipe.name)
        .bind(params)
        .bind(f.updated_at)
        .bind(f.id)
        .bind(partner_id)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A flavor params object of `partner_id` or of the system.
    pub async fn get_flavor(
        &self,
        partner_id: i64,
        id: i64,
    ) -> Result<Option<FlavorParams>, DbError> {
        let r = sqlx::query(&format!(
            "SELECT {FLAVOR_COLS} FROM flavor_params WHERE id = $1 AND (partner_id = $2 OR partner_id = $3)"
        ))
        .bind(id)
        .bind(partner_id)
        .bind(SYSTEM_PARTNER)
        .fetch_optional(self.pool())
        .await?;
        r.as_ref().map(flavor_from_row).transpose()
    }

    /// The system's and the partner's flavor params, system first, then by id.
    pub async fn list_flavors(
        &self,
        partner_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<FlavorParams>, i64), DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {FLAVOR_COLS} FROM flavor_params WHERE partner_id = $1 OR partner_id = $2 \
             ORDER BY partner_id, id LIMIT $3 OFFSET $4"
        ))
        .bind(SYSTEM_PARTNER)
        .bind(partner_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) FROM flavor_params WHERE partner_id = $1 OR partner_id = $2",
        )
        .bind(SYSTEM_PARTNER)
        .bind(partner_id)
        .fetch_one(self.pool())
        .await?
        .try_get(0)?;
        let v = rows.iter().map(flavor_from_row).collect::<Result<_, _>>()?;
        Ok((v, total))
    }

    pub async fn delete_flavor(&self, partner_id: i64, id: i64) -> Result<bool, DbError> {
        let r = sqlx::query("DELETE FROM flavor_params WHERE id = $1 AND partner_id = $2")
            .bind(id)
            .bind(partner_id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Whether one of the partner's profiles names flavor params `id`.
    pub async fn flavor_in_use(&self, partner_id: i64, id: i64) -> Result<bool, DbError> {
        let rows =
            sqlx::query("SELECT flavor_params_ids FROM conversion_profiles WHERE partner_id = $1")
                .bind(partner_id)
                .fetch_all(self.pool())
                .await?;
        for r in rows {
            let ids: String = r.try_get(0)?;
            let ids: Vec<i64> = serde_json::from_str(&ids).map_err(corrupt)?;
            if ids.contains(&id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Fills `flavors` from `flavor_params_ids` (flavor params deleted since are
    /// left out). Profiles with inline recipes (before migration 0005) keep them.
    pub async fn resolve_profile(
        &self,
        partner_id: i64,
        mut p: ConversionProfile,
    ) -> Result<ConversionProfile, DbError> {
        if p.flavor_params_ids.is_empty() {
            return Ok(p);
        }
        let mut flavors = Vec::with_capacity(p.flavor_params_ids.len());
        for id in &p.flavor_params_ids {
            if let Some(f) = self.get_flavor(partner_id, *id).await? {
                flavors.push(f);
            }
        }
        p.flavors = flavors;
        Ok(p)
    }

    pub async fn insert_profile(
        &self,
        partner_id: i64,
        p: &ConversionProfile,
    ) -> Result<(), DbError> {
        let ids = serde_json::to_string(&p.flavor_params_ids).map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO conversion_profiles (id, partner_id, name, description, flavors, flavor_params_ids, is_default, created_at, updated_at) \
             VALUES ($1,$2,$3,$4,'[]',$5,0,$6,$7)",
        )
        .bind(p.id)
        .bind(partner_id)
        .bind(&p.name)
        .bind(&p.description)
        .bind(ids)
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(self.pool())
        .await
        .map_err(DbError::from_sqlx)?;
        Ok(())
    }

    /// Changes a profile of `partner_id` (never the system's). A ladder given by
    /// ids replaces any inline recipes of an old profile.
    pub async fn update_profile(
        &self,
        partner_id: i64,
        p: &ConversionProfile,
    ) -> Result<bool, DbError> {
        let ids = serde_json::to_string(&p.flavor_params_ids).map_err(corrupt)?;
        let inline: Vec<&FlavorRecipe> = if p.flavor_params_ids.is_empty() {
            p.flavors.iter().map(|f| &f.recipe).collect()
        } else {
            Vec::new()
        };
        let inline = serde_json::to_string(&inline).map_err(corrupt)?;
        let r = sqlx::query(
            "UPDATE conversion_profiles SET name=$1, description=$2, flavors=$3, flavor_params_ids=$4, updated_at=$5 \
             WHERE id=$6 AND partner_id=$7",
        )
        .bind(&p.name)
        .bind(&p.description)
        .bind(inline)
        .bind(ids)
        .bind(p.updated_at)
        .bind(p.id)
        .bind(partner_id)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A profile of `partner_id` or of the system (not resolved).
    pub async fn get_profile(
        &self,
        partner_id: i64,
        id: i64,
    ) -> Result<Option<ConversionProfile>, DbError> {
        let r = sqlx::query(&format!(
            "SELECT {PROFILE_COLS} FROM conversion_profiles WHERE id = $1 AND (partner_id = $2 OR partner_id = $3)"
        ))
        .bind(id)
        .bind(partner_id)
        .bind(SYSTEM_PARTNER)
        .fetch_optional(self.pool())
        .await?;
        r.as_ref().map(profile_from_row).transpose()
    }

    /// The partner that owns profile `id`.
    pub async fn profile_partner(&self, id: i64) -> Result<Option<i64>, DbError> {
        let r = sqlx::query("SELECT partner_id FROM conversion_profiles WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(r.map(|r| r.try_get::<i64, _>(0)).transpose()?)
    }

    /// The system's and the partner's profiles (not resolved), system first.
    pub async fn list_profiles(
        &self,
        partner_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ConversionProfile>, i64), DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {PROFILE_COLS} FROM conversion_profiles WHERE partner_id = $1 OR partner_id = $2 \
             ORDER BY partner_id, id LIMIT $3 OFFSET $4"
        ))
        .bind(SYSTEM_PARTNER)
        .bind(partner_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) FROM conversion_profiles WHERE partner_id = $1 OR partner_id = $2",
        )
        .bind(SYSTEM_PARTNER)
        .bind(partner_id)
        .fetch_one(self.pool())
        .await?
        .try_get(0)?;
        let v = rows
            .iter()
            .map(profile_from_row)
            .collect::<Result<_, _>>()?;
        Ok((v, total))
    }

    pub async fn delete_profile(&self, partner_id: i64, id: i64) -> Result<bool, DbError> {
        let r = sqlx::query("DELETE FROM conversion_profiles WHERE id = $1 AND partner_id = $2")
            .bind(id)
            .bind(partner_id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
