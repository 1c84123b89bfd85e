//! Secrets, signed session tokens and stream-key sealing.
//!
//! Tokens are `base64url(claims JSON) "." base64url(HMAC-SHA256(server key, claims JSON))`.
//! The claims carry the partner's secret generation; the server keeps every partner's
//! current generation in memory (refreshed from the database every second), so a token is
//! verified without a database read, and regenerating a partner's secret (which bumps the
//! generation) invalidates every token issued before.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Maximum accepted token length (bytes).
pub const MAX_TOKEN_LEN: usize = 8192;

/// Roles a session may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Full access to the partner's data (partner 1's admin also manages partners).
    Admin,
    /// Access limited to the session's privileges.
    User,
}

/// The signed content of a session token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Token format version.
    pub v: u8,
    /// Partner id.
    pub p: i64,
    /// The partner's secret generation when the token was issued.
    pub g: i64,
    /// User id (free text).
    pub u: String,
    /// Role.
    pub r: Role,
    /// Expiry, unix seconds.
    pub e: i64,
    /// Privileges such as `view:0_ab12cd34`, `edit:*`, `publish:ID`.
    #[serde(default)]
    pub pv: Vec<String>,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.r == Role::Admin
    }

    /// Whether the session may do `action` (`view`, `edit`, `publish`, `list`) on `entry`.
    pub fn may(&self, action: &str, entry: Option<&str>) -> bool {
        if self.is_admin() {
            return true;
        }
        self.pv.iter().any(|p| {
            let Some((a, target)) = p.split_once(':') else {
                return false;
            };
            let action_ok = a == action || (a == "edit" && action == "view");
            action_ok && (target == "*" || Some(target) == entry)
        })
    }
}

/// Signs and verifies tokens with the server key.
#[derive(Clone)]
pub struct TokenKey {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

impl TokenKey {
    pub fn new(key: [u8; 32]) -> Self {
        TokenKey { key }
    }

    fn mac(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        m.update(label);
        m.update(data);
        m.finalize().into_bytes().into()
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize");
        let sig = self.mac(b"vela-token-v1\0", &json);
        format!("{}.{}", B64.encode(&json), B64.encode(sig))
    }

    /// Verifies signature and expiry (not the partner generation).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (body, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let json = B64.decode(body).map_err(|_| TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        let want = self.mac(b"vela-token-v1\0", &json);
        if sig.len() != want.len() || !bool::from(sig.as_slice().ct_eq(&want)) {
            return Err(TokenError::BadSignature);
        }
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.v != 1 {
            return Err(TokenError::Malformed);
        }
        if claims.e <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// A playback token for `stream`, valid until `expires_at` (unix
    /// seconds): `EXPIRES "." base64url(HMAC(key, stream NUL EXPIRES))`.
    /// Short and URL-safe, as it travels in manifest and segment URLs.
    pub fn sign_playback(&self, stream: &str, expires_at: i64) -> String {
        let sig = self.playback_mac(stream, expires_at);
        format!("{expires_at}.{}", B64.encode(sig))
    }

    /// Verifies a playback token for `stream` at `now` (unix seconds). A
    /// token for another stream fails as a bad signature.
    pub fn verify_playback(&self, token: &str, stream: &str, now: i64) -> Result<i64, TokenError> {
        if token.len() > 128 {
            return Err(TokenError::Malformed);
        }
        let (exp, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        if exp.is_empty() || exp.len() > 12 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::Malformed);
        }
        let expires_at: i64 = exp.parse().map_err(|_| TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        let want = self.playback_mac(stream, expires_at);
        if sig.len() != want.len() || !bool::from(sig.as_slice().ct_eq(&want)) {
            return Err(TokenError::BadSignature);
        }
        if expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(expires_at)
    }

    fn playback_mac(&self, stream: &str, expires_at: i64) -> [u8; 32] {
        let mut data = Vec::with_capacity(stream.len() + 24);
        data.extend_from_slice(stream.as_bytes());
        data.push(0);
        data.extend_from_slice(expires_at.to_string().as_bytes());
        self.mac(b"vela-playback-v1\0", &data)
    }

    /// Seals a stream key for storage: `base64(nonce || key XOR PRF(nonce))`.
    /// HMAC-SHA256 in counter mode is the PRF; integrity comes from the stored hash.
    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; 16];
        rand::rng().fill(&mut nonce);
        let mut out = nonce.to_vec();
        out.extend(self.keystream_xor(&nonce, plain.as_bytes()));
        B64.encode(out)
    }

    pub fn unseal(&self, sealed: &str) -> Option<String> {
        let raw = B64.decode(sealed).ok()?;
        if raw.len() < 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(16);
        String::from_utf8(self.keystream_xor(nonce, ct)).ok()
    }

    fn keystream_xor(&self, nonce: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        for (block, chunk) in data.chunks(32).enumerate() {
            let mut input = nonce.to_vec();
            input.extend((block as u32).to_be_bytes());
            let ks = self.mac(b"vela-seal-v1\0", &input);
            out.extend(chunk.iter().zip(ks.iter()).map(|(a, b)| a ^ b));
        }
        out
    }
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

