//! Category schemes for labels. A scheme is named on import (`--scheme`); a category outside its
//! scheme is refused. Ordered schemes list their categories from least to most suspicious, which
//! is the order weighted agreement statistics use.

/// (name, description, ordered categories). `free` accepts any category.
pub const SCHEMES: &[(&str, &str, &[&str])] = &[
    (
        "birads",
        "ACR BI-RADS assessment category",
        &["0", "1", "2", "3", "4", "4A", "4B", "4C", "5", "6"],
    ),
    (
        "lungrads",
        "ACR Lung-RADS category",
        &["0", "1", "2", "3", "4A", "4B", "4X"],
    ),
    (
        "recist",
        "RECIST 1.1 overall response",
        &["CR", "PR", "SD", "PD", "NE"],
    ),
    (
        "likert5",
        "Five-point ordinal scale",
        &["1", "2", "3", "4", "5"],
    ),
    ("free", "Any category text", &[]),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemeError {
    #[error("unknown label scheme {0:?} (known: birads, lungrads, recist, likert5, free)")]
    Unknown(String),
    #[error("category {category:?} is not in scheme {scheme} ({allowed})")]
    Category {
        scheme: String,
        category: String,
        allowed: String,
    },
    #[error("empty category")]
    Empty,
}

/// The ordered categories of a scheme (`None` for `free`).
pub fn categories(scheme: &str) -> Result<Option<&'static [&'static str]>, SchemeError> {
    SCHEMES
        .iter()
        .find(|(n, _, _)| *n == scheme)
        .map(|(_, _, c)| if c.is_empty() { None } else { Some(*c) })
        .ok_or_else(|| SchemeError::Unknown(scheme.to_string()))
}

/// Checks a category against its scheme and returns its canonical spelling (case-insensitive
/// match: `4a` is `4A`).
pub fn check(scheme: &str, category: &str) -> Result<String, SchemeError> {
    let c = category.trim();
    if c.is_empty() {
        return Err(SchemeError::Empty);
    }
    match categories(scheme)? {
        None => Ok(c.to_string()),
        Some(allowed) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(c))
            .map(|a| a.to_string())
            .ok_or_else(|| SchemeError::Category {
                scheme: scheme.to_string(),
                category: c.to_string(),
                allowed: allowed.join(", "),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_checked_and_canonicalised() {
        assert_eq!(check("birads", "4a").unwrap(), "4A");
        assert_eq!(check("lungrads", "4X").unwrap(), "4X");
        assert!(matches!(
            check("lungrads", "5"),
            Err(SchemeError::Category { .. })
        ));
        assert_eq!(check("free", " anything ").unwrap(), "anything");
        assert!(matches!(check("nope", "1"), Err(SchemeError::Unknown(_))));
        assert_eq!(check("recist", ""), Err(SchemeError::Empty));
    }
}
