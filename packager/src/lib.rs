//! The CMAF packager (sans-IO).
pub mod boxes;
