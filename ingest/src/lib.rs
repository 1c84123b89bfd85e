//! Vela's RTMP ingest (being written).
pub mod flv;
