//! The control plane alone on an HTTP listener, for benchmarks and API fuzzing without the
//! media side: `cargo run --release -p vela-control-plane --example cp_serve -- --data DIR
//! --http 127.0.0.1:8080 [--database URL]`. The full server is `vela serve`.

use std::path::PathBuf;

use vela_control_plane::{ControlPlane, ControlPlaneConfig, PublishMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut data = PathBuf::from("./vela-data");
    let mut http = "127.0.0.1:8080".to_string();
    let mut database = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--data" => data = PathBuf::from(v),
            "--http" => http = v,
            "--database" => database = Some(v),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let cp = ControlPlane::open(ControlPlaneConfig {
            data_dir: data,
            database_url: database,
            publish_mode: PublishMode::Auto,
            public_http_base: format!("http://{http}"),
            public_rtmp_base: "rtmp://127.0.0.1:1935/live".into(),
            media: Default::default(),
        })
        .await?;
        let listener = tokio::net::TcpListener::bind(&http).await?;
        eprintln!("cp_serve: listening on http://{http}/api/v1");
        axum::serve(listener, cp.router()).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
