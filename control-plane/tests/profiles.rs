//! Flavor params and conversion profiles through the API: the shipped default,
//! CRUD, per-partner isolation, read-only system objects, absurd values refused
//! with the JSON error shape, entries naming a profile, the ladder the media side
//! reads.

mod common;

use axum::http::StatusCode;
use common::{app, assert_error_shape};
use serde_json::json;

#[tokio::test]
async fn default_profile_ships() {
    let a = app().await;
    let tok = a.admin_token().await;
    let (s, p) = a
        .call("GET", "/api/v1/conversion-profiles/1", Some(&tok), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["is_default"], true);
    assert_eq!(p["flavor_params_ids"], json!([1, 2, 3, 4]));
    let names: Vec<&str> = p["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["source", "720p", "480p", "360p"]);
    assert_eq!(p["flavors"][0]["source"], true);
    assert_eq!(p["flavors"][1]["height"], 720);
    let (_, l) = a
        .call("GET", "/api/v1/flavor-params", Some(&tok), None)
        .await;
    assert_eq!(l["total_count"], 4);
    // The media side reads the same ladder.
    let ladder = a.cp.profile_recipes_unscoped(1).await.unwrap().unwrap();
    assert_eq!(ladder.len(), 4);
    assert!(ladder[0].source);
    assert_eq!(ladder[3].height, Some(360));
    assert!(a
        .cp
        .profile_recipes_unscoped(424242)
        .await
        .unwrap()
        .is_none());
    // Nobody changes the system's objects.
    for (m, path, body) in [
        (
            "PATCH",
            "/api/v1/conversion-profiles/1",
            json!({"name":"mine"}),
        ),
        ("DELETE", "/api/v1/conversion-profiles/1", json!(null)),
        (
            "PATCH",
            "/api/v1/flavor-params/2",
            json!({"name":"x","height":100,"video_bitrate_kbps":100}),
        ),
        ("DELETE", "/api/v1/flavor-params/2", json!(null)),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (s, v) = a.call(m, path, Some(&tok), body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{m} {path}: {v}");
        assert_error_shape(s, &v);
    }
}

#[tokio::test]
async fn flavors_and_profiles_crud() {
    let a = app().await;
    let root = a.admin_token().await;
    let (_, t1, _) = a.partner(&root, "one").await;
    let (_, t2, _) = a.partner(&root, "two").await;
    let (s, f) = a
        .call(
            "POST",
            "/api/v1/flavor-params",
            Some(&t1),
            Some(json!({"name":"540p","height":540,"video_bitrate_kbps":1800,
                "max_rate_kbps":2200,"buffer_kbits":4400,"frame_rate":30,"profile":"main",
                "level":"3.1","audio_bitrate_kbps":96,"audio_channels":2})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    let fid = f["id"].as_i64().unwrap();
    assert_eq!(f["video_codec"], "h264");
    let (s, p) = a
        .call(
            "POST",
            "/api/v1/conversion-profiles",
            Some(&t1),
            Some(json!({"name":"mine","flavor_params_ids":[1, fid, 4]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_i64().unwrap();
    assert_eq!(p["flavors"][1]["height"], 540);
    // Another partner sees neither.
    for path in [
        format!("/api/v1/flavor-params/{fid}"),
        format!("/api/v1/conversion-profiles/{pid}"),
    ] {
        assert_eq!(
            a.call("GET", &path, Some(&t2), None).await.0,
            StatusCode::NOT_FOUND
        );
    }
    let (s, _) = a
        .call(
            "POST",
            "/api/v1/conversion-profiles",
            Some(&t2),
            Some(json!({"name":"theirs","flavor_params_ids":[fid]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // A flavor in use is not deleted; the profile's ladder changes by PATCH.
    let (s, _) = a
        .call(
            "DELETE",
            &format!("/api/v1/flavor-params/{fid}"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, p) = a
        .call(
            "PATCH",
            &format!("/api/v1/conversion-profiles/{pid}"),
            Some(&t1),
            Some(json!({"flavors":[{"name":"src","source":true},
                {"name":"240p","height":240,"video_bitrate_kbps":400}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["flavors"].as_array().unwrap().len(), 2);
    assert_eq!(p["flavors"][1]["name"], "240p");
    // An entry names the profile; another partner's entry may not.
    let (s, e) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&t1),
            Some(json!({"type":"live","name":"show","conversion_profile_id":pid})),
        )
        .await;
    assert_eq!(
        (s, e["conversion_profile_id"].as_i64()),
        (StatusCode::CREATED, Some(pid))
    );
    let (s, _) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&t2),
            Some(json!({"type":"live","name":"show","conversion_profile_id":pid})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, e) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&t2),
            Some(json!({"type":"media","name":"vod","conversion_profile_id":1})),
        )
        .await;
    assert_eq!(
        (s, e["conversion_profile_id"].as_i64()),
        (StatusCode::CREATED, Some(1))
    );
    let (s, f2) = a
        .call(
            "PATCH",
            &format!("/api/v1/flavor-params/{fid}"),
            Some(&t1),
            Some(json!({"name":"576p","height":576,"video_bitrate_kbps":2000})),
        )
        .await;
    assert_eq!((s, f2["height"].as_i64()), (StatusCode::OK, Some(576)));
    let (s, _) = a
        .call(
            "DELETE",
            &format!("/api/v1/flavor-params/{fid}"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = a
        .call(
            "DELETE",
            &format!("/api/v1/conversion-profiles/{pid}"),
            Some(&t1),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn absurd_values_are_refused() {
    let a = app().await;
    let tok = a.admin_token().await;
    let rung = |extra: serde_json::Value| {
        let mut v = json!({"name":"r","height":360,"video_bitrate_kbps":800});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    for bad in [
        rung(json!({"height":0})),
        rung(json!({"height":100000})),
        rung(json!({"width":100000})),
        rung(json!({"video_bitrate_kbps":-800})),
        rung(json!({"video_bitrate_kbps":0})),
        rung(json!({"max_rate_kbps":100})),
        rung(json!({"audio_bitrate_kbps":-1})),
        rung(json!({"frame_rate":1000})),
        rung(json!({"profile":"ultra"})),
        rung(json!({"video_codec":"mpeg2"})),
        rung(json!({"unknown":1})),
        json!({"name":"s","source":true,"height":360}),
        json!({"name":"r","video_bitrate_kbps":800}),
    ] {
        let (s, v) = a
            .call(
                "POST",
                "/api/v1/flavor-params",
                Some(&tok),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_error_shape(s, &v);
    }
    let hundred: Vec<serde_json::Value> = (0..100).map(|_| rung(json!({}))).collect();
    let hundred_ids: Vec<i64> = (0..100).map(|_| 2).collect();
    for bad in [
        json!({"name":"p","flavors":hundred}),
        json!({"name":"p","flavor_params_ids":hundred_ids}),
        json!({"name":"p","flavor_params_ids":[]}),
        json!({"name":"p","flavor_params_ids":[2, 2]}),
        json!({"name":"p","flavor_params_ids":[999]}),
        json!({"name":"p"}),
        json!({"name":"p","flavor_params_ids":[2],"flavors":[rung(json!({}))]}),
        json!({"name":"p","flavors":[rung(json!({})), rung(json!({"height":0}))]}),
    ] {
        let (s, v) = a
            .call(
                "POST",
                "/api/v1/conversion-profiles",
                Some(&tok),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_error_shape(s, &v);
    }
    // A refused inline ladder stored nothing.
    let (_, l) = a
        .call("GET", "/api/v1/flavor-params", Some(&tok), None)
        .await;
    assert_eq!(l["total_count"], 4);
}
