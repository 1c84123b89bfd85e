//! The same repository suite against SQLite and a real PostgreSQL.

mod common;

use vela_control_plane::db::{Db, Drm, EntryFilter, EntryOrder, EntryRow};

fn entry(id: &str, partner: i64, kind: &str, name: &str, tags: &[&str], created: i64) -> EntryRow {
    EntryRow {
        id: id.into(),
        partner_id: partner,
        kind: kind.into(),
        name: name.into(),
        description: format!("description of {name}"),
        tags: tags.iter().map(|s| s.to_string()).collect(),
        categories: vec!["sports>football".into()],
        metadata: serde_json::json!({"venue": "Wembley", "n": 3})
            .as_object()
            .unwrap()
            .clone(),
        status: if kind == "live" { "offline" } else { "pending" }.into(),
        duration_s: Some(12.5),
        thumbnail_url: None,
        stream_key_hash: (kind == "live").then(|| format!("hash-{id}")),
        stream_key_sealed: (kind == "live").then(|| "sealed".to_string()),
        recording: true,
        dvr_window_s: 3600,
        conversion_profile_id: None,
        drm: Drm::default(),
        created_at: created,
        updated_at: created,
        status_reason: None,
        media: None,
        content_name: None,
        source_entry_id: None,
        recorded_entry_id: None,
        expires_at: None,
        stored_bytes: None,
    }
}