pub fn random_hex(n_bytes: usize) -> String {
    let mut b = vec![0u8; n_bytes];
    rand::rng().fill(b.as_mut_slice());
    hex(&b)
}

pub fn random_key32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rng().fill(&mut b);
    b
}

/// A new partner secret (64 hex characters).
pub fn new_secret() -> String {
    random_hex(32)
}

/// A new stream key (32 lowercase alphanumerics).
pub fn new_stream_key() -> String {
    random_id_chars(32)
}

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

pub fn random_id_chars(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A new entry id, Kaltura-style: `0_` and 8 lowercase alphanumerics.
pub fn new_entry_id() -> String {
    format!("0_{}", random_id_chars(8))
}

/// Whether `s` has the shape of an entry id.
pub fn is_entry_id(s: &str) -> bool {
    s.len() == 10
        && s.starts_with("0_")
        && s.bytes()
            .skip(2)
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// Salted hash of a partner secret.
pub fn hash_secret(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"vela-partner-secret\0");
    h.update(salt.as_bytes());
    h.update(b"\0");
    h.update(secret.as_bytes());
    hex(&h.finalize())
}

/// Unsalted hash of a (high-entropy) stream key, used as its lookup index.
pub fn hash_stream_key(key: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"vela-stream-key\0");
    h.update(key.as_bytes());
    hex(&h.finalize())
}

/// Constant-time equality of two strings.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playback_tokens_bind_stream_and_expiry() {
        let k = TokenKey::new([7; 32]);
        let t = k.sign_playback("show", 1_000);
        assert_eq!(k.verify_playback(&t, "show", 999), Ok(1_000));
        assert_eq!(
            k.verify_playback(&t, "show", 1_000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            k.verify_playback(&t, "other", 999),
            Err(TokenError::BadSignature)
        );
        // A changed expiry breaks the signature.
        let forged = t.replacen("1000.", "9000.", 1);
        assert_eq!(
            k.verify_playback(&forged, "show", 999),
            Err(TokenError::BadSignature)
        );
        // Another server key.
        let other = TokenKey::new([8; 32]);
        assert_eq!(
            other.verify_playback(&t, "show", 999),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            ".",
            "1000",
            "x.abc",
            "-5.abc",
            "1000.%%%",
            &"9".repeat(200),
        ] {
            assert_eq!(
                k.verify_playback(bad, "show", 0),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{t}"
        );
    }

    fn claims(e: i64) -> Claims {
        Claims {
            v: 1,
            p: 7,
            g: 1,
            u: "u".into(),
            r: Role::User,
            e,
            pv: vec!["view:0_abcdefgh".into()],
        }
    }

    #[test]
    fn sign_verify_tamper_expire() {
        let k = TokenKey::new([3; 32]);
        let now = 1000;
        let t = k.sign(&claims(2000));
        assert_eq!(k.verify(&t, now).unwrap().p, 7);
        assert_eq!(k.verify(&t, 2000).unwrap_err(), TokenError::Expired);
        // Tamper with the claims: change the partner id.
        let (body, sig) = t.split_once('.').unwrap();
        let mut json = B64.decode(body).unwrap();
        let s = String::from_utf8(json.clone())
            .unwrap()
            .replace("\"p\":7", "\"p\":1");
        json = s.into_bytes();
        let forged = format!("{}.{}", B64.encode(json), sig);
        assert_eq!(
            k.verify(&forged, now).unwrap_err(),
            TokenError::BadSignature
        );
        // Another key.
        let other = TokenKey::new([4; 32]);
        assert_eq!(other.verify(&t, now).unwrap_err(), TokenError::BadSignature);
        assert_eq!(k.verify("garbage", now).unwrap_err(), TokenError::Malformed);
        assert_eq!(k.verify("a.b.c", now).unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn privileges() {
        let c = claims(10);
        assert!(c.may("view", Some("0_abcdefgh")));
        assert!(!c.may("edit", Some("0_abcdefgh")));
        assert!(!c.may("view", Some("0_zzzzzzzz")));
    }

    #[test]
    fn seal_roundtrip() {
        let k = TokenKey::new([9; 32]);
        let s = k.seal("abcdefghijklmnopqrstuvwxyz0123456789");
        assert_eq!(
            k.unseal(&s).unwrap(),
            "abcdefghijklmnopqrstuvwxyz0123456789"
        );
        assert!(!s.contains("abcdef"));
    }

    #[test]
    fn ids() {
        let id = new_entry_id();
        assert!(is_entry_id(&id), "{id}");
        assert!(!is_entry_id("0_ABCDEFGH"));
        assert!(!is_entry_id("1' OR 1=1"));
    }
}
