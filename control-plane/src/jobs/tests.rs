//! The queue's rules on SQLite, on simulated time (every call takes `now`).

use std::net::IpAddr;
use std::time::Duration;

use super::fetch::is_public;
use super::worker::failed;
use super::*;
use crate::db::Db;

async fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), None).await.expect("open");
    (dir, db)
}

async fn add(db: &Db, job_type: &str, now: i64) -> JobRow {
    let payload = serde_json::json!({});
    db.enqueue_job(
        &NewJob {
            partner_id: 1,
            entry_id: None,
            job_type,
            payload: &payload,
            max_attempts: 3,
        },
        now,
    )
    .await
    .expect("enqueue")
}

#[tokio::test]
async fn claims_in_order_once_each_and_by_type() {
    let (_d, db) = db().await;
    let a = add(&db, "noop", 1000).await;
    let b = add(&db, "noop", 1001).await;
    let _c = add(&db, "import", 1002).await;
    let first = db
        .claim_job("noop", "w1", 2000, 500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, a.id);
    assert_eq!(first.status, JobStatus::Running);
    assert_eq!(first.attempts, 1);
    assert_eq!(first.lease_until, Some(2500));
    let second = db
        .claim_job("noop", "w2", 2000, 500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.id, b.id);
    assert!(db
        .claim_job("noop", "w3", 2000, 500)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn expired_lease_is_reclaimed_and_fences_the_old_worker() {
    let (_d, db) = db().await;
    let j = add(&db, "noop", 0).await;
    let w1 = db.claim_job("noop", "w1", 10, 1000).await.unwrap().unwrap();
    // Within the lease nobody else takes it; the heartbeat extends it.
    assert!(db
        .claim_job("noop", "w2", 900, 1000)
        .await
        .unwrap()
        .is_none());
    assert!(db
        .heartbeat_job(j.id, "w1", 1, 0.5, 900, 1000)
        .await
        .unwrap());
    assert!(db
        .claim_job("noop", "w2", 1500, 1000)
        .await
        .unwrap()
        .is_none());
    // w1 stops beating (killed): after the lease w2 takes it as attempt 2.
    let w2 = db
        .claim_job("noop", "w2", 1901, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((w2.id, w2.attempts, w2.progress), (j.id, 2, 0.5));
    // The old attempt can neither beat nor complete any more.
    assert!(!db
        .heartbeat_job(j.id, "w1", w1.attempts, 0.9, 1950, 1000)
        .await
        .unwrap());
    let done = Outcome::Done(serde_json::json!({"by": "w1"}));
    assert!(!db
        .finish_job(j.id, "w1", w1.attempts, &done, 1960)
        .await
        .unwrap());
    let done2 = Outcome::Done(serde_json::json!({"by": "w2"}));
    assert!(db.finish_job(j.id, "w2", 2, &done2, 1970).await.unwrap());
    // Done once: a second completion does nothing.
    assert!(!db.finish_job(j.id, "w2", 2, &done2, 1980).await.unwrap());
    let row = db.get_job(Some(1), j.id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Done);
    assert_eq!(row.result, Some(serde_json::json!({"by": "w2"})));
    assert_eq!(row.finished_at, Some(1970));
    assert!(db
        .claim_job("noop", "w3", 100_000, 1000)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn retry_waits_for_backoff_then_fails_at_the_limit() {
    let (_d, db) = db().await;
    let cfg = JobsConfig::default();
    let j = add(&db, "noop", 0).await;
    let mut now = 0;
    for attempt in 1..=3 {
        let row = db.claim_job("noop", "w", now, 1000).await.unwrap().unwrap();
        assert_eq!(row.attempts, attempt);
        let outcome = failed(&cfg, &row, JobError::Transient("boom".into()));
        assert!(db
            .finish_job(j.id, "w", attempt, &outcome, now)
            .await
            .unwrap());
        let row = db.get_job(None, j.id).await.unwrap().unwrap();
        match outcome {
            Outcome::Failed {
                retry_at: Some(at), ..
            } => {
                assert!(attempt < 3);
                assert_eq!(row.status, JobStatus::Retried);
                assert_eq!(row.error.as_deref(), Some("boom"));
                // Not before the backoff has passed.
                assert!(db
                    .claim_job("noop", "w", at - 1, 1000)
                    .await
                    .unwrap()
                    .is_none());
                now = at;
            }
            Outcome::Failed { retry_at: None, .. } => {
                assert_eq!(attempt, 3);
                assert_eq!(row.status, JobStatus::Failed);
            }
            Outcome::Done(_) => unreachable!(),
        }
    }
    assert!(db
        .claim_job("noop", "w", i64::MAX / 2, 1000)
        .await
        .unwrap()
        .is_none());
    // An explicit retry starts a fresh set of attempts.
    assert!(db.retry_job(Some(1), j.id, now).await.unwrap());
    let row = db.claim_job("noop", "w", now, 1000).await.unwrap().unwrap();
    assert_eq!(row.attempts, 1);
}

#[tokio::test]
async fn permanent_errors_do_not_retry() {
    let (_d, db) = db().await;
    let j = add(&db, "noop", 0).await;
    let row = db.claim_job("noop", "w", 0, 1000).await.unwrap().unwrap();
    let o = failed(
        &JobsConfig::default(),
        &row,
        JobError::Permanent("bad".into()),
    );
    assert_eq!(
        o,
        Outcome::Failed {
            error: "bad".into(),
            retry_at: None
        }
    );
    assert!(db.finish_job(j.id, "w", 1, &o, 5).await.unwrap());
    assert_eq!(
        db.get_job(None, j.id).await.unwrap().unwrap().status,
        JobStatus::Failed
    );
}

#[tokio::test]
async fn cancel_stops_a_running_attempt_and_scopes_by_partner() {
    let (_d, db) = db().await;
    let j = add(&db, "noop", 0).await;
    db.claim_job("noop", "w", 0, 1000).await.unwrap().unwrap();
    assert!(
        !db.cancel_job(Some(2), j.id, 10).await.unwrap(),
        "other partner"
    );
    assert!(db.get_job(Some(2), j.id).await.unwrap().is_none());
    assert!(db.cancel_job(Some(1), j.id, 10).await.unwrap());
    assert!(!db.heartbeat_job(j.id, "w", 1, 0.1, 20, 1000).await.unwrap());
    assert!(
        !db.cancel_job(Some(1), j.id, 30).await.unwrap(),
        "already ended"
    );
    assert!(db
        .claim_job("noop", "w", 5000, 1000)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn lists_filter_by_type_status_and_entry() {
    let (_d, db) = db().await;
    add(&db, "noop", 0).await;
    add(&db, "noop", 1).await;
    add(&db, "import", 2).await;
    db.claim_job("noop", "w", 10, 1000).await.unwrap();
    let f = JobFilter {
        partner_id: Some(1),
        job_type: Some("noop"),
        status: Some(JobStatus::Pending),
        limit: 10,
        ..Default::default()
    };
    let (jobs, total) = db.list_jobs(&f).await.unwrap();
    assert_eq!((jobs.len(), total), (1, 1));
    let all = JobFilter {
        partner_id: Some(1),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(db.list_jobs(&all).await.unwrap().1, 3);
    let other = JobFilter {
        partner_id: Some(7),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(db.list_jobs(&other).await.unwrap().1, 0);
    let mut counts = db.job_counts().await.unwrap();
    counts.sort();
    let want: Vec<(String, String, i64)> = [
        ("import", "pending"),
        ("noop", "pending"),
        ("noop", "running"),
    ]
    .iter()
    .map(|(t, s)| (t.to_string(), s.to_string(), 1))
    .collect();
    assert_eq!(counts, want);
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let b = Duration::from_secs(2);
    let m = Duration::from_secs(60);
    assert_eq!(backoff(1, b, m), Duration::from_secs(2));
    assert_eq!(backoff(2, b, m), Duration::from_secs(4));
    assert_eq!(backoff(3, b, m), Duration::from_secs(8));
    assert_eq!(backoff(10, b, m), m);
    assert_eq!(backoff(i64::MAX, b, m), m);
}

#[test]
fn outbound_guard_classifies_addresses() {
    let private = [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
    ];
    for a in private {
        assert!(
            !is_public(a.parse::<IpAddr>().unwrap()),
            "{a} is not public"
        );
    }
    for a in [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ] {
        assert!(is_public(a.parse::<IpAddr>().unwrap()), "{a} is public");
    }
}

#[test]
fn outbound_guard_checks_literal_urls() {
    let u = |s: &str| url::Url::parse(s).unwrap();
    assert!(fetch::check_url(&u("http://127.0.0.1:8080/a.mp4"), false).is_err());
    assert!(fetch::check_url(&u("http://[::1]/a.mp4"), false).is_err());
    assert!(fetch::check_url(&u("http://127.0.0.1/a.mp4"), true).is_ok());
    assert!(fetch::check_url(&u("http://example.com/a.mp4"), false).is_ok());
    assert!(fetch::check_url(&u("ftp://example.com/a.mp4"), false).is_err());
    assert!(fetch::check_url(&u("http://user:pw@example.com/a.mp4"), false).is_err());
    assert!(fetch::check_url(&u("file:///etc/passwd"), true).is_err());
}

#[test]
fn html_is_recognised() {
    assert!(import::looks_like_html(b"  <!DOCTYPE html><html>"));
    assert!(import::looks_like_html(b"<html><body>"));
    assert!(!import::looks_like_html(b"\0\0\0\x18ftypisom"));
    assert!(!import::looks_like_html(b""));
}