async fn suite(db: Db) {
    // Settings: first writer wins.
    assert_eq!(db.setting_or_insert("k", "a").await.unwrap(), "a");
    assert_eq!(db.setting_or_insert("k", "b").await.unwrap(), "a");

    // Partners.
    db.insert_partner_with_id(1, "admin", "s", "h", 1)
        .await
        .unwrap();
    assert!(matches!(
        db.insert_partner_with_id(1, "again", "s", "h", 1).await,
        Err(vela_control_plane::DbError::Conflict)
    ));
    let p2 = db.insert_partner("two", "salt", "hash", 2).await.unwrap();
    assert_eq!(p2, 2);
    assert!(db.rotate_partner_secret(p2, "s2", "h2", 3).await.unwrap());
    let p = db.get_partner(p2).await.unwrap().unwrap();
    assert_eq!((p.secret_gen, p.secret_hash.as_str()), (2, "h2"));
    assert_eq!(db.list_partners(10, 0).await.unwrap().1, 2);

    // Entries.
    let a = entry(
        "0_aaaaaaaa",
        1,
        "live",
        "Cup final",
        &["football", "50%_off"],
        100,
    );
    let b = entry("0_bbbbbbbb", 1, "media", "Interview", &["talk"], 200);
    let c = entry("0_cccccccc", 2, "media", "Other tenant", &["football"], 300);
    db.insert_entry(&a).await.unwrap();
    db.insert_entries(&[b.clone(), c.clone()]).await.unwrap();
    assert_eq!(db.get_entry(1, "0_aaaaaaaa").await.unwrap().unwrap(), a);
    assert!(
        db.get_entry(2, "0_aaaaaaaa").await.unwrap().is_none(),
        "tenant scope"
    );
    assert!(matches!(
        db.insert_entry(&a).await,
        Err(vela_control_plane::DbError::Conflict)
    ));

    let f = |kind: Option<&str>, tag: Option<&str>| EntryFilter {
        kind: kind.map(Into::into),
        tag: tag.map(Into::into),
        limit: 10,
        ..Default::default()
    };
    let (v, total) = db.list_entries(1, &f(None, None)).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(v[0].id, "0_bbbbbbbb", "newest first");
    assert_eq!(
        db.list_entries(1, &f(Some("live"), None)).await.unwrap().1,
        1
    );
    assert_eq!(
        db.list_entries(1, &f(None, Some("football")))
            .await
            .unwrap()
            .1,
        1
    );
    assert_eq!(
        db.list_entries(1, &f(None, Some("foot"))).await.unwrap().1,
        0,
        "whole tags only"
    );
    assert_eq!(
        db.list_entries(1, &f(None, Some("50%_off")))
            .await
            .unwrap()
            .1,
        1
    );
    assert_eq!(
        db.list_entries(1, &f(None, Some("%"))).await.unwrap().1,
        0,
        "LIKE metacharacters escaped"
    );
    assert_eq!(
        db.list_entries(1, &f(None, Some("' OR 1=1 --")))
            .await
            .unwrap()
            .1,
        0
    );
    let mut by_name = f(None, None);
    by_name.order = EntryOrder::NameAsc;
    by_name.category = Some("sports>football".into());
    by_name.created_after = Some(150);
    let (v, total) = db.list_entries(1, &by_name).await.unwrap();
    assert_eq!((total, v[0].id.as_str()), (1, "0_bbbbbbbb"));
    let mut paged = f(None, None);
    paged.limit = 1;
    paged.offset = 1;
    let (v, total) = db.list_entries(1, &paged).await.unwrap();
    assert_eq!((total, v.len(), v[0].id.as_str()), (2, 1, "0_aaaaaaaa"));

    // Stream keys, status, update, delete.
    assert_eq!(
        db.entry_by_stream_key_hash("hash-0_aaaaaaaa")
            .await
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    assert!(db.has_live_entries().await.unwrap());
    assert_eq!(
        db.set_entry_status("0_aaaaaaaa", "live", 400)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        db.get_entry(1, "0_aaaaaaaa").await.unwrap().unwrap().status,
        "live"
    );
    assert_eq!(
        db.set_entry_status("0_bbbbbbbb", "live", 400)
            .await
            .unwrap(),
        None,
        "media entries have no live status"
    );
    let mut b2 = b.clone();
    b2.name = "Renamed".into();
    b2.metadata.insert("x".into(), serde_json::json!("y"));
    assert!(db.update_entry(&b2).await.unwrap());
    assert_eq!(db.get_entry(1, &b.id).await.unwrap().unwrap(), b2);
    let mut foreign = c.clone();
    foreign.partner_id = 1;
    assert!(
        !db.update_entry(&foreign).await.unwrap(),
        "cannot update another tenant's entry"
    );
    assert!(!db.delete_entry(1, &c.id, 500).await.unwrap());
    assert!(db.delete_entry(2, &c.id, 500).await.unwrap());
    let ids = vec![
        "0_bbbbbbbb".to_string(),
        "0_aaaaaaaa".to_string(),
        "0_cccccccc".to_string(),
    ];
    let got: Vec<String> = db
        .entries_by_ids(1, &ids)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(got, vec!["0_bbbbbbbb", "0_aaaaaaaa"]);

    // Change log: one row per write, in order.
    let ch = db.changes_since(0, 100).await.unwrap();
    assert_eq!(ch.len(), 6, "{ch:?}");
    assert!(ch.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(db.max_change_seq().await.unwrap(), ch.last().unwrap().0);
    assert_eq!(db.changes_since(ch[3].0, 100).await.unwrap().len(), 2);
    let all = db.entries_after("", 100).await.unwrap();
    assert_eq!(all.len(), 2);

    // Categories.
    use vela_control_plane::db::Category;
    let root = Category {
        id: 10,
        parent_id: None,
        name: "sports".into(),
        full_name: "sports".into(),
        created_at: 1,
        updated_at: 1,
    };
    let child = Category {
        id: 11,
        parent_id: Some(10),
        name: "football".into(),
        full_name: "sports>football".into(),
        created_at: 1,
        updated_at: 1,
    };
    db.insert_category(1, &root).await.unwrap();
    db.insert_category(1, &child).await.unwrap();
    assert!(matches!(
        db.insert_category(
            1,
            &Category {
                id: 12,
                ..child.clone()
            }
        )
        .await,
        Err(vela_control_plane::DbError::Conflict)
    ));
    assert_eq!(db.list_categories(1, None, 10, 0).await.unwrap().1, 2);
    assert_eq!(db.list_categories(1, Some(10), 10, 0).await.unwrap().1, 1);
    assert_eq!(db.list_categories(2, None, 10, 0).await.unwrap().1, 0);
    db.rename_category(1, 10, "sport", "sports", "sport", 2)
        .await
        .unwrap();
    assert_eq!(
        db.get_category(1, 11).await.unwrap().unwrap().full_name,
        "sport>football"
    );
    assert_eq!(db.delete_category(1, 10).await.unwrap(), Err(()));
    assert_eq!(db.delete_category(1, 11).await.unwrap(), Ok(true));
    assert_eq!(db.delete_category(2, 10).await.unwrap(), Ok(false));

    // Flavor params and conversion profiles; partner 0 holds the shipped default.
    use vela_control_plane::encoding::{ConversionProfile, FlavorParams, FlavorRecipe};
    let system = db.get_profile(1, 1).await.unwrap().unwrap();
    assert_eq!(
        (
            system.partner_id,
            system.is_default,
            system.flavor_params_ids.clone()
        ),
        (0, true, vec![1, 2, 3, 4])
    );
    let system = db.resolve_profile(1, system).await.unwrap();
    let names: Vec<&str> = system
        .flavors
        .iter()
        .map(|f| f.recipe.name.as_str())
        .collect();
    assert_eq!(names, ["source", "720p", "480p", "360p"]);
    assert!(system.flavors[0].recipe.source);
    let flavor = FlavorParams {
        id: 55,
        partner_id: 1,
        recipe: FlavorRecipe {
            source: false,
            height: Some(720),
            video_bitrate_kbps: Some(3000),
            ..FlavorRecipe::source("720p")
        },
        created_at: 1,
        updated_at: 1,
    };
    db.insert_flavor(1, &flavor).await.unwrap();
    assert_eq!(db.get_flavor(1, 55).await.unwrap().unwrap(), flavor);
    assert!(db.get_flavor(2, 55).await.unwrap().is_none());
    assert_eq!(db.list_flavors(1, 10, 0).await.unwrap().1, 5);
    assert!(!db.update_flavor(2, &flavor).await.unwrap());
    let prof = ConversionProfile {
        id: 77,
        partner_id: 1,
        name: "ladder".into(),
        description: String::new(),
        is_default: false,
        flavor_params_ids: vec![1, 55],
        flavors: Vec::new(),
        created_at: 1,
        updated_at: 1,
    };
    db.insert_profile(1, &prof).await.unwrap();
    assert_eq!(db.get_profile(1, 77).await.unwrap().unwrap(), prof);
    assert!(db.get_profile(2, 77).await.unwrap().is_none());
    assert!(!db.update_profile(2, &prof).await.unwrap());
    assert!(db.flavor_in_use(1, 55).await.unwrap());
    let resolved = db.resolve_profile(1, prof).await.unwrap();
    assert_eq!(resolved.flavors.len(), 2);
    assert_eq!(db.list_profiles(1, 10, 0).await.unwrap().1, 2);
    assert_eq!(db.profile_partner(77).await.unwrap(), Some(1));
    assert!(db.delete_profile(1, 77).await.unwrap());
    assert!(!db.flavor_in_use(1, 55).await.unwrap());
    assert!(db.delete_flavor(1, 55).await.unwrap());
    assert!(!db.delete_flavor(1, 1).await.unwrap());
}

#[tokio::test]
async fn repository_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), None).await.unwrap();
    suite(db).await;
    // Migrations are idempotent on reopen.
    let db = Db::open(dir.path(), None).await.unwrap();
    assert_eq!(db.list_partners(10, 0).await.unwrap().1, 2);
}

#[tokio::test]
async fn repository_postgres() {
    let url = common::fresh_pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Some(&url)).await.unwrap();
    assert_eq!(db.backend(), vela_control_plane::db::Backend::Postgres);
    suite(db).await;
    let db = Db::open(dir.path(), Some(&url)).await.unwrap();
    assert_eq!(db.list_partners(10, 0).await.unwrap().1, 2);
}
