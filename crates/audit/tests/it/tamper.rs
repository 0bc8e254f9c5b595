//! Tampering with the database file directly (as an attacker with write access would):
//! every modified, deleted, inserted or reordered record is found, at the right seq.

use std::path::Path;

use conductor_audit::{AuditReader, BreakKind, Checkpoint, chain_hash, hash_text, parse_hash};
use rusqlite::{Connection, params};

use crate::common::{fill, temp_store, verify};

/// A store of `n` good records; returns (dir guard, path).
fn store_with(n: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path, store) = temp_store();
    fill(&store, n);
    drop(store);
    assert!(verify(&path).broken.is_none());
    (dir, path)
}

fn sql(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn row(conn: &Connection, seq: i64) -> (String, String) {
    conn.query_row(
        "SELECT record, hash FROM records WHERE seq = ?1",
        [seq],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn first_break(path: &Path) -> (u64, BreakKind) {
    let b = verify(path).broken.expect("tampering must be detected");
    (b.seq, b.kind)
}

/// Re-hash records `from..=to` in place so that each one's hash is right for its content
/// (and, with `relink`, its `prev` names the record before it): an attacker covering tracks.
fn rehash(conn: &Connection, from: i64, to: i64, relink: bool) {
    for seq in from..=to {
        let prev = if seq == 1 {
            [0u8; 32]
        } else {
            parse_hash(&row(conn, seq - 1).1).unwrap()
        };
        let (mut text, _) = row(conn, seq);
        if relink {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["prev"] = serde_json::json!(hash_text(&prev));
            text = conductor_audit::canonical_json(&v);
        }
        let h = hash_text(&chain_hash(&prev, &text));
        conn.execute(
            "UPDATE records SET record = ?1, hash = ?2 WHERE seq = ?3",
            params![text, h, seq],
        )
        .unwrap();
    }
}

fn edit_record(conn: &Connection, seq: i64, f: impl FnOnce(&mut serde_json::Value)) {
    let (text, _) = row(conn, seq);
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    f(&mut v);
    let new = conductor_audit::canonical_json(&v);
    conn.execute(
        "UPDATE records SET record = ?1 WHERE seq = ?2",
        params![new, seq],
    )
    .unwrap();
}

#[test]
fn modified_decision_is_found_at_its_seq() {
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    edit_record(&conn, 4, |v| v["decision"] = serde_json::json!("approve"));
    assert_eq!(first_break(&path), (4, BreakKind::HashMismatch));
}

#[test]
fn modified_text_that_is_no_longer_canonical_is_found() {
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    conn.execute(
        "UPDATE records SET record = replace(record, '\"decision\":', '\"decision\" :') WHERE seq = 7",
        [],
    )
    .unwrap();
    assert_eq!(first_break(&path), (7, BreakKind::Malformed));
}

#[test]
fn modified_hash_column_is_found() {
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    conn.execute(
        "UPDATE records SET hash = ?1 WHERE seq = 2",
        [format!("sha256:{}", "1".repeat(64))],
    )
    .unwrap();
    assert_eq!(first_break(&path), (2, BreakKind::HashMismatch));
}

#[test]
fn modified_and_rehashed_record_breaks_the_next_link() {
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    edit_record(&conn, 5, |v| v["agent"] = serde_json::json!("someone-else"));
    rehash(&conn, 5, 5, false);
    assert_eq!(first_break(&path), (6, BreakKind::PrevMismatch));
}

#[test]
fn deleted_record_is_found_at_its_seq() {
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    conn.execute("DELETE FROM records WHERE seq = 6", [])
        .unwrap();
    assert_eq!(first_break(&path), (6, BreakKind::Missing));
}

#[test]
fn deleted_first_record_is_found() {
    let (_d, path) = store_with(10);
    sql(&path)
        .execute("DELETE FROM records WHERE seq = 1", [])
        .unwrap();
    assert_eq!(first_break(&path), (1, BreakKind::Missing));
}

#[test]
fn deleted_and_renumbered_record_is_found_where_it_was() {
    // Delete 6 and close the gap: 7 becomes 6, and so on.
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    conn.execute("DELETE FROM records WHERE seq = 6", [])
        .unwrap();
    conn.execute("UPDATE records SET seq = -(seq - 1) WHERE seq > 6", [])
        .unwrap();
    conn.execute("UPDATE records SET seq = -seq WHERE seq < 0", [])
        .unwrap();
    assert_eq!(first_break(&path), (6, BreakKind::WrongSeq));
}

/// Open a gap at `at` by moving records `at..` one up.
fn shift_up(conn: &Connection, at: i64) {
    conn.execute("UPDATE records SET seq = -(seq + 1) WHERE seq >= ?1", [at])
        .unwrap();
    conn.execute("UPDATE records SET seq = -seq WHERE seq < 0", [])
        .unwrap();
}

#[test]
fn inserted_copy_of_a_record_is_found_at_its_seq() {
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    shift_up(&conn, 5);
    let (text, hash) = row(&conn, 3);
    conn.execute(
        "INSERT INTO records (seq, record, hash) VALUES (5, ?1, ?2)",
        params![text, hash],
    )
    .unwrap();
    assert_eq!(first_break(&path), (5, BreakKind::WrongSeq));
}

#[test]
fn inserted_forged_record_with_valid_links_is_found_at_the_record_after_it() {
    // The forger writes a record that chains correctly onto record 4; the first record
    // that no longer fits is the one that used to follow 4.
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    shift_up(&conn, 5);
    let (text4, hash4) = row(&conn, 4);
    let mut v: serde_json::Value = serde_json::from_str(&text4).unwrap();
    v["seq"] = serde_json::json!(5);
    v["prev"] = serde_json::json!(hash4);
    v["decision"] = serde_json::json!("allow");
    let forged = conductor_audit::canonical_json(&v);
    let h = hash_text(&chain_hash(&parse_hash(&hash4).unwrap(), &forged));
    conn.execute(
        "INSERT INTO records (seq, record, hash) VALUES (5, ?1, ?2)",
        params![forged, h],
    )
    .unwrap();
    assert_eq!(first_break(&path), (6, BreakKind::WrongSeq));
}

#[test]
fn inserted_record_past_the_end_with_a_gap_is_found() {
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    let (text, hash) = row(&conn, 10);
    conn.execute(
        "INSERT INTO records (seq, record, hash) VALUES (12, ?1, ?2)",
        params![text, hash],
    )
    .unwrap();
    assert_eq!(first_break(&path), (11, BreakKind::Missing));
}

#[test]
fn swapped_records_are_found_at_the_first_of_them() {
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    let (t3, h3) = row(&conn, 3);
    let (t7, h7) = row(&conn, 7);
    conn.execute(
        "UPDATE records SET record = ?1, hash = ?2 WHERE seq = 3",
        params![t7, h7],
    )
    .unwrap();
    conn.execute(
        "UPDATE records SET record = ?1, hash = ?2 WHERE seq = 7",
        params![t3, h3],
    )
    .unwrap();
    assert_eq!(first_break(&path), (3, BreakKind::WrongSeq));
}

#[test]
fn reordered_and_renumbered_records_are_found() {
    // Swap 3 and 4 and fix up their seq fields so each says where it now stands.
    let (_d, path) = store_with(10);
    let conn = sql(&path);
    conn.execute("UPDATE records SET seq = -4 WHERE seq = 3", [])
        .unwrap();
    conn.execute("UPDATE records SET seq = 3 WHERE seq = 4", [])
        .unwrap();
    conn.execute("UPDATE records SET seq = 4 WHERE seq = -4", [])
        .unwrap();
    edit_record(&conn, 3, |v| v["seq"] = serde_json::json!(3));
    edit_record(&conn, 4, |v| v["seq"] = serde_json::json!(4));
    assert_eq!(first_break(&path), (3, BreakKind::PrevMismatch));
}

#[test]
fn a_cut_off_tail_is_found_against_a_checkpoint() {
    let (_d, path) = store_with(10);
    let anchor = verify(&path).checkpoint;
    assert_eq!(anchor.size, 10);
    sql(&path)
        .execute("DELETE FROM records WHERE seq > 7", [])
        .unwrap();
    // The chain alone cannot show a cut-off tail…
    assert!(verify(&path).broken.is_none());
    // …the anchored checkpoint can.
    let text = anchor.to_text();
    let parsed = Checkpoint::parse(&text).unwrap();
    assert_eq!(parsed, anchor);
    let b = AuditReader::open(&path)
        .unwrap()
        .verify(Some(&parsed))
        .unwrap()
        .broken
        .unwrap();
    assert_eq!((b.seq, b.kind), (8, BreakKind::Truncated));
}

#[test]
fn a_rewritten_history_is_found_against_a_checkpoint() {
    let (_d, path) = store_with(10);
    let anchor = verify(&path).checkpoint;
    let conn = sql(&path);
    edit_record(&conn, 2, |v| v["decision"] = serde_json::json!("approve"));
    rehash(&conn, 2, 10, true);
    // A full rewrite makes a chain that verifies on its own…
    assert!(verify(&path).broken.is_none());
    // …but not against the anchored checkpoint.
    let b = AuditReader::open(&path)
        .unwrap()
        .verify(Some(&anchor))
        .unwrap()
        .broken
        .unwrap();
    assert_eq!(b.kind, BreakKind::CheckpointMismatch);
}

#[test]
fn an_intact_store_verifies_against_its_own_earlier_checkpoint() {
    let (_d, path, store) = temp_store();
    fill(&store, 6);
    let anchor = verify(&path).checkpoint;
    fill(&store, 4);
    let report = AuditReader::open(&path)
        .unwrap()
        .verify(Some(&anchor))
        .unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.verified, 10);
}

#[test]
fn a_record_turned_into_a_blob_is_found_at_its_seq() {
    let (_d, path) = store_with(10);
    sql(&path)
        .execute(
            "UPDATE records SET record = CAST(record AS BLOB) WHERE seq = 8",
            [],
        )
        .unwrap();
    assert_eq!(first_break(&path), (8, BreakKind::Malformed));
    sql(&path)
        .execute("UPDATE records SET hash = NULL WHERE seq = 3", [])
        .unwrap_err(); // NOT NULL holds
    // TEXT affinity stores a number as text: a plain mismatch.
    sql(&path)
        .execute("UPDATE records SET hash = 42 WHERE seq = 5", [])
        .unwrap();
    assert_eq!(first_break(&path), (5, BreakKind::HashMismatch));
    sql(&path)
        .execute(
            "UPDATE records SET hash = CAST(hash AS BLOB) WHERE seq = 3",
            [],
        )
        .unwrap();
    assert_eq!(first_break(&path), (3, BreakKind::Malformed));
}
