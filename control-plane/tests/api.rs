//! Handler tests through `oneshot`: sessions, entries, errors, tenant isolation, search,
//! categories, conversion profiles, OpenAPI, key-mode publishing.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{app, app_with, assert_error_shape};
use serde_json::json;
use vela_control_plane::{PublishGrant, PublishMode, PublishRefusal};

#[tokio::test]
async fn admin_secret_file_and_sessions() {
    let a = app().await;
    let path = a.dir.path().join("admin-secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let secret = a.admin_secret();
    assert_eq!(secret.len(), 64);
    // The secret is not stored in clear in the database.
    let db = std::fs::read(a.dir.path().join("vela.db")).unwrap();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));

    let (s, v) = a
        .call(
            "POST",
            "/api/v1/sessions",
            None,
            Some(json!({"partner_id":1,"secret":secret,"role":"admin","expiry_s":3600})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["token"].is_string());
    for bad in [
        json!({"partner_id":1,"secret":"wrong","role":"admin"}),
        json!({"partner_id":99,"secret":secret,"role":"admin"}),
        json!({"partner_id":-1,"secret":secret}),
    ] {
        let (s, v) = a.call("POST", "/api/v1/sessions", None, Some(bad)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_error_shape(s, &v);
    }
    for bad in [
        json!({"partner_id":"1","secret":secret}),
        json!({"partner_id":1,"secret":secret,"extra":true}),
        json!({"partner_id":1,"secret":secret,"role":"god"}),
        json!({"partner_id":1,"secret":secret,"expiry_s":0}),
        json!({"partner_id":1,"secret":secret,"expiry_s":99999999999i64}),
        json!([1, 2]),
    ] {
        let (s, v) = a.call("POST", "/api/v1/sessions", None, Some(bad)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_error_shape(s, &v);
    }
}

#[tokio::test]
async fn tokens_forged_tampered_expired_revoked() {
    let a = app().await;
    let tok = a.admin_token().await;
    let (s, _) = a.call("GET", "/api/v1/entries", Some(&tok), None).await;
    assert_eq!(s, StatusCode::OK);
    let mut tampered = tok.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let forged_body = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = b64.encode(br#"{"v":1,"p":1,"g":1,"u":"","r":"admin","e":99999999999,"pv":[]}"#);
        format!("{body}.{}", tok.split_once('.').unwrap().1)
    };
    for bad in [
        None,
        Some("garbage"),
        Some(tampered.as_str()),
        Some(forged_body.as_str()),
        Some("a.b"),
        Some(""),
    ] {
        let (s, v) = a.call("GET", "/api/v1/entries", bad, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_error_shape(s, &v);
    }
    // Non-bearer and non-ASCII headers.
    let req = Request::builder()
        .uri("/api/v1/entries")
        .header("authorization", "Basic abc")
        .body(Body::empty())
        .unwrap();
    assert_eq!(a.call_raw(req).await.0, StatusCode::UNAUTHORIZED);
    let req = Request::builder()
        .uri("/api/v1/entries")
        .header("authorization", &b"Bearer \xff\xfe"[..])
        .body(Body::empty())
        .unwrap();
    assert_eq!(a.call_raw(req).await.0, StatusCode::UNAUTHORIZED);

    // Expired: a 1-second token.
    let secret = a.admin_secret();
    let (_, v) = a
        .call(
            "POST",
            "/api/v1/sessions",
            None,
            Some(json!({"partner_id":1,"secret":secret,"expiry_s":1})),
        )
        .await;
    let short = v["token"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, v) = a.call("GET", "/api/v1/entries", Some(&short), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));

    // Revocation: regenerating the partner's secret invalidates its tokens.
    let (pid, ptok, _) = a.partner(&tok, "acme").await;
    let (s, v) = a
        .call(
            "POST",
            &format!("/api/v1/partners/{pid}/regenerate-secret"),
            Some(&ptok),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new_secret = v["secret"].as_str().unwrap().to_string();
    let (s, _) = a.call("GET", "/api/v1/entries", Some(&ptok), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "old token revoked");
    let ptok2 = a.session(pid, &new_secret, "admin", json!([])).await;
    assert_eq!(
        a.call("GET", "/api/v1/entries", Some(&ptok2), None).await.0,
        StatusCode::OK
    );
    // The root admin's token is unaffected.
    assert_eq!(
        a.call("GET", "/api/v1/entries", Some(&tok), None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn entries_crud_list_and_bad_input() {
    let a = app().await;
    let tok = a.admin_token().await;
    let (s, live) = a
        .call("POST", "/api/v1/entries", Some(&tok), Some(json!({"type":"live","name":"Cup final","description":"the match","tags":["football","final"],"categories":["sports>football"],"metadata":{"venue":"Wembley"},"dvr_window_s":1800,"recording":true,"drm":{"hls":"aes-128","dash":"cenc","mss":"none"}})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{live}");
    let id = live["id"].as_str().unwrap().to_string();
    let key = live["stream_key"].as_str().unwrap().to_string();
    assert_eq!(live["status"], "offline");
    assert_eq!(live["type"], "live");
    assert_eq!(live["dvr_window_s"], 1800);
    assert_eq!(live["recording"], true);
    assert_eq!(live["drm"]["hls"], "aes-128");
    assert_eq!(
        live["playback"]["hls"],
        format!("http://media.test:8080/live/{id}/master.m3u8")
    );
    assert_eq!(
        live["playback"]["dash"],
        format!("http://media.test:8080/live/{id}/manifest.mpd")
    );
    assert_eq!(
        live["playback"]["mss"],
        format!("http://media.test:8080/live/{id}/Manifest")
    );
    assert_eq!(
        live["publish"]["rtmp"],
        format!("rtmp://media.test:1935/live/{key}")
    );
    assert_eq!(
        live["publish"]["whip"],
        format!("http://media.test:8080/whip/{key}")
    );
    // The stream key is not stored in clear.
    let db = std::fs::read(a.dir.path().join("vela.db")).unwrap();
    let wal = std::fs::read(a.dir.path().join("vela.db-wal")).unwrap_or_default();
    assert!(!db
        .windows(key.len())
        .chain(wal.windows(key.len()))
        .any(|w| w == key.as_bytes()));

    let (s, media) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&tok),
            Some(json!({"type":"media","name":"Interview","tags":["talk"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(media.get("stream_key").is_none() && media.get("playback").is_none());
    let mid = media["id"].as_str().unwrap().to_string();

    let (s, got) = a
        .call("GET", &format!("/api/v1/entries/{id}"), Some(&tok), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["stream_key"], key);
    assert_eq!(got["metadata"]["venue"], "Wembley");

    let (s, p) = a
        .call(
            "PATCH",
            &format!("/api/v1/entries/{mid}"),
            Some(&tok),
            Some(json!({"name":"Long interview","status":"ready","duration_s":61.5})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        (p["name"].as_str(), p["status"].as_str()),
        (Some("Long interview"), Some("ready"))
    );
    let (s, _) = a
        .call(
            "PATCH",
            &format!("/api/v1/entries/{id}"),
            Some(&tok),
            Some(json!({"status":"live"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "live status is not writable"
    );

    // List: filters, sort, paging.
    let (s, l) = a
        .call(
            "GET",
            "/api/v1/entries?page_size=1&sort=name",
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(l["total_count"], 2);
    assert_eq!(l["objects"][0]["name"], "Cup final");
    let (_, l) = a
        .call("GET", "/api/v1/entries?type=live", Some(&tok), None)
        .await;
    assert_eq!(l["total_count"], 1);
    let (_, l) = a
        .call(
            "GET",
            "/api/v1/entries?tag=talk&status=ready",
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(l["total_count"], 1);
    let (_, l) = a
        .call(
            "GET",
            "/api/v1/entries?category=sports%3Efootball",
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(l["total_count"], 1);
    let (_, l) = a
        .call(
            "GET",
            "/api/v1/entries?created_after=4000000000",
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(l["total_count"], 0);

    // Regenerate the key.
    let (s, r) = a
        .call(
            "POST",
            &format!("/api/v1/entries/{id}/regenerate-key"),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(r["stream_key"], key);
    let (s, _) = a
        .call(
            "POST",
            &format!("/api/v1/entries/{mid}/regenerate-key"),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Bad input: always a 4xx with the error shape.
    let long = "x".repeat(300);
    let bad_bodies = [
        json!({"type":"live"}),
        json!({"type":"vod","name":"x"}),
        json!({"type":"live","name":""}),
        json!({"type":"live","name":long}),
        json!({"type":"live","name":"x","unknown":1}),
        json!({"type":"live","name":123}),
        json!({"type":"live","name":"x","tags":"notalist"}),
        json!({"type":"live","name":"x","metadata":[1]}),
        json!({"type":"live","name":"nul\u{0}"}),
        json!({"type":"live","name":"x","drm":{"hls":"rot13"}}),
        json!({"type":"live","name":"x","dvr_window_s":-1}),
        json!({"type":"live","name":"x","dvr_window_s":99999999}),
        json!({"type":"live","name":"x","conversion_profile_id":42}),
        json!({"type":"media","name":"x","duration_s":-3}),
    ];
    for b in bad_bodies {
        let (s, v) = a
            .call("POST", "/api/v1/entries", Some(&tok), Some(b.clone()))
            .await;
        assert_error_shape(s, &v);
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    }
    for raw in [
        "{",
        "nope",
        "{\"type\":\"live\",\"name\":\"x\"} trailing",
        "",
    ] {
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/entries")
            .header("authorization", format!("Bearer {tok}"))
            .header("content-type", "application/json")
            .body(Body::from(raw))
            .unwrap();
        let (s, v) = a.call_raw(req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{raw}");
        assert_error_shape(s, &v);
    }
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/entries")
        .header("authorization", format!("Bearer {tok}"))
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(a.call_raw(req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = format!(
        "{{\"type\":\"live\",\"name\":\"{}\"}}",
        "a".repeat(1_000_000)
    );
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/entries")
        .header("authorization", format!("Bearer {tok}"))
        .header("content-type", "application/json")
        .body(Body::from(huge))
        .unwrap();
    let (s, v) = a.call_raw(req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_shape(s, &v);

    for path in [
        "/api/v1/entries/nope",
        "/api/v1/entries/0_ZZZZZZZZ",
        "/api/v1/entries/'%20OR%201=1--",
        "/api/v1/entries/0_zzzzzzzz",
        "/api/v1/categories/abc",
        "/api/v1/categories/-5",
        "/api/v1/conversion-profiles/99999999999999999999999",
        "/api/v1/nothing-here",
    ] {
        let (s, v) = a.call("GET", path, Some(&tok), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert_error_shape(s, &v);
    }
    for q in [
        "page=0",
        "page_size=100000",
        "page=abc",
        "type=vod",
        "sort=password",
        "created_after=x",
    ] {
        let (s, v) = a
            .call("GET", &format!("/api/v1/entries?{q}"), Some(&tok), None)
            .await;
        assert_error_shape(s, &v);
    }
    let (s, v) = a.call("PUT", "/api/v1/entries", Some(&tok), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error_shape(s, &v);

    // Delete.
    assert_eq!(
        a.call(
            "DELETE",
            &format!("/api/v1/entries/{mid}"),
            Some(&tok),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        a.call("GET", &format!("/api/v1/entries/{mid}"), Some(&tok), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.call(
            "DELETE",
            &format!("/api/v1/entries/{mid}"),
            Some(&tok),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

async fn tenant_isolation_on(a: common::App) {
    let root = a.admin_token().await;
    let (_, t1, _) = a.partner(&root, "one").await;
    let (p2, t2, _) = a.partner(&root, "two").await;
    let (_, e1) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&t1),
            Some(json!({"type":"live","name":"secret plans","tags":["private"]})),
        )
        .await;
    let id1 = e1["id"].as_str().unwrap().to_string();
    let (_, e2) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&t2),
            Some(json!({"type":"media","name":"public plans"})),
        )
        .await;
    let (_, c1) = a
        .call(
            "POST",
            "/api/v1/categories",
            Some(&t1),
            Some(json!({"name":"mine"})),
        )
        .await;
    let cid = c1["id"].as_i64().unwrap();

    // Partner two can neither read, list, search nor change partner one's data.
    assert_eq!(
        a.call("GET", &format!("/api/v1/entries/{id1}"), Some(&t2), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.call(
            "PATCH",
            &format!("/api/v1/entries/{id1}"),
            Some(&t2),
            Some(json!({"name":"pwned"}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.call("DELETE", &format!("/api/v1/entries/{id1}"), Some(&t2), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.call(
            "POST",
            &format!("/api/v1/entries/{id1}/regenerate-key"),
            Some(&t2),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.call("GET", &format!("/api/v1/categories/{cid}"), Some(&t2), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, l) = a.call("GET", "/api/v1/entries", Some(&t2), None).await;
    assert_eq!(l["total_count"], 1);
    assert_eq!(l["objects"][0]["id"], e2["id"]);
    let (_, l) = a
        .call("GET", "/api/v1/entries?tag=private", Some(&t2), None)
        .await;
    assert_eq!(l["total_count"], 0);
    let (_, s) = a
        .call("GET", "/api/v1/search?q=plans", Some(&t2), None)
        .await;
    assert_eq!(s["total_count"], 1, "{s}");
    assert_eq!(s["objects"][0]["entry"]["id"], e2["id"]);
    let (_, s) = a
        .call("GET", "/api/v1/search?q=secret", Some(&t2), None)
        .await;
    assert_eq!(s["total_count"], 0);
    let (_, cl) = a.call("GET", "/api/v1/categories", Some(&t2), None).await;
    assert_eq!(cl["total_count"], 0);
    // Partners: no listing, no peeking, no regenerating another's secret.
    assert_eq!(
        a.call("GET", "/api/v1/partners", Some(&t2), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.call(
            "POST",
            "/api/v1/partners",
            Some(&t2),
            Some(json!({"name":"x"}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.call("GET", "/api/v1/partners/2", Some(&t2), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.call(
            "POST",
            "/api/v1/partners/2/regenerate-secret",
            Some(&t2),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.call("GET", &format!("/api/v1/partners/{p2}"), Some(&t2), None)
            .await
            .0,
        StatusCode::OK
    );
    // The entry is intact for its owner.
    let (s, e) = a
        .call("GET", &format!("/api/v1/entries/{id1}"), Some(&t1), None)
        .await;
    assert_eq!(
        (s, e["name"].as_str()),
        (StatusCode::OK, Some("secret plans"))
    );
}

#[tokio::test]
async fn tenant_isolation_sqlite() {
    tenant_isolation_on(app().await).await;
}

#[tokio::test]
async fn tenant_isolation_postgres() {
    let url = common::fresh_pg_database().await;
    tenant_isolation_on(app_with(Some(url), PublishMode::Auto).await).await;
}

#[tokio::test]
async fn user_privileges() {
    let a = app().await;
    let root = a.admin_token().await;
    let (_, e) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&root),
            Some(json!({"type":"live","name":"one"})),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_string();
    let (_, e2) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&root),
            Some(json!({"type":"live","name":"two"})),
        )
        .await;
    let id2 = e2["id"].as_str().unwrap().to_string();
    let secret = a.admin_secret();
    let viewer = a
        .session(1, &secret, "user", json!([format!("view:{id}")]))
        .await;
    let (s, v) = a
        .call("GET", &format!("/api/v1/entries/{id}"), Some(&viewer), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.get("stream_key").is_none(), "viewers do not see the key");
    assert_eq!(
        a.call(
            "GET",
            &format!("/api/v1/entries/{id2}"),
            Some(&viewer),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.call(
            "PATCH",
            &format!("/api/v1/entries/{id}"),
            Some(&viewer),
            Some(json!({"name":"x"}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.call("GET", "/api/v1/entries", Some(&viewer), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.call(
            "POST",
            "/api/v1/entries",
            Some(&viewer),
            Some(json!({"type":"live","name":"x"}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let editor = a
        .session(1, &secret, "user", json!([format!("edit:{id2}")]))
        .await;
    assert_eq!(
        a.call(
            "PATCH",
            &format!("/api/v1/entries/{id2}"),
            Some(&editor),
            Some(json!({"name":"y"}))
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        a.call(
            "PATCH",
            &format!("/api/v1/entries/{id}"),
            Some(&editor),
            Some(json!({"name":"y"}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn search_ranking_filters_and_updates() {
    let a = app().await;
    let tok = a.admin_token().await;
    let mk = |body: serde_json::Value| {
        let tok = tok.clone();
        let a = &a;
        async move {
            let (s, v) = a
                .call("POST", "/api/v1/entries", Some(&tok), Some(body))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            v["id"].as_str().unwrap().to_string()
        }
    };
    let final_id = mk(json!({"type":"live","name":"Football cup final","description":"football football","tags":["football"],"categories":["sports>football"]})).await;
    let derby = mk(json!({"type":"media","name":"Derby","description":"a football match in the rain","tags":["derby"]})).await;
    let concert = mk(json!({"type":"media","name":"Concert","description":"music","metadata":{"artist":"Zappa","year":1974}})).await;
    let (s, r) = a
        .call("GET", "/api/v1/search?q=football", Some(&tok), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["total_count"], 2);
    assert_eq!(
        r["objects"][0]["entry"]["id"], final_id,
        "BM25 + name boost ranks the final first"
    );
    assert_eq!(r["objects"][1]["entry"]["id"], derby);
    assert!(
        r["objects"][0]["score"].as_f64().unwrap() > r["objects"][1]["score"].as_f64().unwrap()
    );
    // Metadata values, categories, tags.
    let (_, r) = a
        .call("GET", "/api/v1/search?q=zappa", Some(&tok), None)
        .await;
    assert_eq!(r["objects"][0]["entry"]["id"], concert);
    let (_, r) = a
        .call("GET", "/api/v1/search?q=1974", Some(&tok), None)
        .await;
    assert_eq!(r["total_count"], 1);
    let (_, r) = a
        .call("GET", "/api/v1/search?q=sports", Some(&tok), None)
        .await;
    assert_eq!(r["total_count"], 1);
    // Filters and paging.
    let (_, r) = a
        .call(
            "GET",
            "/api/v1/search?q=football&type=media",
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(
        (
            r["total_count"].as_i64(),
            r["objects"][0]["entry"]["id"].as_str()
        ),
        (Some(1), Some(derby.as_str()))
    );
    let (_, r) = a
        .call(
            "GET",
            "/api/v1/search?q=football&tag=derby",
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(r["total_count"], 1);
    let (_, r) = a
        .call(
            "GET",
            "/api/v1/search?q=football&page=2&page_size=1",
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(r["objects"][0]["entry"]["id"], derby);
    // AND of words.
    let (_, r) = a
        .call("GET", "/api/v1/search?q=football%20rain", Some(&tok), None)
        .await;
    assert_eq!(r["total_count"], 1);
    // Empty query with filters lists matching entries.
    let (_, r) = a
        .call("GET", "/api/v1/search?type=live", Some(&tok), None)
        .await;
    assert_eq!(r["total_count"], 1);
    // Query syntax and SQL metacharacters are just words.
    for q in [
        "name:foo",
        "%27%20OR%201=1%20--",
        "%22%3B%20DROP%20TABLE%20entries",
        "(((",
        "*",
    ] {
        let (s, v) = a
            .call("GET", &format!("/api/v1/search?q={q}"), Some(&tok), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{q}: {v}");
    }
    // Updates and deletes show at once.
    a.call(
        "PATCH",
        &format!("/api/v1/entries/{concert}"),
        Some(&tok),
        Some(json!({"name":"Football concert"})),
    )
    .await;
    let (_, r) = a
        .call("GET", "/api/v1/search?q=football", Some(&tok), None)
        .await;
    assert_eq!(r["total_count"], 3);
    a.call(
        "DELETE",
        &format!("/api/v1/entries/{derby}"),
        Some(&tok),
        None,
    )
    .await;
    let (_, r) = a
        .call("GET", "/api/v1/search?q=football", Some(&tok), None)
        .await;
    assert_eq!(r["total_count"], 2);
}

#[tokio::test]
async fn search_index_rebuilt_when_missing_or_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let a = common::app_in(dir, None, PublishMode::Auto).await;
    let tok = a.admin_token().await;
    a.call(
        "POST",
        "/api/v1/entries",
        Some(&tok),
        Some(json!({"type":"media","name":"Persistent penguin"})),
    )
    .await;
    let common::App { cp, router, dir } = a;
    drop(router);
    drop(cp);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    // Missing: delete the index.
    std::fs::remove_dir_all(path.join("search")).unwrap();
    let a = common::app_in(dir, None, PublishMode::Auto).await;
    let tok = a.admin_token().await;
    let (_, r) = a
        .call("GET", "/api/v1/search?q=penguin", Some(&tok), None)
        .await;
    assert_eq!(r["total_count"], 1, "rebuilt from the database");
    assert_eq!(a.cp.search_index().num_docs(), 1);
}

#[tokio::test]
async fn categories_and_profiles() {
    let a = app().await;
    let tok = a.admin_token().await;
    let (s, root) = a
        .call(
            "POST",
            "/api/v1/categories",
            Some(&tok),
            Some(json!({"name":"sports"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let rid = root["id"].as_i64().unwrap();
    let (s, child) = a
        .call(
            "POST",
            "/api/v1/categories",
            Some(&tok),
            Some(json!({"name":"football","parent_id":rid})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(child["full_name"], "sports>football");
    let (s, _) = a
        .call(
            "POST",
            "/api/v1/categories",
            Some(&tok),
            Some(json!({"name":"football","parent_id":rid})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = a
        .call(
            "POST",
            "/api/v1/categories",
            Some(&tok),
            Some(json!({"name":"a>b"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, l) = a
        .call(
            "GET",
            &format!("/api/v1/categories?parent_id={rid}"),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(l["total_count"], 1);
    let (s, r) = a
        .call(
            "PATCH",
            &format!("/api/v1/categories/{rid}"),
            Some(&tok),
            Some(json!({"name":"sport"})),
        )
        .await;
    assert_eq!(
        (s, r["full_name"].as_str()),
        (StatusCode::OK, Some("sport"))
    );
    let (_, c) = a
        .call(
            "GET",
            &format!("/api/v1/categories/{}", child["id"]),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(c["full_name"], "sport>football");
    assert_eq!(
        a.call(
            "DELETE",
            &format!("/api/v1/categories/{rid}"),
            Some(&tok),
            None
        )
        .await
        .0,
        StatusCode::CONFLICT
    );

    let ladder = json!({"name":"default","flavors":[
        {"name":"1080p","video_codec":"h264","audio_codec":"aac","width":1920,"height":1080,"video_bitrate_kbps":6000,"audio_bitrate_kbps":128,"frame_rate":30.0,"gop_frames":60},
        {"name":"360p","video_codec":"h264","audio_codec":"aac","width":640,"height":360,"video_bitrate_kbps":800,"audio_bitrate_kbps":96,"frame_rate":30.0,"gop_frames":60}]});
    let (s, p) = a
        .call(
            "POST",
            "/api/v1/conversion-profiles",
            Some(&tok),
            Some(ladder),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_i64().unwrap();
    let (s, e) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&tok),
            Some(json!({"type":"live","name":"x","conversion_profile_id":pid})),
        )
        .await;
    assert_eq!(
        (s, e["conversion_profile_id"].as_i64()),
        (StatusCode::CREATED, Some(pid))
    );
    let (s, _) = a.call("POST", "/api/v1/conversion-profiles", Some(&tok), Some(json!({"name":"bad","flavors":[{"name":"x","video_codec":"mpeg1","audio_codec":"aac","width":1,"height":1,"video_bitrate_kbps":1,"audio_bitrate_kbps":1,"frame_rate":0.0,"gop_frames":0}]}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, p2) = a
        .call(
            "PATCH",
            &format!("/api/v1/conversion-profiles/{pid}"),
            Some(&tok),
            Some(json!({"name":"renamed"})),
        )
        .await;
    assert_eq!(
        (
            s,
            p2["name"].as_str(),
            p2["flavors"].as_array().map(|v| v.len())
        ),
        (StatusCode::OK, Some("renamed"), Some(2))
    );
    let (_, l) = a
        .call("GET", "/api/v1/conversion-profiles", Some(&tok), None)
        .await;
    // The shipped default and this one.
    assert_eq!(l["total_count"], 2);
    assert_eq!(
        a.call(
            "DELETE",
            &format!("/api/v1/conversion-profiles/{pid}"),
            Some(&tok),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn openapi_document() {
    let a = app().await;
    let (s, doc) = a.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for p in [
        "/api/v1/sessions",
        "/api/v1/entries",
        "/api/v1/entries/{id}",
        "/api/v1/search",
        "/api/v1/entries/{id}/regenerate-key",
        "/api/v1/categories",
        "/api/v1/conversion-profiles",
        "/api/v1/flavor-params/{id}",
        "/api/v1/partners",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing");
    }
    assert!(doc["components"]["schemas"]["Entry"]["properties"]["dvr_window_s"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn publish_modes() {
    // Auto: open while no live entry exists, keys afterwards.
    let a = app().await;
    assert_eq!(
        a.cp.authorize_publish("live", "anything").await,
        Ok(PublishGrant {
            stream_name: "anything".into(),
            entry_id: None
        })
    );
    let tok = a.admin_token().await;
    let (_, e) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&tok),
            Some(json!({"type":"live","name":"ch1"})),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_string();
    let key = e["stream_key"].as_str().unwrap().to_string();
    assert_eq!(
        a.cp.authorize_publish("live", "anything").await,
        Err(PublishRefusal::UnknownKey)
    );
    assert_eq!(
        a.cp.authorize_publish("other", &key).await,
        Err(PublishRefusal::WrongApp("other".into()))
    );
    assert_eq!(
        a.cp.authorize_publish("live", &key).await,
        Ok(PublishGrant {
            stream_name: id.clone(),
            entry_id: Some(id.clone())
        })
    );
    assert_eq!(
        a.cp.authorize_publish("live", "").await,
        Err(PublishRefusal::MalformedKey)
    );
    a.cp.publish_started(&id).await;
    let (_, g) = a
        .call("GET", &format!("/api/v1/entries/{id}"), Some(&tok), None)
        .await;
    assert_eq!(g["status"], "live");
    let (_, r) = a
        .call("GET", "/api/v1/search?status=live", Some(&tok), None)
        .await;
    assert_eq!(r["total_count"], 1);
    a.cp.publish_stopped(&id).await;
    let (_, g) = a
        .call("GET", &format!("/api/v1/entries/{id}"), Some(&tok), None)
        .await;
    assert_eq!(g["status"], "offline");
    // Regenerated key: the old one is refused.
    let (_, r) = a
        .call(
            "POST",
            &format!("/api/v1/entries/{id}/regenerate-key"),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(
        a.cp.authorize_publish("live", &key).await,
        Err(PublishRefusal::UnknownKey)
    );
    assert!(a
        .cp
        .authorize_publish("live", r["stream_key"].as_str().unwrap())
        .await
        .is_ok());
    // The media side can read the entry's settings.
    let e = a.cp.entry(&id).await.unwrap().unwrap();
    assert_eq!(e.dvr_window_s, 7200);

    // Open and Keys modes.
    let o = app_with(None, PublishMode::Open).await;
    assert!(o.cp.authorize_publish("live", "k").await.is_ok());
    let k = app_with(None, PublishMode::Keys).await;
    assert_eq!(
        k.cp.authorize_publish("live", "k").await,
        Err(PublishRefusal::UnknownKey)
    );
}

/// Two control planes (as two nodes would) on one PostgreSQL: what one writes, the other
/// finds through search, and tokens issued by one are accepted by the other.
#[tokio::test]
async fn two_nodes_share_postgres() {
    let url = common::fresh_pg_database().await;
    let a = app_with(Some(url.clone()), PublishMode::Auto).await;
    let b = app_with(Some(url), PublishMode::Auto).await;
    let tok = a.admin_token().await;
    let (s, e) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&tok),
            Some(json!({"type":"live","name":"Shared nebula","tags":["astro"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = e["id"].as_str().unwrap().to_string();
    let (s, r) = b
        .call("GET", "/api/v1/search?q=nebula", Some(&tok), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        r["objects"][0]["entry"]["id"], id,
        "node B finds node A's write at once"
    );
    b.call(
        "PATCH",
        &format!("/api/v1/entries/{id}"),
        Some(&tok),
        Some(json!({"name":"Shared galaxy"})),
    )
    .await;
    let (_, r) = a
        .call("GET", "/api/v1/search?q=galaxy", Some(&tok), None)
        .await;
    assert_eq!(r["total_count"], 1);
    let (_, r) = a
        .call("GET", "/api/v1/search?q=nebula", Some(&tok), None)
        .await;
    assert_eq!(r["total_count"], 0);
    // Key mode on node B for a key created on node A; status through B visible on A.
    let key = e["stream_key"].as_str().unwrap();
    assert_eq!(
        b.cp.authorize_publish("live", key)
            .await
            .unwrap()
            .entry_id
            .as_deref(),
        Some(id.as_str())
    );
    b.cp.publish_started(&id).await;
    let (_, g) = a
        .call("GET", &format!("/api/v1/entries/{id}"), Some(&tok), None)
        .await;
    assert_eq!(g["status"], "live");
    // A partner created on A can log in on B at once.
    let (pid, _, secret) = a.partner(&tok, "late").await;
    let t = b.session(pid, &secret, "admin", json!([])).await;
    assert_eq!(
        b.call("GET", "/api/v1/entries", Some(&t), None).await.0,
        StatusCode::OK
    );
}
