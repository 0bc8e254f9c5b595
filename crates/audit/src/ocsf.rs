//! Export to OCSF (placeholder, filled in below).
