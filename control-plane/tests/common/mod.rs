//! Shared test helpers: a real PostgreSQL (scripts/pg-test-server or VELA_TEST_PG_URL),
//! and a control plane with its router driven through `oneshot`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use vela_control_plane::{ControlPlane, ControlPlaneConfig, MediaConfig, PublishMode};

static PG_SERVER: OnceLock<String> = OnceLock::new();

/// URL of the test PostgreSQL server (started once per test binary; a watchdog stops it
/// when this process exits).
pub fn pg_server_url() -> String {
    PG_SERVER
        .get_or_init(|| {
            if let Ok(u) = std::env::var("VELA_TEST_PG_URL") {
                return u;
            }
            let script =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-test-server");
            let out = std::process::Command::new("bash")
                .arg(script)
                .arg("start")
                .arg("--owner-pid")
                .arg(std::process::id().to_string())
                .output()
                .expect("run scripts/pg-test-server");
            assert!(
                out.status.success(),
                "pg-test-server failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .last()
                .expect("a URL")
                .trim()
                .to_string()
        })
        .clone()
}

/// A fresh, empty database on the test server; returns its URL.
pub async fn fresh_pg_database() -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let server = pg_server_url();
    let name = format!("vela_test_{}", rand_suffix());
    let mut conn = sqlx::AnyConnection::connect(&server)
        .await
        .expect("connect to test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = server.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

pub fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n, std::process::id())
}

pub struct App {
    pub cp: ControlPlane,
    pub router: axum::Router,
    pub dir: tempfile::TempDir,
}

pub async fn app_with(database_url: Option<String>, mode: PublishMode) -> App {
    let dir = tempfile::tempdir().unwrap();
    app_in(dir, database_url, mode).await
}

pub async fn app_in(
    dir: tempfile::TempDir,
    database_url: Option<String>,
    mode: PublishMode,
) -> App {
    app_media(dir, database_url, mode, MediaConfig::default()).await
}

/// A control plane with a media configuration (upload limit, inspector).
pub async fn app_media(
    dir: tempfile::TempDir,
    database_url: Option<String>,
    mode: PublishMode,
    media: MediaConfig,
) -> App {
    let cp = ControlPlane::open(ControlPlaneConfig {
        data_dir: dir.path().to_path_buf(),
        database_url,
        publish_mode: mode,
        public_http_base: "http://media.test:8080".into(),
        public_rtmp_base: "rtmp://media.test:1935/live".into(),
        media,
    })
    .await
    .expect("open control plane");
    let router = cp.router();
    App { cp, router, dir }
}

pub async fn app() -> App {
    app_with(None, PublishMode::Auto).await
}

impl App {
    pub fn admin_secret(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("admin-secret"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub async fn call_raw(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        if bytes.is_empty() {
            return (status, Value::Null);
        }
        assert_eq!(
            ct.as_deref(),
            Some("application/json"),
            "body {:?}",
            String::from_utf8_lossy(&bytes)
        );
        (status, serde_json::from_slice(&bytes).expect("JSON body"))
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&v).unwrap()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.call_raw(req).await
    }

    pub async fn session(
        &self,
        partner_id: i64,
        secret: &str,
        role: &str,
        privileges: Value,
    ) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/sessions",
                None,
                Some(serde_json::json!({"partner_id": partner_id, "secret": secret, "role": role, "expiry_s": 3600, "privileges": privileges})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    pub async fn admin_token(&self) -> String {
        let secret = self.admin_secret();
        self.session(1, &secret, "admin", serde_json::json!([]))
            .await
    }

    /// Creates a partner; returns (id, admin token).
    pub async fn partner(&self, root: &str, name: &str) -> (i64, String, String) {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/partners",
                Some(root),
                Some(serde_json::json!({"name": name})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["id"].as_i64().unwrap();
        let secret = v["secret"].as_str().unwrap().to_string();
        let tok = self
            .session(id, &secret, "admin", serde_json::json!([]))
            .await;
        (id, tok, secret)
    }
}

pub fn assert_error_shape(status: StatusCode, v: &Value) {
    assert!(status.is_client_error(), "expected 4xx, got {status}: {v}");
    assert!(v["error"]["code"].is_string(), "error shape: {v}");
    assert!(v["error"]["message"].is_string(), "error shape: {v}");
}
