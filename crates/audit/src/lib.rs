//! The audit trail: records, hash chain, SQLite store, verify, export.
//!
//! INVARIANT: no call is forwarded before its audit record is committed; a record
//! that cannot be written means the call is denied (check `audit`).
