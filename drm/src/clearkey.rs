//! The W3C ClearKey license exchange, without HTTP.
//!
//! Request (Encrypted Media Extensions 9.1.3):
//! `{"kids":["<base64url kid>", ...],"type":"temporary"}`; response:
//! `{"keys":[{"kty":"oct","k":"<base64url key>","kid":"<base64url kid>"}],"type":"temporary"}`.
//! base64url is written without padding and read with or without it.
//! Keys that the lookup does not know are left out of the response (the
//! CDM then reports them missing); a request none of whose keys is known is
//! [`LicenseError::UnknownKids`].

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Most KIDs one request may ask for.
pub const MAX_KIDS: usize = 64;
/// Largest request body accepted (bytes).
pub const MAX_REQUEST: usize = 16 * 1024;

const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LicenseError {
    #[error("request is not ClearKey JSON: {0}")]
    Json(String),
    #[error("request is larger than {MAX_REQUEST} bytes")]
    TooLarge,
    #[error("request names no key ids")]
    NoKids,
    #[error("request names more than {MAX_KIDS} key ids")]
    TooManyKids,
    #[error("kids[{index}] is not a base64url 16-byte key id")]
    BadKid { index: usize },
    #[error("unsupported session type {0:?} (only \"temporary\")")]
    UnsupportedType(String),
    #[error("none of the requested key ids is known")]
    UnknownKids,
}

impl LicenseError {
    /// The HTTP status the origin answers with.
    pub fn status(&self) -> u16 {
        match self {
            LicenseError::UnknownKids => 404,
            LicenseError::TooLarge => 413,
            _ => 400,
        }
    }

    /// A short machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            LicenseError::Json(_) => "bad_json",
            LicenseError::TooLarge => "too_large",
            LicenseError::NoKids => "no_kids",
            LicenseError::TooManyKids => "too_many_kids",
            LicenseError::BadKid { .. } => "bad_kid",
            LicenseError::UnsupportedType(_) => "unsupported_type",
            LicenseError::UnknownKids => "unknown_kid",
        }
    }

    /// `{"error":{"code":"..","message":".."}}`, the API's error form.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "error": {"code": self.code(), "message": self.to_string()}
        }))
        .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct Request {
    kids: Vec<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Serialize)]
struct Key {
    kty: &'static str,
    k: String,
    kid: String,
}

#[derive(Serialize)]
struct Response {
    keys: Vec<Key>,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// base64url without padding, as ClearKey JSON wants it.
pub fn b64url(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

/// Decodes a ClearKey license request into its key ids.
pub fn parse_request(body: &[u8]) -> Result<Vec<[u8; 16]>, LicenseError> {
    if body.len() > MAX_REQUEST {
        return Err(LicenseError::TooLarge);
    }
    let req: Request =
        serde_json::from_slice(body).map_err(|e| LicenseError::Json(e.to_string()))?;
    match req.kind.as_deref() {
        None | Some("temporary") => {}
        Some(other) => {
            return Err(LicenseError::UnsupportedType(
                other.chars().take(40).collect(),
            ))
        }
    }
    if req.kids.is_empty() {
        return Err(LicenseError::NoKids);
    }
    if req.kids.len() > MAX_KIDS {
        return Err(LicenseError::TooManyKids);
    }
    req.kids
        .iter()
        .enumerate()
        .map(|(index, s)| {
            // A 16-byte id is 22 characters (24 padded); refuse long input
            // before decoding it.
            if s.len() > 24 {
                return Err(LicenseError::BadKid { index });
            }
            B64URL
                .decode(s)
                .ok()
                .and_then(|v| <[u8; 16]>::try_from(v).ok())
                .ok_or(LicenseError::BadKid { index })
        })
        .collect()
}

/// Answers a ClearKey license request from `lookup` (kid to key).
pub fn license_response(
    request_json: &[u8],
    lookup: impl Fn(&[u8; 16]) -> Option<[u8; 16]>,
) -> Result<Vec<u8>, LicenseError> {
    let kids = parse_request(request_json)?;
    let mut keys = Vec::with_capacity(kids.len());
    for kid in &kids {
        if keys.iter().any(|k: &Key| k.kid == b64url(kid)) {
            continue;
        }
        if let Some(key) = lookup(kid) {
            keys.push(Key {
                kty: "oct",
                k: b64url(&key),
                kid: b64url(kid),
            });
        }
    }
    if keys.is_empty() {
        return Err(LicenseError::UnknownKids);
    }
    serde_json::to_vec(&Response {
        keys,
        kind: "temporary",
    })
    .map_err(|e| LicenseError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KID: [u8; 16] = *b"0123456789abcdef";
    const KEY: [u8; 16] = [0xfe; 16];

    fn lookup(kid: &[u8; 16]) -> Option<[u8; 16]> {
        (kid == &KID).then_some(KEY)
    }

    #[test]
    fn answers_known_kids() {
        let req = format!(
            r#"{{"kids":["{}","{}"],"type":"temporary"}}"#,
            b64url(&KID),
            b64url(&[1; 16])
        );
        let resp = license_response(req.as_bytes(), lookup).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
        assert_eq!(v["type"], "temporary");
        assert_eq!(v["keys"].as_array().unwrap().len(), 1);
        assert_eq!(v["keys"][0]["kty"], "oct");
        assert_eq!(v["keys"][0]["kid"], "MDEyMzQ1Njc4OWFiY2RlZg");
        assert_eq!(v["keys"][0]["k"], b64url(&KEY));
        // Padded base64url and a missing type are accepted too.
        let padded = r#"{"kids":["MDEyMzQ1Njc4OWFiY2RlZg=="]}"#;
        assert!(license_response(padded.as_bytes(), lookup).is_ok());
    }

    #[test]
    fn typed_errors() {
        assert!(matches!(
            license_response(b"{", lookup),
            Err(LicenseError::Json(_))
        ));
        assert_eq!(
            license_response(br#"{"kids":[]}"#, lookup),
            Err(LicenseError::NoKids)
        );
        assert_eq!(
            license_response(br#"{"kids":["!!"]}"#, lookup),
            Err(LicenseError::BadKid { index: 0 })
        );
        assert_eq!(
            license_response(br#"{"kids":["AAAA"]}"#, lookup),
            Err(LicenseError::BadKid { index: 0 })
        );
        let unknown = format!(r#"{{"kids":["{}"]}}"#, b64url(&[9; 16]));
        let e = license_response(unknown.as_bytes(), lookup).unwrap_err();
        assert_eq!(e, LicenseError::UnknownKids);
        assert_eq!(e.status(), 404);
        let j: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(j["error"]["code"], "unknown_kid");
        let persistent = format!(
            r#"{{"kids":["{}"],"type":"persistent-license"}}"#,
            b64url(&KID)
        );
        assert!(matches!(
            license_response(persistent.as_bytes(), lookup),
            Err(LicenseError::UnsupportedType(_))
        ));
        let many = format!(r#"{{"kids":[{}]}}"#, vec!["\"AA\""; 65].join(","));
        assert_eq!(
            license_response(many.as_bytes(), lookup),
            Err(LicenseError::TooManyKids)
        );
    }
}
