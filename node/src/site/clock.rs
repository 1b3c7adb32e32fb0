//! The node's one reading of the wall clock. The protocol crate never reads a clock (time is
//! passed in); the node reads it here, so every timestamp it passes in comes from one place.

/// Now, in Unix seconds (0 if the clock is set before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// [`now`] as the store's SQLite integer.
pub fn now_i64() -> i64 {
    i64::try_from(now()).unwrap_or(i64::MAX)
}
