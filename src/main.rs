//! `vela`: the command line of Vela, a live-first streaming-media edge server.
//!
//! `vela serve` runs everything in one process: the RTMP ingest, the stream
//! hub, one packager per live stream, and the HTTP origin. The outside
//! surface (flags, ports, URLs) is fixed in `shared/INTERFACE.md`.

mod analytics;
mod cluster;
mod config;
mod control;
mod limits;
mod media;
mod recording;
mod serve;
mod tls;
mod webrtc;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc, configured in `.cargo/config.toml` to give freed memory back
/// to the system within seconds; glibc malloc kept the peak of every spike.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "vela",
    version,
    about = "Vela: a live-first streaming-media edge server (RTMP in; HLS, LL-HLS and DASH out)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (ingest, packager, origin, API) in one process.
    Serve(ServeArgs),
    /// Run only batch job workers (no listeners), against the database and storage
    /// of the `vela serve` nodes.
    Worker(worker::WorkerArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// State directory (database, search index, recordings, keys, logs) [default: ./vela-data]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// RTMP listener [default: 0.0.0.0:1935]
    #[arg(long, value_name = "ADDR")]
    pub rtmp: Option<String>,
    /// HTTP/1.1 + HTTP/2 listener (origin, API, metrics) [default: 0.0.0.0:8080]
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// HTTPS (HTTP/1.1 + HTTP/2 over TLS) listener, or `off` [default: 0.0.0.0:8443 when [tls] names a certificate]
    #[arg(long, value_name = "ADDR|off")]
    pub https: Option<String>,
    /// HTTP/3 (QUIC) listener, or `off` [default: 0.0.0.0:8443]
    #[arg(long, value_name = "ADDR|off")]
    pub h3: Option<String>,
    /// WebRTC (WHIP) UDP listener shared by all sessions, or `off` [default: 0.0.0.0:8189]
    #[arg(long, value_name = "ADDR|off")]
    pub webrtc: Option<String>,
    /// TOML configuration file; flags win over the file, the file over defaults
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL (postgres://...); default: SQLite in the data directory
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Worker(args) => worker::run(args),
    }
}
