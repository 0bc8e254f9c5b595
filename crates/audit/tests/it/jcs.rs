//! RFC 8785 (JCS) test vectors and properties of `canonical_json`.
