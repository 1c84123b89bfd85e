//! Fuzz entry point (cargo-fuzz target `origin_request`) for what the origin
//! parses from a request's head, whichever listener (HTTP/1.1, HTTP/2,
//! HTTP/3) brought it: file names of live and stored presentations, Smooth
//! fragment names, LL-HLS delivery directives, `Range`, playback tokens in
//! the query, key ids, DRM policy values, and the cluster's signed
//! `x-vela-cluster` header. Also driven on stable by seeded mutations in the
//! tests below.

use crate::cluster::auth;
use crate::http::{directives, parse_file};
use crate::vod::{parse_range, parse_vod_file, RangeAnswer};
use crate::{access, protect};

/// The cluster key the fuzzed headers are checked against.
const KEY: [u8; 32] = [7; 32];
/// The time the fuzzed headers are checked at.
const NOW_MS: i64 = 1_700_000_000_000;

/// `data` is cut at newlines into the fields of a request head (missing ones
/// are empty): file name, rendition id, query, `Range` value, cluster header,
/// key id, DRM policy (`hls,dash,mss`). Errors are fine; panics are not, and
/// what parses must be consistent.
pub fn request(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut f = text.split('\n');
    let mut next = || f.next().unwrap_or("");
    let (file, rid, query, range, cluster, kid, drm) =
        (next(), next(), next(), next(), next(), next(), next());

    if let Some((_, tag)) = parse_file(file) {
        assert!(tag.is_none_or(|t| !t.is_empty()));
    }
    let _ = parse_vod_file(rid, file);

    if let Ok(d) = directives(Some(query)) {
        assert!(
            d.part.is_none() || d.msn.is_some(),
            "_HLS_part without _HLS_msn accepted"
        );
        let _ = d.skip;
    }
    let _ = access::query_token(Some(query));

    // The entity length comes from the input too: 0, small and huge.
    let len =
        (data.len() as u64).wrapping_mul(0x9e37_79b9) >> (data.first().copied().unwrap_or(0) % 64);
    match parse_range(range, len) {
        RangeAnswer::Part(a, b) => assert!(a <= b && b < len, "range {a}-{b} of {len}"),
        RangeAnswer::Whole | RangeAnswer::Unsatisfiable => {}
    }

    // A header that verifies names its node first (`NODE:TS:TAG`).
    if let Ok(node) = auth::verify(&KEY, cluster, NOW_MS, "GET", file) {
        assert!(cluster.starts_with(node));
    }
    // What `sign` makes verifies, for any node name the header can carry.
    if !rid.is_empty() && rid.len() <= 64 {
        let signed = auth::sign(&KEY, rid, NOW_MS, "GET", file);
        assert_eq!(
            auth::verify(&KEY, &signed, NOW_MS, "GET", file).ok(),
            Some(rid)
        );
        assert!(auth::verify(&KEY, &signed, NOW_MS, "HEAD", file).is_err());
    }

    if let Some(k) = protect::parse_kid(kid) {
        assert_eq!(k.len(), 16);
    }
    let mut p = drm.splitn(3, ',');
    let _ = protect::DrmPolicy::parse(
        p.next().unwrap_or(""),
        p.next().unwrap_or(""),
        p.next().unwrap_or(""),
    );
}

#[cfg(test)]
mod tests {
    use vela_vod::fuzzing::{mutate, Rng};

    use super::*;

    /// Request heads as players, caches and cluster peers send them.
    fn seeds() -> Vec<Vec<u8>> {
        let signed = auth::sign(&KEY, "node-a", NOW_MS, "GET", "seg-12.m4s");
        [
            format!("seg-12.m4s\nv1\n_HLS_msn=12&_HLS_part=3&_HLS_skip=YES\nbytes=0-99\n{signed}\n00112233445566778899aabbccddeeff\naes-128,cenc,cenc"),
            "part-7.2.m4s\nQualityLevels(2500000)\ntoken=abc.def\nbytes=-500\nnode:1:zz\nnot-a-kid\nnone,none,none".to_string(),
            "init-0.mp4\na2\n_HLS_part=1\nbytes=10-\n::\n\nsample-aes,cbcs,none".to_string(),
            "Fragments(video=123456789)\nQualityLevels(128000)\n_HLS_msn=18446744073709551616\nbytes=5-1,7-9\n\u{0}\n".to_string(),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect()
    }

    #[test]
    fn seeds_parse_as_expected() {
        let s = seeds();
        request(&s[0]);
        // The signed seed's header verifies; its tampered copy does not.
        let signed = auth::sign(&KEY, "node-a", NOW_MS, "GET", "seg-12.m4s");
        assert_eq!(
            auth::verify(&KEY, &signed, NOW_MS, "GET", "seg-12.m4s").ok(),
            Some("node-a")
        );
        let tampered = signed.replace("node-a", "node-b");
        assert!(auth::verify(&KEY, &tampered, NOW_MS, "GET", "seg-12.m4s").is_err());
        assert!(auth::verify(&KEY, &signed, NOW_MS + 120_000, "GET", "seg-12.m4s").is_err());
        assert!(matches!(
            parse_range("bytes=0-99", 50),
            RangeAnswer::Part(0, 49)
        ));
        assert!(directives(Some("_HLS_part=1")).is_err());
    }

    #[test]
    fn mutated_request_heads_never_panic() {
        let mut rng = Rng::new(0x0419_0a11);
        let seeds = seeds();
        for i in 0..20_000 {
            let seed = &seeds[i % seeds.len()];
            request(&mutate(seed, &mut rng));
        }
        // Random bytes as well.
        for _ in 0..5_000 {
            let n = rng.below(300);
            let v: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            request(&v);
        }
    }
}
